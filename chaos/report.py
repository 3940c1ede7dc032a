"""``docs/reliability.md`` from the figures the chaos checks recorded (see ``chaos.record``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

Sections = Mapping[str, Mapping[str, Any]]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _crash(data: Mapping[str, Any]) -> list[str]:
    runs = data.get("runs", [])
    fired = sum(1 for r in runs if r.get("fired"))
    bad = [r for r in runs if r.get("violations")]
    converged = sorted(r["converged_s"] for r in runs if r.get("converged_s") is not None)
    by_point: Counter[str] = Counter(str(r["fault"]).split(":")[0].split("@")[0] for r in runs)
    out = [
        f"Deployment: {data.get('shape', '?')}; lease {data.get('lease_seconds', '?')} s.",
        "",
        *_table(
            [
                "kills",
                "crash point reached",
                "converged",
                "runs with a violation",
                "GPUs double-booked",
                "orphan/duplicate pods",
                "tracebacks",
            ],
            [
                [
                    len(runs),
                    fired,
                    len(converged),
                    len(bad),
                    sum("double-booked" in v for r in runs for v in r.get("violations", [])),
                    sum(
                        ("orphan" in v or "duplicate" in v or "no live owner" in v)
                        for r in runs
                        for v in r.get("violations", [])
                    ),
                    data.get("operator_tracebacks", "?"),
                ]
            ],
        ),
        "",
        "Kills by crash point: " + ", ".join(f"{k} {v}" for k, v in sorted(by_point.items())) + ".",
    ]
    if converged:
        mid = converged[len(converged) // 2]
        out.append(f"Convergence after the kill: median {mid:.1f} s, worst {converged[-1]:.1f} s.")
    return out


def _races(data: Mapping[str, Any]) -> list[str]:
    runs = data.get("runs", [])
    phases: Counter[str] = Counter(p for r in runs for p in (r.get("phases") or {}).values())
    transient = [r for r in runs if r.get("transient_overcommit")]
    running = phases.get("Running", 0)
    plain_bound = sum(r.get("plain_bound", 0) for r in runs)
    plain = sum(r.get("plain_pods", 0) for r in runs)
    return [
        *_table(
            [
                "runs",
                "runs with a violation",
                "deployments Running / waiting",
                "plain pods bound",
                "runs with a transient overcommit (then yielded)",
                "binds by result",
                "re-plans after an overcommit",
            ],
            [
                [
                    len(runs),
                    sum(1 for r in runs if r.get("violations")),
                    f"{running} / {sum(phases.values()) - running}",
                    f"{plain_bound} of {plain}",
                    len(transient),
                    data.get("binds", {}),
                    data.get("replans_after_overcommit_events", 0),
                ]
            ],
        ),
    ]


def _soak(data: Mapping[str, Any]) -> list[str]:
    samples = data.get("samples", [])
    rows = [
        [
            s["when"],
            s["rss_mib"],
            s["threads"],
            s["fds"],
            s["apiserver_connections"],
            s.get("watches", "?"),
        ]
        for s in samples
    ]
    phases = data.get("phases", [])
    return [
        f"{data.get('nodes', '?')} nodes ({data.get('gpus', '?')} GPUs); "
        f"{data.get('rounds', '?')} rounds of {data.get('deployments_per_round', '?')} "
        "deployments (1 prefill x 4 GPUs + 1 decode x 8 GPUs in 2 pods) created, half scaled "
        "to 2 decode replicas and back, then all deleted.",
        "",
        *_table(
            [
                "operator sampled",
                "RSS MiB",
                "threads",
                "open fds",
                "its API connections",
                "watches on the API server (all clients)",
            ],
            rows,
        ),
        "",
        *_table(
            ["round", "phase", "seconds to valid", "violations"],
            [
                [p["round"], p["phase"], p["seconds"], len(p.get("violations") or [])]
                for p in phases
            ],
        ),
        "",
        "RSS growth after the first (warm-up) round: "
        f"{data.get('rss_growth_after_warm_round_mib', '?')} MiB; "
        f"operator tracebacks: {data.get('operator_tracebacks', '?')}.",
    ]


def _fuzz(data: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    specs = data.get("specs")
    if specs:
        out += _table(
            ["specs", "broken on purpose", "rejected by the API server (schema/CEL)",
             "reported Invalid naming the field", "valid (Running / Unschedulable)",
             "invalid let through", "messages without the field", "valid rejected"],
            [[specs.get("total"), specs.get("broken"), specs.get("rejected_by_apiserver"),
              specs.get("reported_invalid"), f"{specs.get('accepted_valid')} {specs.get('phases')}",
              specs.get("invalid_let_through"), specs.get("message_without_field"),
              specs.get("valid_rejected")]],
        )  # fmt: skip
        out.append("")
    rows = []
    for key, what in (
        ("label_sets", "node label sets -> topology index"),
        ("smi_matrices", "nvidia-smi topo -m matrices -> parser"),
        ("snapshot_files", "snapshot/deployment files -> shorthop plan"),
    ):
        part = data.get(key)
        if part:
            rows.append([what, part.get("total"), part.get("escaped"), part.get("outcomes")])
    if rows:
        out += _table(["input", "generated", "exceptions escaped", "outcomes"], rows)
    return out


def _apiserver(data: Mapping[str, Any]) -> list[str]:
    """Test B (kube-apiserver / etcd restarted right after a change) and test C (a proxy that
    fails a share of the requests), a row per step and per round."""
    out: list[str] = []
    steps = data.get("restart_steps") or []
    if steps:
        out += ["Restarts (a change, then the named process restarted at once):", ""]
        out += _table(
            [
                "step",
                "change",
                "restarted",
                "outage s",
                "converged after s",
                "operator restarts",
                "violations",
            ],
            [
                [
                    s.get("step"),
                    s.get("change"),
                    s.get("restarted"),
                    s.get("outage_s"),
                    s.get("converged_after_restart_s"),
                    s.get("operator_restarts"),
                    len(s.get("violations") or []),
                ]
                for s in steps
            ],
        )
        out.append("")
    rounds = data.get("proxy_rounds") or []
    if rounds:
        plan = data.get("proxy_plan") or {}
        out += [f"Failing requests (a fault-injecting proxy; {plan.get('deployment', '')}):", ""]
        out += _table(
            [
                "round",
                "deployments",
                "requests",
                "failing (meant / measured)",
                "reconcile errors",
                "placed s",
                "changed s",
                "collected s",
                "operator restarts",
                "violations",
            ],
            [
                [
                    r.get("round"),
                    r.get("deployments"),
                    r.get("requests"),
                    f"{r.get('expected_failing_share')} / {r.get('failed_share')}",
                    sum((r.get("reconcile_errors") or {}).values()),
                    r.get("placed_s"),
                    r.get("changed_s"),
                    r.get("collected_s"),
                    len(r.get("operator_restarts") or []),
                    len(r.get("violations") or []),
                ]
                for r in rounds
            ],
        )
        out.append("")
    rest = {
        k: v for k, v in data.items() if k not in ("restart_steps", "proxy_rounds", "proxy_plan")
    }
    return out + _generic(rest)


def _generic(data: Mapping[str, Any]) -> list[str]:
    rows = [
        [key, value]
        for key, value in data.items()
        if not isinstance(value, list | dict) or len(str(value)) < 160
    ]
    return _table(["figure", "value"], rows)


TITLES = {
    "crash": ("Crash consistency (SIGKILL mid-placement)", _crash),
    "apiserver": ("API server faults (restarts, failing and slow requests)", _apiserver),
    "races": ("Races with kube-scheduler", _races),
    "fuzz": ("Fuzzing bad input", _fuzz),
    "soak": ("Scale soak", _soak),
}


SECURITY = """## Security

Checked by `make test` on every run (not measured here):

- **RBAC is minimal**: `test_operator_uses_exactly_the_permissions_the_chart_grants`
  (in `tests/integration/test_chart.py`) runs the operator as the chart's ServiceAccount through
  a placement, a scale-down and a Lease renewal and reads the API server's audit log: no request
  is refused, and each role grants exactly the (verb, resource) pairs the operator used (plus
  `inferencedeployments/finalizers` update, which admission checks). After a real install, under
  Helm 3 and 4, SubjectAccessReviews for the ServiceAccount (each question checked against
  discovery, so a misspelt one fails instead of answering "no") allow those verbs only where they
  apply and deny 15 others (secrets, configmaps, pods outside the watched namespaces, pod patch,
  service delete, CR create/update/delete, node patch/delete, Deployments, leases outside its
  namespace). `e2e/test_e2e.py` runs the operator *as* that ServiceAccount, and its credentials
  get 403 on secrets.
- **Container**: non-root (uid 65532), read-only root filesystem, no privilege escalation, all
  capabilities dropped, seccomp RuntimeDefault; the operator pod is admitted by a namespace that
  enforces Pod Security `restricted` (`test_operator_pod_is_admitted_under_restricted_enforcement`);
  the Dockerfile's final stage runs as that uid (`tests/unit/test_dockerfile.py`).
- **Metrics and health endpoints expose no credentials**: only `shorthop_*`, `python_*` and
  `process_*` families, and none of the kubeconfig's key, certificate or token material
  (`tests/integration/test_operator.py::test_metrics_and_health_endpoints_expose_no_credentials`).
- **No webhook**: validation is the CRD's OpenAPI schema and CEL rules, so no TLS serving
  certificate to manage.
- **Pinned dependencies**: `requirements/constraints.txt` pins every Python package (direct and
  transitive) for `make dev` and the image build; Go builds of the control plane use checked-in
  `go.sum` files.
"""


def render(sections: Sections, *, command: str, when: str, machine: str, passed: bool) -> str:
    out = [
        "# Reliability figures",
        "",
        f"Produced by `{command}` on {when} ({machine}). "
        f"Result: **{'all checks passed' if passed else 'a check FAILED (see below)'}**.",
        "Each check's method is in the docstring of its module under `chaos/`; "
        "`make test` runs the same checks at a small size.",
        "",
    ]
    for key, (title, fn) in TITLES.items():
        out += [f"## {title}", ""]
        data = sections.get(key)
        if data is None:
            out += ["Not measured in this run.", ""]
            continue
        out += [
            *fn(data),
            "",
            f"Took {data.get('seconds', '?')} s at scale {data.get('scale')}.",
            "",
        ]
    out += [SECURITY]
    for key in sorted(set(sections) - set(TITLES)):
        out += [f"## {key}", "", *_generic(sections[key]), ""]
    return "\n".join(out).rstrip() + "\n"

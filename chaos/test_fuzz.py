"""Fuzzing every input: InferenceDeployment specs against the real API server and operator, node
label sets and ``nvidia-smi topo -m`` captures through the topology layer, and snapshot files
through ``shorthop plan``.

**Specs** (``cluster``): hypothesis generates specs (``chaos/spec_fuzz.py``) that start valid
and get zero to two deliberate breakages each (wrong types, negative or huge numbers,
gpusPerReplica not a multiple of gpusPerPod, bad or unknown scope names, missing or duplicate
roles, traffic naming unknown roles, bad templates, unknown fields, ...). Each is first sent
with ``dryRun=All`` and ``fieldValidation=Strict`` (what ``kubectl apply`` does); those the API
server accepts are created for real, a batch at a time, in a namespace watched by one running
operator, and polled until their status has a phase for their generation. Every spec that
shorthop's models reject, and every deliberately broken one, must be rejected by the API server
or end ``Invalid``, and the message must name the broken field by its path
(``spec.roles[0].replicas``); every unbroken spec must be accepted and end in a normal phase; the
models must reject every spec the API server rejects (``shorthop plan`` reads manifests with
them). The operator must never exit, log a traceback or count a reconcile exception.

**Label sets, nvidia-smi captures, snapshot files** (pure): see ``tests/malformed.py``. Only
shorthop's own errors may come out, and no input may take longer than ``SLOW_SECONDS``;
``shorthop plan`` on a bad snapshot must exit 1 with one line on stderr (``tests/plan_cli.py``).
A few snapshot files also run through the real ``shorthop`` process.

Sizes: ``pick(small, full)``; full runs at least 1,000 of each. Figures go to ``fuzz.json``. The
small runs in ``make test`` draw the same inputs every time (the suite's ``ci`` hypothesis
profile): they are regression runs. ``make chaos`` draws fresh ones (the ``fuzz`` profile).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client
from shorthop.topology import fake

from chaos import checks, pick
from chaos.fixtures import OperatorFactory, recorder
from chaos.spec_fuzz import GENERATE, MUTATIONS, Case, generate_cases, names_the_field
from tests import kube, malformed, plan_cli
from tests import operator_harness as oh

SECTION = "fuzz"
SPECS = pick(48, 1200)
LABEL_SETS = pick(120, 1500)
SMI_MATRICES = pick(120, 1500)
SNAPSHOT_FILES = pick(60, 1000)
SUBPROCESS_FILES = pick(2, 20)
BATCH = pick(48, 100)
PHASE_SECONDS = 90.0

NORMAL_PHASES = {"Pending", "Placing", "Running", "Degraded", "Unschedulable"}


# -- against the API server and the operator ---------------------------------------------------


def _api_message(exc: client.ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except (ValueError, AttributeError):
        return str(exc.body or exc.reason)


def _submit(custom: client.CustomObjectsApi, case: Case, namespace: str, dry_run: bool) -> bool:
    """Create (or dry-run create) with strict field validation; False and the message when the
    API server says no."""
    try:
        custom.create_namespaced_custom_object(
            checks.GROUP, checks.VERSION, namespace, checks.PLURAL, case.body,
            dry_run="All" if dry_run else None, field_validation="Strict",
        )  # fmt: skip
    except client.ApiException as exc:
        if exc.status not in (400, 422):
            raise
        case.outcome, case.message = "rejected", _api_message(exc)
        return False
    return True


def _await_phases(
    custom: client.CustomObjectsApi, namespace: str, label: str, pending: dict[str, Case]
) -> None:
    deadline = time.monotonic() + PHASE_SECONDS
    while pending and time.monotonic() < deadline:
        listed = custom.list_namespaced_custom_object(
            checks.GROUP, checks.VERSION, namespace, checks.PLURAL, label_selector=label
        )
        for item in listed.get("items", []):
            case = pending.get(item["metadata"]["name"])
            status = item.get("status") or {}
            if case is None or not status.get("phase"):
                continue
            if status.get("observedGeneration") != item["metadata"].get("generation"):
                continue
            case.outcome = "invalid" if status["phase"] == "Invalid" else status["phase"]
            case.message = str(status.get("message") or "")
            del pending[case.name]
        time.sleep(0.5)
    for case in pending.values():
        case.outcome = "no-phase"


def _errors_counted(op: oh.OperatorProcess) -> float:
    for line in op.metrics().splitlines():
        if line.startswith('shorthop_reconcile_errors_total{reason="exception"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def fuzz_namespace(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("fuzz") as ns:
        yield ns


@pytest.mark.cluster
@pytest.mark.timeout(1800)
def test_generated_specs_are_rejected_or_reported_invalid_and_never_crash_the_operator(
    cluster: kube.Cluster, operators: OperatorFactory, fuzz_namespace: str
) -> None:
    record = recorder(SECTION)
    started = time.monotonic()
    ns = fuzz_namespace
    custom = client.CustomObjectsApi(cluster.api)
    label = f"shorthop.test/fuzz-{uuid.uuid4().hex[:6]}"
    with oh.node_pool(cluster, fake.ClusterShape(hgx_units=1, nodes_per_unit=2), prefix="fz") as (
        pool,
        _nodes,
    ):
        all_cases = generate_cases(SPECS, pool, ns, label)
        op = operators.start("fuzz", namespaces=(ns,))
        op.wait_leading(timeout=90)
        for start in range(0, len(all_cases), BATCH):
            batch = all_cases[start : start + BATCH]
            batch_label = f"{label}-b{start // BATCH}"
            pending: dict[str, Case] = {}
            for case in batch:
                case.body["metadata"]["labels"] = {batch_label: "x"}
                if _submit(custom, case, ns, dry_run=True) and _submit(custom, case, ns, False):
                    pending[case.name] = case
            _await_phases(custom, ns, batch_label, pending)
            custom.delete_collection_namespaced_custom_object(
                checks.GROUP, checks.VERSION, ns, checks.PLURAL, label_selector=batch_label
            )
            done = all_cases[: start + len(batch)]
            print(
                f"[fuzz] specs {len(done)}/{len(all_cases)}",
                dict(Counter(c.outcome for c in done)),
                flush=True,
            )
            assert op.alive(), f"the operator exited:\n{op.log[-3000:]}"
        exceptions = _errors_counted(op)
        alive = op.alive()
        op.stop()
    log = op.log
    tracebacks = log.count("Traceback")

    outcomes = Counter(c.outcome for c in all_cases)
    must_fail = [c for c in all_cases if c.must_fail]
    unbroken = [c for c in all_cases if not c.must_fail]
    # Broken or model-invalid specs that the API server and the operator both let through.
    slipped = [c for c in must_fail if c.outcome not in ("rejected", "invalid")]
    unnamed = [
        c for c in must_fail if c.outcome in ("rejected", "invalid") and not names_the_field(c)
    ]
    false_rejections = [c for c in unbroken if c.outcome not in NORMAL_PHASES]
    no_phase = [c for c in all_cases if c.outcome == "no-phase"]
    lax = [c for c in all_cases if c.model_error is None and c.outcome == "rejected"]

    def show(items: list[Case]) -> list[str]:
        return [
            f"{c.name} {c.broken} -> {c.outcome}: {c.message[:300]} | model: {c.model_error} | "
            f"{malformed.safe_repr(c.body.get('spec'), 400)}"
            for c in items[:8]
        ]

    record.set(
        "specs",
        {
            "total": len(all_cases),
            "broken": len([c for c in all_cases if c.broken]),
            "unbroken": len([c for c in all_cases if not c.broken]),
            "model_invalid": len([c for c in all_cases if c.model_error is not None]),
            "rejected_by_apiserver": outcomes["rejected"],
            "reported_invalid": outcomes["invalid"],
            "accepted_valid": sum(outcomes[p] for p in NORMAL_PHASES),
            "phases": {p: outcomes[p] for p in sorted(NORMAL_PHASES) if outcomes[p]},
            "no_phase": len(no_phase),
            "invalid_let_through": len(slipped),
            "message_without_field": len(unnamed),
            "valid_rejected": len(false_rejections),
            "models_accept_apiserver_rejects": len(lax),
            "models_accept_apiserver_rejects_by_mutation": dict(
                Counter(m for c in lax for m in c.broken)
            ),
            "invalid_caught_only_by_operator": len(
                [c for c in all_cases if c.outcome == "invalid"]
            ),
            "by_mutation": {
                name: dict(Counter(c.outcome for c in all_cases if name in c.broken))
                for name in sorted(MUTATIONS)
            },
            "operator_crashes": 0 if alive else 1,
            "operator_restarts": 0 if alive else 1,
            "operator_tracebacks": tracebacks,
            "reconcile_exceptions": exceptions,
            "seconds": round(time.monotonic() - started, 1),
            "examples": {
                "invalid_let_through": show(slipped),
                "message_without_field": show(unnamed),
                "valid_rejected": show(false_rejections),
                "models_accept_apiserver_rejects": show(lax),
            },
        },
    )
    assert alive, log[-3000:]
    assert tracebacks == 0, log[log.index("Traceback") - 200 :][:4000]
    assert exceptions == 0
    assert not no_phase, show(no_phase)
    assert not slipped, show(slipped)
    assert not unnamed, show(unnamed)
    assert not false_rejections, show(false_rejections)
    # `shorthop plan` reads manifests with the same models: one they accept and `kubectl apply`
    # refuses would be planned offline and never deployed.
    assert not lax, show(lax)
    assert len(all_cases) >= pick(40, 1000)


def test_a_message_names_the_broken_field_only_by_its_path() -> None:
    """The rule the spec fuzzing holds messages to: the path itself (list items by index), not a
    field name that also occurs elsewhere, nor just the word "spec"."""
    paths = [("spec.roles[1].replicas",)]
    case = Case("x", {}, ["replicas-negative"], paths)
    for message, named in [
        ("spec.roles[1].replicas: Invalid value: -1: should be >= 0", True),
        ("spec.roles[b].replicas: must be at least 0", False),
        ("spec.roles[0].replicas: Invalid value: -1", False),
        ("spec: replicas must not be negative", False),
        ("spec.roles[1]: Invalid value: object", False),
    ]:
        case.message = message
        assert names_the_field(case) is named, message
    whole = Case("y", {}, ["not-a-multiple"], [("spec.roles[0]", "gpusPerReplica", "gpusPerPod")])
    whole.message = (
        'spec.roles[0]: Invalid value: "object": gpusPerReplica must be a multiple of gpusPerPod'
    )
    assert names_the_field(whole)
    whole.message = "spec.roles[0]: must be a multiple of the other"
    assert not names_the_field(whole)
    # Broken by nothing but refused by the models: the path their error names.
    model_only = Case("z", {}, [], [], "spec.kvCache.tokens: Input should be a valid integer")
    model_only.message = "spec.kvCache.tokens: Invalid value: 1.5"
    assert names_the_field(model_only)
    model_only.message = "spec.kvCache: Invalid value"
    assert not names_the_field(model_only)


# -- pure: label sets, nvidia-smi, snapshot files ------------------------------------------------


def _fuzz(
    strategy: st.SearchStrategy[Any], fn: Callable[[Any], str | None], count: int
) -> malformed.Tally:
    tally = malformed.Tally(slow_seconds=malformed.SLOW_SECONDS)

    @settings(max_examples=count, **GENERATE)  # type: ignore[arg-type]
    @given(strategy)
    def run(example: Any) -> None:
        tally.run(fn, example)

    run()
    return tally


def test_malformed_node_label_sets_raise_nothing_in_the_topology_layer() -> None:
    started = time.monotonic()
    tally = _fuzz(malformed.node_label_sets(), malformed.through_topology, LABEL_SETS)
    recorder(SECTION).set(
        "label_sets", {**tally.summary(), "seconds": round(time.monotonic() - started, 1)}
    )
    assert not tally.failures(), tally.failures()[:5]
    assert tally.total >= LABEL_SETS


def test_malformed_nvidia_smi_matrices_raise_only_topology_errors() -> None:
    started = time.monotonic()
    tally = _fuzz(malformed.smi_texts(), malformed.through_smi, SMI_MATRICES)
    recorder(SECTION).set(
        "smi_matrices", {**tally.summary(), "seconds": round(time.monotonic() - started, 1)}
    )
    assert not tally.failures(), tally.failures()[:5]
    assert tally.total >= SMI_MATRICES


def test_malformed_snapshot_files_make_plan_exit_1_with_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    tally = _fuzz(malformed.snapshot_files(), plan_cli.plan_on_bytes(tmp_path), SNAPSHOT_FILES)
    runner = plan_cli.plan_on_bytes(tmp_path)
    for data in malformed.WHOLE_FILES:
        tally.run(runner, ("whole file", data))
    for name, path in plan_cli.special_snapshot_paths(tmp_path):
        tally.run(lambda case: plan_cli.judge_plan(plan_cli.run_plan(case[1])), (name, path))
    # The real process too: stderr is what a user sees.
    processes = malformed.Tally(slow_seconds=malformed.SLOW_SECONDS)
    samples = [d for d in malformed.WHOLE_FILES if d][:SUBPROCESS_FILES]
    for i, data in enumerate(samples):
        path = tmp_path / f"process-{i}.yaml"
        path.write_bytes(data)
        processes.run(_plan_process, path)
    recorder(SECTION).set(
        "snapshot_files",
        {
            **tally.summary(),
            "bad_exits": len(tally.failures()),
            "process_runs": processes.summary(),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert not tally.failures(), tally.failures()[:5]
    assert not processes.failures(), processes.failures()[:5]
    assert tally.total >= SNAPSHOT_FILES


def _plan_process(path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shorthop.cli", "plan", "--cluster", str(path),
         "--deployment", str(malformed.MINIMAL), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return plan_cli.judge_plan(
        plan_cli.PlanRun(result.returncode, result.stderr, stdout=result.stdout)
    )

"""Fuzzing every input: InferenceDeployment specs against the real API server and operator, node
label sets and ``nvidia-smi topo -m`` captures through the topology layer, and snapshot files
through ``shorthop plan``.

**Specs** (``cluster``): hypothesis generates specs that start valid and get zero to two
deliberate breakages each (wrong types, negative or huge numbers, gpusPerReplica not a multiple
of gpusPerPod, bad or unknown scope names, missing or duplicate roles, traffic naming unknown
roles, bad templates, unknown fields, ...). Each is first sent with ``dryRun=All`` and
``fieldValidation=Strict`` (what ``kubectl apply`` does); those the API server accepts are created
for real, a batch at a time, in a namespace watched by one running operator, and polled until
their status has a phase for their generation. Every spec that shorthop's models reject, and
every deliberately broken one, must be rejected by the API server or end ``Invalid``, and the
message must name a broken field; every unbroken spec must be accepted and end in a normal phase.
The operator must never exit, log a traceback or count a reconcile exception.

**Label sets, nvidia-smi captures, snapshot files** (pure): see ``tests/malformed.py``. Only
shorthop's own errors may come out; ``shorthop plan`` on a bad snapshot must exit 1 with one line
on stderr. A few snapshot files also run through the real ``shorthop`` process.

Sizes: ``pick(small, full)``; full runs at least 1,000 of each. Figures go to ``fuzz.json``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes import client
from shorthop import manifest
from shorthop.errors import SpecError
from shorthop.topology import fake, levels

from chaos import checks, pick, scale
from chaos.fixtures import OperatorFactory, recorder
from tests import kube, malformed
from tests import operator_harness as oh

SECTION = "fuzz"
SPECS = pick(48, 1200)
LABEL_SETS = pick(120, 1500)
SMI_MATRICES = pick(120, 1500)
SNAPSHOT_FILES = pick(60, 1000)
SUBPROCESS_FILES = pick(2, 20)
BATCH = pick(48, 100)
PHASE_SECONDS = 90.0

# Random exploration at full size, a fixed one in light runs.
SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": scale() != "full",
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": list(HealthCheck),
}

TIERS = levels.preset("plain").tiers  # the operator runs with the plain preset
ROLE_NAMES = ("prefill", "decode", "router", "r1", "a-b")
NORMAL_PHASES = {"Pending", "Placing", "Running", "Degraded", "Unschedulable"}
IMAGE = "vllm/vllm-openai:v0.11.0"


# -- generated specs -----------------------------------------------------------------------------


@dataclass
class Case:
    """One generated InferenceDeployment and what was broken in it."""

    name: str
    body: dict[str, Any]
    broken: list[str] = field(default_factory=list)  # mutation names
    tokens: list[str] = field(default_factory=list)  # field names a message must mention
    model_error: str | None = None  # SpecError from shorthop.manifest, if the models reject it
    outcome: str = ""  # rejected | invalid | <phase> | no-phase
    message: str = ""

    @property
    def must_fail(self) -> bool:
        return bool(self.broken) or self.model_error is not None


def _template(draw: Any, per_pod: int, pool: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "engine", "image": IMAGE}
    if draw(st.booleans()):
        container["resources"] = {
            "requests": {
                "cpu": draw(st.sampled_from(("1", "500m", "8"))),
                "memory": draw(st.sampled_from(("1Gi", "64Gi"))),
            }
        }
    if draw(st.integers(0, 3)) == 0:
        gpus = {"nvidia.com/gpu": str(per_pod)}
        container.setdefault("resources", {}).update({"limits": gpus, "requests": gpus})
    spec: dict[str, Any] = {"containers": [container]}
    if draw(st.integers(0, 2)) == 0:  # a third may use the fuzzing pool's GPUs
        spec["tolerations"] = [
            {"key": oh.POOL_TAINT, "operator": "Equal", "value": pool, "effect": "NoSchedule"}
        ]
    template: dict[str, Any] = {"spec": spec}
    if draw(st.booleans()):
        template["metadata"] = {"labels": {"app": "fuzz"}}
    return template


@st.composite
def valid_specs(draw: Any, pool: str) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    names = draw(st.lists(st.sampled_from(ROLE_NAMES), min_size=count, max_size=count, unique=True))
    roles = []
    for name in names:
        per_pod = draw(st.sampled_from((1, 2, 4, 8)))
        pods = draw(st.sampled_from((1, 1, 2, 4)))
        role: dict[str, Any] = {
            "name": name,
            "replicas": draw(st.integers(0, 3)),
            "gpusPerReplica": per_pod * pods,
        }
        if pods > 1 or draw(st.booleans()):
            role["gpusPerPod"] = per_pod
        if draw(st.integers(0, 3)) == 0:
            role["replicaScope"] = draw(st.sampled_from(TIERS))
        if draw(st.integers(0, 15)) == 0:  # huge but within the schema
            role.update(replicas=1024, gpusPerReplica=4096, gpusPerPod=1)
            per_pod = 1
        role["template"] = _template(draw, per_pod, pool)
        roles.append(role)
    spec: dict[str, Any] = {"roles": roles}
    if len(names) > 1 and draw(st.booleans()):
        spec["traffic"] = [
            {"from": names[0], "to": names[1], "weight": draw(st.sampled_from((0, 1, 2.5, 1000)))}
        ]
    if draw(st.integers(0, 3)) == 0:
        spec["placement"] = {
            draw(st.sampled_from(("required", "preferred"))): draw(st.sampled_from(TIERS))
        }
    if draw(st.integers(0, 5)) == 0:
        spec["kvCache"] = {
            "bytesPerToken": draw(st.integers(1, 10**9)),
            "tokens": draw(st.integers(1, 10**6)),
        }
    return spec


Mutation = Callable[[Any, dict[str, Any]], list[str]]  # (draw, spec) -> tokens


def _role(draw: Any, spec: dict[str, Any]) -> dict[str, Any]:
    roles = spec.get("roles")
    if isinstance(roles, list) and roles and isinstance(roles[0], dict):
        return dict(draw(st.sampled_from([r for r in roles if isinstance(r, dict)])))
    return {}


def _set_role(spec: dict[str, Any], role: dict[str, Any]) -> None:
    """Write back a changed copy of the role with the same name (the first such)."""
    for i, r in enumerate(spec["roles"]):
        if isinstance(r, dict) and r.get("name") == role.get("_name", role.get("name")):
            role.pop("_name", None)
            spec["roles"][i] = role
            return


def _role_field(key: str, values: st.SearchStrategy[Any]) -> Mutation:
    def mutate(draw: Any, spec: dict[str, Any]) -> list[str]:
        role = _role(draw, spec)
        if not role:
            return []
        role["_name"] = role.get("name")
        role[key] = draw(values)
        _set_role(spec, role)
        return [key]

    return mutate


def _drop_role_key(draw: Any, spec: dict[str, Any]) -> list[str]:
    role = _role(draw, spec)
    if not role:
        return []
    present = [k for k in ("name", "replicas", "gpusPerReplica", "template") if k in role]
    if not present:
        return []
    key = draw(st.sampled_from(present))
    role["_name"] = role.get("name")
    del role[key]
    _set_role(spec, role)
    return [key]


def _not_a_multiple(draw: Any, spec: dict[str, Any]) -> list[str]:
    role = _role(draw, spec)
    if not role:
        return []
    per_pod = draw(st.sampled_from((2, 4, 8)))
    role["_name"] = role.get("name")
    role["gpusPerPod"] = per_pod
    role["gpusPerReplica"] = per_pod * draw(st.integers(1, 4)) + draw(st.integers(1, per_pod - 1))
    _set_role(spec, role)
    return ["gpusPerReplica", "gpusPerPod"]


def _duplicate_role(draw: Any, spec: dict[str, Any]) -> list[str]:
    roles = spec["roles"]
    roles.append(json.loads(json.dumps(roles[0])))
    return ["roles", "role names"]


def _roles_value(draw: Any, spec: dict[str, Any]) -> list[str]:
    choice = draw(st.sampled_from(("empty", "missing", "too-many", "string", "object", "number")))
    if choice == "missing":
        del spec["roles"]
    elif choice == "too-many":
        base = spec["roles"][0]
        spec["roles"] = [{**base, "name": f"r{i}"} for i in range(17)]
    else:
        spec["roles"] = {"empty": [], "string": "prefill", "object": {}, "number": 3}[choice]
    return ["roles"]


def _traffic(draw: Any, spec: dict[str, Any]) -> list[str]:
    names = [r["name"] for r in spec["roles"]]
    choice = draw(st.sampled_from(("unknown-role", "weight", "missing-from", "too-many", "string")))
    if choice == "unknown-role":
        spec["traffic"] = [{"from": names[0], "to": draw(st.sampled_from(("ghost", "decode-x")))}]
        return ["traffic", "to"]
    if choice == "weight":
        value = draw(st.sampled_from((-1, -0.5, 1001, 1e300, "heavy", True)))
        spec["traffic"] = [{"from": names[0], "to": names[-1], "weight": value}]
        return ["weight"]
    if choice == "missing-from":
        spec["traffic"] = [{"to": names[0]}]
        return ["from"]
    if choice == "too-many":
        spec["traffic"] = [{"from": names[0], "to": names[-1]}] * 65
        return ["traffic"]
    spec["traffic"] = "prefill->decode"
    return ["traffic"]


def _kv_cache(draw: Any, spec: dict[str, Any]) -> list[str]:
    key = draw(st.sampled_from(("bytesPerToken", "tokens")))
    spec["kvCache"] = {key: draw(st.sampled_from((0, -1, "lots", 1.5)))}
    return [key]


def _scope(draw: Any, spec: dict[str, Any]) -> list[str]:
    where = draw(st.sampled_from(("replicaScope", "required", "preferred")))
    value = draw(st.sampled_from(("Rack", "rack!", "", "x" * 64, "-rack", "rack_1", 7)))
    if where == "replicaScope":
        role = _role(draw, spec)
        role["_name"] = role.get("name")
        role["replicaScope"] = value
        _set_role(spec, role)
    else:
        spec["placement"] = {where: value}
    return [where]


def _unknown_tier(draw: Any, spec: dict[str, Any]) -> list[str]:
    """Well-formed but not a tier of this cluster: only the operator can tell."""
    value = draw(st.sampled_from(("galaxy", "rack-2", "host", "nvlink", "superpod")))
    where = draw(st.sampled_from(("replicaScope", "required", "preferred")))
    if where == "replicaScope":
        role = _role(draw, spec)
        role["_name"] = role.get("name")
        role["replicaScope"] = value
        _set_role(spec, role)
        return ["replicaScope"]
    spec["placement"] = {where: value}
    return [where]


def _placement_type(draw: Any, spec: dict[str, Any]) -> list[str]:
    spec["placement"] = draw(st.sampled_from(("rack", 3, ["rack"])))
    return ["placement"]


def _well_formed(template: Any) -> bool:
    spec = template.get("spec") if isinstance(template, dict) else None
    containers = spec.get("containers") if isinstance(spec, dict) else None
    return isinstance(containers, list) and bool(containers) and isinstance(containers[0], dict)


def _choose(draw: Any, options: tuple[str, ...]) -> str:
    """Uniform over ``options`` (``sampled_from`` favours the first ones)."""
    at: int = draw(st.integers(0, 2**32 - 1))
    return options[at % len(options)]


TEMPLATE_SCHEMA = (
    "no-spec", "no-containers", "containers-empty", "containers-string", "containers-items",
    "template-string",
)  # fmt: skip
TEMPLATE_POD = (
    "gpu-mismatch", "gpu-nan", "resources-string", "limits-list", "requests-number",
    "tolerations-number", "tolerations-items", "env-string", "env-items", "labels-string",
    "labels-values", "annotations-list",
)  # fmt: skip


def _broken_template(choices: tuple[str, ...]) -> Mutation:
    def mutate(draw: Any, spec: dict[str, Any]) -> list[str]:
        return _template_shape(draw, spec, _choose(draw, choices))

    return mutate


def _template_shape(draw: Any, spec: dict[str, Any], choice: str) -> list[str]:
    """The template broken where the CRD schema checks it (``template.spec.containers``) or
    where it cannot (the rest of the pod template is free-form)."""
    role = _role(draw, spec)
    if not _well_formed(role.get("template")):
        return []
    role["_name"] = role.get("name")
    template = json.loads(json.dumps(role["template"]))
    container = template["spec"]["containers"][0]
    per_pod = role.get("gpusPerPod") or role.get("gpusPerReplica") or 1
    tokens = {"no-spec": ["template"], "template-string": ["template"]}.get(choice, ["containers"])
    if choice == "no-spec":
        del template["spec"]
    elif choice == "no-containers":
        del template["spec"]["containers"]
    elif choice == "containers-empty":
        template["spec"]["containers"] = []
    elif choice == "containers-string":
        template["spec"]["containers"] = "engine"
    elif choice == "containers-items":
        template["spec"]["containers"] = [draw(st.sampled_from(("engine", 5, ["x"])))]
    elif choice == "template-string":
        template = "vllm"
    elif choice == "gpu-mismatch":
        gpus = {"nvidia.com/gpu": str(per_pod + draw(st.integers(1, 8)))}
        container["resources"] = {"limits": gpus}
    elif choice == "gpu-nan":
        container["resources"] = {
            "limits": {"nvidia.com/gpu": draw(st.sampled_from(("four", "1.5x", "")))}
        }
        tokens = ["nvidia.com/gpu"]
    elif choice == "resources-string":
        container["resources"] = draw(st.sampled_from(("8 GPUs", 8, ["limits"])))
        tokens = ["resources"]
    elif choice == "limits-list":
        container["resources"] = {"limits": ["nvidia.com/gpu"]}
        tokens = ["limits"]
    elif choice == "requests-number":
        container["resources"] = {"requests": 4}
        tokens = ["requests"]
    elif choice == "tolerations-number":
        template["spec"]["tolerations"] = draw(st.sampled_from((5, "all", {"key": "x"})))
        tokens = ["tolerations"]
    elif choice == "tolerations-items":
        template["spec"]["tolerations"] = [draw(st.sampled_from(("all", 5, ["x"])))]
        tokens = ["tolerations"]
    elif choice == "env-string":
        container["env"] = draw(st.sampled_from(("A=1", 1, {"name": "A"})))
        tokens = ["env"]
    elif choice == "env-items":
        container["env"] = [draw(st.sampled_from(("A=1", 1, ["A"])))]
        tokens = ["env"]
    elif choice == "labels-string":
        template["metadata"] = {"labels": draw(st.sampled_from(("app=x", 5, ["app"])))}
        tokens = ["labels"]
    elif choice == "labels-values":
        template["metadata"] = {"labels": {"app": draw(st.sampled_from((5, True, None, ["x"])))}}
        tokens = ["labels"]
    else:
        template["metadata"] = {"annotations": draw(st.sampled_from((["x"], "x", {"a": 1})))}
        tokens = ["annotations"]
    role["template"] = template
    _set_role(spec, role)
    return tokens


def _unknown_field(draw: Any, spec: dict[str, Any]) -> list[str]:
    key = draw(
        st.sampled_from(("fooBar", "replica", "gpus", "Replicas", "scheduler", "gpus_per_pod"))
    )
    where = draw(st.sampled_from(("spec", "role", "placement", "kvCache", "traffic", "template")))
    if where == "spec":
        spec[key] = 1
    elif where == "role":
        role = _role(draw, spec)
        role["_name"] = role.get("name")
        role[key] = 1
        _set_role(spec, role)
    elif where == "placement":
        spec["placement"] = {key: "rack"}
    elif where == "kvCache":
        spec["kvCache"] = {key: 1}
    elif where == "traffic":
        names = [r["name"] for r in spec["roles"]]
        spec["traffic"] = [{"from": names[0], "to": names[-1], key: 1}]
    else:
        role = _role(draw, spec)
        if not isinstance(role.get("template"), dict):
            return []
        role["_name"] = role.get("name")
        role["template"] = {**role["template"], key: 1}
        _set_role(spec, role)
    return [key]


def _spec_value(draw: Any, spec: dict[str, Any]) -> list[str]:
    """The whole spec of the wrong type (marked by replacing it through a sentinel key)."""
    spec.clear()
    spec["__spec__"] = draw(st.sampled_from(("roles: []", 5, ["prefill"], None)))
    return ["spec"]


MUTATIONS: dict[str, Mutation] = {
    "replicas-negative": _role_field("replicas", st.integers(-(10**12), -1)),
    "replicas-huge": _role_field("replicas", st.integers(1025, 2**62)),
    "replicas-string": _role_field("replicas", st.sampled_from(("3", "three", ""))),
    "replicas-float": _role_field("replicas", st.sampled_from((1.5, 0.1, 1e300))),
    "replicas-null": _role_field("replicas", st.none()),
    "replicas-bool": _role_field("replicas", st.booleans()),
    "gpusPerReplica-small": _role_field("gpusPerReplica", st.integers(-(10**9), 0)),
    "gpusPerReplica-huge": _role_field("gpusPerReplica", st.integers(4097, 2**62)),
    "gpusPerReplica-type": _role_field("gpusPerReplica", st.sampled_from(("8", [8], {"n": 8}))),
    "gpusPerPod-range": _role_field("gpusPerPod", st.sampled_from((0, -4, 65, 4096, 2**40))),
    "not-a-multiple": _not_a_multiple,
    "role-name": _role_field(
        "name", st.sampled_from(("Prefill", "", "a" * 41, "-x", "x_y", "x.y", 5, "décode"))
    ),
    "role-missing-key": _drop_role_key,
    "duplicate-role": _duplicate_role,
    "roles": _roles_value,
    "traffic": _traffic,
    "kv-cache": _kv_cache,
    "scope-pattern": _scope,
    "unknown-tier": _unknown_tier,
    "placement-type": _placement_type,
    "template-schema": _broken_template(TEMPLATE_SCHEMA),
    "template-pod": _broken_template(TEMPLATE_POD),
    "unknown-field": _unknown_field,
    "spec-type": _spec_value,
}


@st.composite
def cases(draw: Any, pool: str, first: str | None) -> tuple[dict[str, Any], list[str], list[str]]:
    """(spec, mutation names, tokens): a valid spec, broken by ``first`` (None: left valid) and,
    one time in four, by a second mutation."""
    spec = draw(valid_specs(pool))
    broken: list[str] = []
    tokens: list[str] = []
    planned = [] if first is None else [first]
    if first is not None and draw(st.integers(0, 3)) == 0:
        planned.append(_choose(draw, tuple(sorted(MUTATIONS))))
    for name in planned:
        if "__spec__" in spec or not isinstance(spec.get("roles"), list) or not spec["roles"]:
            break  # nothing left to break in a sensible way
        if not all(isinstance(r, dict) and "name" in r and "template" in r for r in spec["roles"]):
            break
        found = MUTATIONS[name](draw, spec)
        if found:
            broken.append(name)
            tokens += found
    return spec, broken, tokens


def generate_cases(count: int, pool: str, namespace: str, batch_label: str) -> list[Case]:
    """``count`` cases: a third left valid, the rest spread evenly over the mutations (one
    hypothesis run each; hypothesis' own choices would favour the first of a list), shuffled so
    that every batch mixes them."""
    out: list[Case] = []
    names = sorted(MUTATIONS)
    valid = count // 3
    each = -(-(count - valid) // len(names))

    def collect_for(first: str | None, examples: int) -> None:
        @settings(max_examples=examples, **SETTINGS)  # type: ignore[arg-type]
        @given(cases(pool, first))
        def collect(case: tuple[dict[str, Any], list[str], list[str]]) -> None:
            spec, broken, tokens = case
            body: dict[str, Any] = {
                "apiVersion": "shorthop.io/v1alpha1",
                "kind": "InferenceDeployment",
                "metadata": {"name": "", "namespace": namespace, "labels": {batch_label: "x"}},
            }
            if "__spec__" in spec:
                if spec["__spec__"] is not None:
                    body["spec"] = spec["__spec__"]
            else:
                body["spec"] = spec
            body = json.loads(json.dumps(body))
            model_error = None
            try:
                manifest.parse_deployment(body)
            except SpecError as exc:
                model_error = str(exc)
            out.append(Case("", body, broken, tokens, model_error))

        collect()

    collect_for(None, valid)
    for name in names:
        collect_for(name, each)
    random.Random(len(out)).shuffle(out)
    for i, case in enumerate(out):
        case.name = case.body["metadata"]["name"] = f"fz-{i:05d}"
    return out


# -- against the API server and the operator ---------------------------------------------------


def _api_message(exc: client.ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except (ValueError, AttributeError):
        return str(exc.body or exc.reason)


def _names_a_field(case: Case) -> bool:
    return any(token in case.message for token in case.tokens) or (
        not case.tokens and "spec" in case.message
    )


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
        c for c in must_fail if c.outcome in ("rejected", "invalid") and not _names_a_field(c)
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
    assert len(all_cases) >= pick(40, 1000)


# -- pure: label sets, nvidia-smi, snapshot files ------------------------------------------------


def _fuzz(
    strategy: st.SearchStrategy[Any], fn: Callable[[Any], str | None], count: int
) -> malformed.Tally:
    tally = malformed.Tally()

    @settings(max_examples=count, **SETTINGS)  # type: ignore[arg-type]
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
    tally = _fuzz(malformed.snapshot_files(), malformed.plan_on_bytes(tmp_path), SNAPSHOT_FILES)
    runner = malformed.plan_on_bytes(tmp_path)
    for data in malformed.WHOLE_FILES:
        tally.run(runner, ("whole file", data))
    for name, path in malformed.special_snapshot_paths(tmp_path):
        tally.run(lambda case: malformed.judge_plan(malformed.run_plan(case[1])), (name, path))
    # The real process too: stderr is what a user sees.
    processes = malformed.Tally()
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
         "--deployment", str(malformed.MINIMAL)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return malformed.judge_plan(malformed.PlanRun(result.returncode, result.stderr))

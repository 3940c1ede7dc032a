"""Generated InferenceDeployment specs for ``chaos/test_fuzz.py``: valid ones, and deliberate
breakages (wrong types, out-of-range numbers, bad names and scopes, broken templates, unknown
fields, ...), each with the field paths a message about it must name (:func:`names_the_field`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from shorthop import manifest
from shorthop.errors import SpecError
from shorthop.topology import levels

from tests import operator_harness as oh

# These hypothesis runs generate inputs to tally rather than test each one (nothing raises, so
# nothing shrinks), and how the generators draw is not under test. Fixed or fresh draws come from
# the suite's profile: fixed in `make test`, fresh in `make chaos` (tests/hypothesis_profiles.py).
GENERATE = {"phases": [Phase.explicit, Phase.generate], "suppress_health_check": list(HealthCheck)}

TIERS = levels.preset("plain").tiers  # the operator runs with the plain preset
ROLE_NAMES = ("prefill", "decode", "router", "r1", "a-b")
IMAGE = "vllm/vllm-openai:v0.11.0"


# -- generated specs -----------------------------------------------------------------------------


# A field path a message must name: every string of the tuple must appear in it (the API server
# writes ``spec.roles[0].replicas``, and so do shorthop's own messages).
FieldPath = tuple[str, ...]


@dataclass
class Case:
    """One generated InferenceDeployment and what was broken in it."""

    name: str
    body: dict[str, Any]
    broken: list[str] = field(default_factory=list)  # mutation names
    paths: list[FieldPath] = field(default_factory=list)  # a message must name one of these
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


Mutation = Callable[[Any, dict[str, Any]], list[FieldPath]]  # (draw, spec) -> paths it broke


def _role(draw: Any, spec: dict[str, Any]) -> dict[str, Any]:
    roles = spec.get("roles")
    if isinstance(roles, list) and roles and isinstance(roles[0], dict):
        return dict(draw(st.sampled_from([r for r in roles if isinstance(r, dict)])))
    return {}


def _set_role(spec: dict[str, Any], role: dict[str, Any]) -> int:
    """Write back a changed copy of the role with the same name (the first such); its index."""
    for i, r in enumerate(spec["roles"]):
        if isinstance(r, dict) and r.get("name") == role.get("_name", role.get("name")):
            role.pop("_name", None)
            spec["roles"][i] = role
            return i
    raise AssertionError(f"no role named {role.get('_name')!r} to write back")


def _in_role(index: int, tail: str, *also: str) -> list[FieldPath]:
    """``spec.roles[<index>]<tail>``: list items by index, the one spelling of the API server
    and of shorthop's own messages."""
    return [(f"spec.roles[{index}]{tail}", *also)]


def _role_field(key: str, values: st.SearchStrategy[Any]) -> Mutation:
    def mutate(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
        role = _role(draw, spec)
        if not role:
            return []
        role["_name"] = role.get("name")
        role[key] = draw(values)
        index = _set_role(spec, role)
        # A renamed role is named by its index only (its new name is what is wrong).
        return _in_role(index, f".{key}")

    return mutate


def _drop_role_key(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    role = _role(draw, spec)
    if not role:
        return []
    present = [k for k in ("name", "replicas", "gpusPerReplica", "template") if k in role]
    if not present:
        return []
    key = draw(st.sampled_from(present))
    role["_name"] = role.get("name")
    del role[key]
    index = _set_role(spec, role)
    return _in_role(index, f".{key}")


def _not_a_multiple(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    role = _role(draw, spec)
    if not role:
        return []
    per_pod = draw(st.sampled_from((2, 4, 8)))
    role["_name"] = role.get("name")
    role["gpusPerPod"] = per_pod
    role["gpusPerReplica"] = per_pod * draw(st.integers(1, 4)) + draw(st.integers(1, per_pod - 1))
    index = _set_role(spec, role)
    # A rule over the role as a whole: its path, and both fields in the text.
    return _in_role(index, "", "gpusPerReplica", "gpusPerPod")


def _duplicate_role(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    roles = spec["roles"]
    roles.append(json.loads(json.dumps(roles[0])))
    name = roles[0].get("name")
    # The copy's index, and the name it repeats.
    return [(f"spec.roles[{len(roles) - 1}]", str(name)), ("spec.roles", "unique", str(name))]


def _roles_value(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    choice = draw(st.sampled_from(("empty", "missing", "too-many", "string", "object", "number")))
    if choice == "missing":
        del spec["roles"]
    elif choice == "too-many":
        base = spec["roles"][0]
        spec["roles"] = [{**base, "name": f"r{i}"} for i in range(17)]
    else:
        spec["roles"] = {"empty": [], "string": "prefill", "object": {}, "number": 3}[choice]
    return [("spec.roles:",), ("spec.roles ",)]


def _traffic(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    names = [r["name"] for r in spec["roles"]]
    choice = draw(st.sampled_from(("unknown-role", "weight", "missing-from", "too-many", "string")))
    if choice == "unknown-role":
        ghost = draw(st.sampled_from(("ghost", "decode-x")))
        spec["traffic"] = [{"from": names[0], "to": ghost}]
        # The schema's rule over the whole spec names the traffic list and the unknown role.
        return [("spec.traffic", ghost)]
    if choice == "weight":
        value = draw(st.sampled_from((-1, -0.5, 1001, 1e300, "heavy", True)))
        spec["traffic"] = [{"from": names[0], "to": names[-1], "weight": value}]
        return [("spec.traffic[0].weight",)]
    if choice == "missing-from":
        spec["traffic"] = [{"to": names[0]}]
        return [("spec.traffic[0].from",)]
    if choice == "too-many":
        spec["traffic"] = [{"from": names[0], "to": names[-1]}] * 65
    else:
        spec["traffic"] = "prefill->decode"
    return [("spec.traffic:",), ("spec.traffic ",)]


def _kv_cache(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    key = draw(st.sampled_from(("bytesPerToken", "tokens")))
    spec["kvCache"] = {key: draw(st.sampled_from((0, -1, "lots", 1.5)))}
    return [(f"spec.kvCache.{key}",)]


def _scope_at(draw: Any, spec: dict[str, Any], where: str, value: Any) -> list[FieldPath]:
    """``value`` as the role's replicaScope or as the placement's required/preferred tier."""
    if where == "replicaScope":
        role = _role(draw, spec)
        role["_name"] = role.get("name")
        role["replicaScope"] = value
        return _in_role(_set_role(spec, role), ".replicaScope")
    spec["placement"] = {where: value}
    return [(f"spec.placement.{where}",)]


def _scope(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    where = draw(st.sampled_from(("replicaScope", "required", "preferred")))
    value = draw(st.sampled_from(("Rack", "rack!", "", "x" * 64, "-rack", "rack_1", 7)))
    return _scope_at(draw, spec, where, value)


def _unknown_tier(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    """Well-formed but not a tier of this cluster: only the operator can tell."""
    value = draw(st.sampled_from(("galaxy", "rack-2", "host", "nvlink", "superpod")))
    where = draw(st.sampled_from(("replicaScope", "required", "preferred")))
    return _scope_at(draw, spec, where, value)


def _placement_type(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    spec["placement"] = draw(st.sampled_from(("rack", 3, ["rack"])))
    return [("spec.placement:",), ("spec.placement ",)]


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
    def mutate(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
        return _template_shape(draw, spec, _choose(draw, choices))

    return mutate


# Where each broken template is wrong, below ``spec.roles[i].template``.
TEMPLATE_PATHS = {
    "no-spec": ".spec", "template-string": "", "no-containers": ".spec.containers",
    "containers-empty": ".spec.containers", "containers-string": ".spec.containers",
    "containers-items": ".spec.containers[0]", "gpu-mismatch": ".spec.containers",
    "gpu-nan": ".spec.containers[0].resources.limits[nvidia.com/gpu]",
    "resources-string": ".spec.containers[0].resources",
    "limits-list": ".spec.containers[0].resources.limits",
    "requests-number": ".spec.containers[0].resources.requests",
    "tolerations-number": ".spec.tolerations", "tolerations-items": ".spec.tolerations",
    "env-string": ".spec.containers[0].env", "env-items": ".spec.containers[0].env",
    "labels-string": ".metadata.labels", "labels-values": ".metadata.labels",
    "annotations-list": ".metadata.annotations",
}  # fmt: skip


def _template_shape(draw: Any, spec: dict[str, Any], choice: str) -> list[FieldPath]:
    """The template broken where the CRD schema checks it (``template.spec.containers``) or
    where it cannot (the rest of the pod template is free-form)."""
    role = _role(draw, spec)
    if not _well_formed(role.get("template")):
        return []
    role["_name"] = role.get("name")
    template = json.loads(json.dumps(role["template"]))
    container = template["spec"]["containers"][0]
    per_pod = role.get("gpusPerPod") or role.get("gpusPerReplica") or 1
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
    elif choice == "resources-string":
        container["resources"] = draw(st.sampled_from(("8 GPUs", 8, ["limits"])))
    elif choice == "limits-list":
        container["resources"] = {"limits": ["nvidia.com/gpu"]}
    elif choice == "requests-number":
        container["resources"] = {"requests": 4}
    elif choice == "tolerations-number":
        template["spec"]["tolerations"] = draw(st.sampled_from((5, "all", {"key": "x"})))
    elif choice == "tolerations-items":
        template["spec"]["tolerations"] = [draw(st.sampled_from(("all", 5, ["x"])))]
    elif choice == "env-string":
        container["env"] = draw(st.sampled_from(("A=1", 1, {"name": "A"})))
    elif choice == "env-items":
        container["env"] = [draw(st.sampled_from(("A=1", 1, ["A"])))]
    elif choice == "labels-string":
        template["metadata"] = {"labels": draw(st.sampled_from(("app=x", 5, ["app"])))}
    elif choice == "labels-values":
        template["metadata"] = {"labels": {"app": draw(st.sampled_from((5, True, None, ["x"])))}}
    else:
        template["metadata"] = {"annotations": draw(st.sampled_from((["x"], "x", {"a": 1})))}
    role["template"] = template
    return _in_role(_set_role(spec, role), f".template{TEMPLATE_PATHS[choice]}")


def _unknown_field(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    key = draw(
        st.sampled_from(("fooBar", "replica", "gpus", "Replicas", "scheduler", "gpus_per_pod"))
    )
    where = draw(st.sampled_from(("spec", "role", "placement", "kvCache", "traffic", "template")))
    if where == "spec":
        spec[key] = 1
        return [(f"spec.{key}",)]
    if where == "placement":
        spec["placement"] = {key: "rack"}
        return [(f"spec.placement.{key}",)]
    if where == "kvCache":
        spec["kvCache"] = {key: 1}
        return [(f"spec.kvCache.{key}",)]
    if where == "traffic":
        names = [r["name"] for r in spec["roles"]]
        spec["traffic"] = [{"from": names[0], "to": names[-1], key: 1}]
        return [(f"spec.traffic[0].{key}",)]
    role = _role(draw, spec)
    role["_name"] = role.get("name")
    if where == "role":
        role[key] = 1
        return _in_role(_set_role(spec, role), f".{key}")
    if not isinstance(role.get("template"), dict):
        return []
    role["template"] = {**role["template"], key: 1}
    return _in_role(_set_role(spec, role), f".template.{key}")


def _spec_value(draw: Any, spec: dict[str, Any]) -> list[FieldPath]:
    """The whole spec of the wrong type (marked by replacing it through a sentinel key)."""
    spec.clear()
    spec["__spec__"] = draw(st.sampled_from(("roles: []", 5, ["prefill"], None)))
    return [("spec:",), ("spec ",)]


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
def cases(
    draw: Any, pool: str, first: str | None
) -> tuple[dict[str, Any], list[str], list[FieldPath]]:
    """(spec, mutation names, field paths broken): a valid spec, broken by ``first`` (None: left
    valid) and, one time in four, by a second mutation."""
    spec = draw(valid_specs(pool))
    broken: list[str] = []
    paths: list[FieldPath] = []
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
            paths += found
    return spec, broken, paths


def generate_cases(count: int, pool: str, namespace: str, batch_label: str) -> list[Case]:
    """``count`` cases: a third left valid, the rest spread evenly over the mutations (one
    hypothesis run each; hypothesis' own choices would favour the first of a list), shuffled so
    that every batch mixes them."""
    out: list[Case] = []
    names = sorted(MUTATIONS)
    valid = count // 3
    each = -(-(count - valid) // len(names))

    def collect_for(first: str | None, examples: int) -> None:
        @settings(max_examples=examples, **GENERATE)  # type: ignore[arg-type]
        @given(cases(pool, first))
        def collect(case: tuple[dict[str, Any], list[str], list[FieldPath]]) -> None:
            spec, broken, paths = case
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
            out.append(Case("", body, broken, paths, model_error))

        collect()

    collect_for(None, valid)
    for name in names:
        collect_for(name, each)
    random.Random(len(out)).shuffle(out)
    for i, case in enumerate(out):
        case.name = case.body["metadata"]["name"] = f"fz-{i:05d}"
    return out


def _model_path(error: str | None) -> list[FieldPath]:
    """The field a SpecError of the models names (its message starts ``<path>: ...``)."""
    path = (error or "").split(": ", 1)[0]
    return [(path,)] if path.startswith("spec") and " " not in path else []


def names_the_field(case: Case) -> bool:
    """The message names the broken field by its path: one of the mutations' paths, or (for a
    spec only the models reject) the path the models' error names."""
    paths = case.paths or _model_path(case.model_error)
    return any(all(part in case.message for part in path) for path in paths)

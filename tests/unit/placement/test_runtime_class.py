"""A role's RuntimeClass is applied to its template as the API server's RuntimeClass admission
applies it to the pods (overhead, node selector, tolerations), and what that admission refuses is
a spec error naming the field and the fix; the plan then counts the overhead and keeps the pods
on the nodes the class selects and tolerates."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop import manifest
from shorthop.errors import MissingObject, SpecError
from shorthop.placement import request, runtime_class, snapshot, solver
from shorthop.topology import fake

PATH = "spec.roles[0].template.spec"
KATA: dict[str, Any] = {
    "apiVersion": "node.k8s.io/v1",
    "kind": "RuntimeClass",
    "metadata": {"name": "kata"},
    "handler": "kata",
    "overhead": {"podFixed": {"cpu": "20", "memory": "1Gi"}},
    "scheduling": {
        "nodeSelector": {"example.com/kata": "yes"},
        "tolerations": [{"key": "example.com/kata", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def test_the_class_sets_overhead_and_joins_selector_and_tolerations() -> None:
    own_toleration = {"key": "pool", "operator": "Equal", "value": "a", "effect": "NoSchedule"}
    spec = {
        "runtimeClassName": "kata",
        "nodeSelector": {"zone": "z1"},
        "tolerations": [own_toleration],
        "containers": [{"name": "c"}],
    }
    out = runtime_class.applied(spec, KATA, PATH)
    assert out["overhead"] == {"cpu": "20", "memory": "1Gi"}
    assert out["nodeSelector"] == {"zone": "z1", "example.com/kata": "yes"}
    assert out["tolerations"] == [own_toleration, *KATA["scheduling"]["tolerations"]]
    assert spec["nodeSelector"] == {"zone": "z1"}, "the template itself is left as it is"
    # A class with nothing to add leaves the template as it is; no class named: likewise.
    plain = {"metadata": {"name": "runc"}, "handler": "runc"}
    assert runtime_class.applied({**spec, "runtimeClassName": "runc"}, plain, PATH) == {
        **spec,
        "runtimeClassName": "runc",
    }
    assert runtime_class.applied({"containers": []}, None, PATH) == {"containers": []}


@pytest.mark.parametrize(
    ("spec", "found", "field", "says"),
    [
        ({"runtimeClassName": "kata"}, None, f"{PATH}.runtimeClassName",
         'RuntimeClass "kata" does not exist'),
        ({"runtimeClassName": "kata", "nodeSelector": {"example.com/kata": "no"}}, KATA,
         f"{PATH}.nodeSelector.example.com/kata", "selects example.com/kata=yes"),
        ({"runtimeClassName": "kata", "overhead": {"cpu": "1"}}, KATA, f"{PATH}.overhead",
         "differs from RuntimeClass"),
        ({"runtimeClassName": "kata"}, {**KATA, "overhead": ["x"]}, f"{PATH}.runtimeClassName",
         "overhead is not a mapping"),
        ({"runtimeClassName": "kata"}, {**KATA, "scheduling": {"tolerations": "x"}},
         f"{PATH}.runtimeClassName", "scheduling.tolerations is not a list"),
    ],
)  # fmt: skip
def test_what_the_api_server_refuses_is_a_spec_error_naming_the_field(
    spec: dict[str, Any], found: dict[str, Any] | None, field: str, says: str
) -> None:
    with pytest.raises(SpecError) as caught:
        runtime_class.applied(spec, found, PATH)
    assert caught.value.field == field
    assert says in str(caught.value)
    # only a class that does not exist may come to exist: the operator comes back for that one
    assert isinstance(caught.value, MissingObject) == (found is None)


def _deployment(template: dict[str, Any], replicas: int) -> Any:
    return manifest.parse_deployment(
        {
            "apiVersion": "shorthop.io/v1alpha1",
            "kind": "InferenceDeployment",
            "metadata": {"name": "rc", "namespace": "default"},
            "spec": {
                "roles": [
                    {
                        "name": "decode",
                        "replicas": replicas,
                        "gpusPerReplica": 4,
                        "template": {"spec": template},
                    }
                ]
            },
        }
    )


def test_the_plan_counts_the_overhead_and_keeps_to_the_class_nodes() -> None:
    """Four HGX nodes (224 CPUs each), two of them labelled and tainted for the class. Pods of
    100 CPUs fit two to a node; with the class's 20 CPUs of overhead, one: the four replicas
    need both labelled nodes whole, and the others (untainted, unlabelled) are left out."""
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=4))
    for node in nodes[:2]:
        node["metadata"]["labels"]["example.com/kata"] = "yes"
        node["spec"] = {"taints": [{"key": "example.com/kata", "effect": "NoSchedule"}]}
    snap = snapshot.build(nodes, [], fake.CONFIG)
    template = {
        "runtimeClassName": "kata",
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "100"}}}],
    }
    infd = _deployment(template, 4)
    req = request.from_spec(infd.spec, snap.index.tiers, runtime_classes={"kata": KATA})
    assert (req.roles[0].cpu_millis, req.roles[0].memory_bytes) == (120_000, 1 << 30)
    assert not solver.solve(snap, req).feasible, "two class nodes hold two 120-CPU pods each"
    fits = request.from_spec(_deployment(template, 2).spec, snap.index.tiers,
                             runtime_classes={"kata": KATA})  # fmt: skip
    plan = solver.solve(snap, fits)
    assert plan.feasible
    labelled = {n["metadata"]["name"] for n in nodes[:2]}
    assert {a.node for a in plan.assignments} == labelled, "one pod per class node"
    # Without the class known, the same template is read as it is (shorthop plan's fallback).
    blind = request.from_spec(infd.spec, snap.index.tiers)
    assert blind.roles[0].cpu_millis == 100_000
    # A class known not to exist is the API server's refusal, before any pod is made.
    with pytest.raises(SpecError, match='RuntimeClass "kata" does not exist'):
        request.from_spec(infd.spec, snap.index.tiers, runtime_classes={"kata": None})

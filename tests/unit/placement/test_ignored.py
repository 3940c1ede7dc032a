"""Every scheduling field of a template that shorthop does not apply is named, with the reason
(nothing is dropped silently), and the fields it applies are not."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.placement import constraints, ignored

PATH = "spec.roles[0].template.spec"


def unapplied(**spec: Any) -> list[str]:
    full = {"containers": [{}], **spec}
    return ignored.unapplied(full, PATH, constraints.parse(full, PATH))


@pytest.mark.parametrize(
    ("spec", "field", "why"),
    [
        ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}}},
         "affinity.podAffinity", "topology objective"),
        ({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{}]}}},
         "affinity.podAntiAffinity", "topology objective"),
        ({"topologySpreadConstraints": [{"maxSkew": 1}]}, "topologySpreadConstraints", "topology"),
        ({"schedulingGates": [{"name": "x"}]}, "schedulingGates", "removed from the pods"),
        ({"schedulerName": "volcano"}, "schedulerName", "replaced"),
        ({"priorityClassName": "high"}, "priorityClassName", "never preempts"),
        ({"preemptionPolicy": "Never"}, "preemptionPolicy", "never preempts"),
        ({"resourceClaims": [{"name": "gpu"}]}, "resourceClaims", "not allocated"),
        ({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}, "volumes[0]",
         "node affinity"),
        ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "m", "operator": "Gt",
                                                         "values": ["x"]}]}]}}}},
         "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
         ".nodeSelectorTerms[0].matchExpressions[0].values[0]", "matches no node"),
    ],
)  # fmt: skip
def test_each_field_not_applied_is_named_with_its_reason(
    spec: dict[str, Any], field: str, why: str
) -> None:
    found = unapplied(**spec)
    assert len(found) == 1, found
    assert found[0].startswith(f"{PATH}.{field}: "), found[0]
    assert why in found[0]


def test_the_fields_shorthop_applies_are_not_named() -> None:
    preferred = [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}
    ]
    container = {
        "ports": [{"containerPort": 80, "hostPort": 80}],
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
            "limits": {"nvidia.com/gpu": "8", "rdma/ib": "1"},
        },  # every one counted
    }
    found = unapplied(
        schedulerName="shorthop",  # shorthop's own
        runtimeClassName="nvidia",  # its class is applied (placement.runtime_class)
        nodeSelector={"a": "b"},
        nodeName="n1",
        tolerations=[{"operator": "Exists"}],
        affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}},
        containers=[container],
        volumes=[{"name": "shm", "emptyDir": {"medium": "Memory"}}],
    )
    assert found == []

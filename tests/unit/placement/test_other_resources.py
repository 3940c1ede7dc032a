"""Resources besides CPU, memory and GPUs (``rdma/ib``, hugepages, ephemeral storage) are counted
as the kubelet counts them: a pod requests them by the sidecar rule, a node offers its allocatable
amount less what its pods (and pods being bound) request, and no placer puts more pods on a node
than its amounts hold, across the roles of one plan; when too few nodes have enough, the reason
names the resource."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.placement import exact, occupancy, placers, snapshot, solver
from shorthop.placement.occupancy import Assumed
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.topology import fake

from bench import common
from tests import builders

RDMA = "rdma/ib"


def test_a_pod_requests_other_resources_by_the_sidecar_rule() -> None:
    spec = {
        "containers": [{"resources": {"limits": {RDMA: "1", "nvidia.com/gpu": "4"}}}],
        "initContainers": [
            {"restartPolicy": "Always", "resources": {"requests": {RDMA: "1"}}},
            {"resources": {"requests": {"ephemeral-storage": "10Gi", RDMA: "3"}}},
        ],
        "resources": {"requests": {"hugepages-2Mi": "1Gi"}},
        "overhead": {"cpu": "1", "ephemeral-storage": "1Gi"},
    }
    assert occupancy.other_requests(spec) == (
        ("ephemeral-storage", 11 << 30),  # the init step's 10Gi, plus the overhead's 1Gi
        ("hugepages-2Mi", 1 << 30),  # pod-level
        (RDMA, 4),  # the init step beside the sidecar: 3 + 1 > 1 + 1
    )
    assert (
        occupancy.other_requests({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == ()
    )


def _node(name: str, rdma: str | None) -> dict[str, Any]:
    node = builders.node_object(name, "hgx", 8, rack="r1", block="b1")
    if rdma is not None:
        node["status"]["allocatable"][RDMA] = rdma
    return node


def _pod(name: str, node: str, rdma: int) -> dict[str, Any]:
    pod = builders.gpu_pod(name, node, [0])
    pod["spec"]["containers"][0]["resources"]["limits"][RDMA] = str(rdma)
    return pod


def test_a_node_offers_its_amount_less_what_its_pods_and_assumed_pods_take() -> None:
    builder = snapshot.SnapshotBuilder(fake.CONFIG)
    for node in (_node("a", "4"), _node("b", None)):
        builder.apply_node(None, node)
    builder.apply_pod(None, _pod("p1", "a", 1))
    builder.apply_pod(None, _pod("p2", "b", 2))  # bound by someone where there is none
    builder.assume("ns/p3", Assumed("a", (1,), other=((RDMA, 2),)))
    snap = builder.freeze()
    row = snap.index.row_of
    assert int(snap.other[RDMA][row["a"]]) == 1
    assert int(snap.other[RDMA][row["b"]]) == -2
    back = snap.with_released({}, {}, {row["a"]: ((RDMA, 2),)})
    assert int(back.other[RDMA][row["a"]]) == 3
    assert int(snap.other[RDMA][row["a"]]) == 1, "the snapshot itself is left as it is"
    builder.forget("ns/p3")
    assert int(builder.freeze().other[RDMA][row["a"]]) == 3


def _request(prefill_rdma: int, decode_rdma: int, replicas: int = 2) -> Request:
    def other(n: int) -> tuple[tuple[str, int], ...]:
        return ((RDMA, n),) if n else ()

    return Request(
        roles=(
            RoleRequest("prefill", replicas, 1, 2, other=other(prefill_rdma)),
            RoleRequest("decode", replicas, 1, 2, other=other(decode_rdma)),
        ),
        traffic=(TrafficEdge(0, 1, 1.0),),
    )


@pytest.mark.parametrize("placer", ["shorthop", "exact", *[p.name for p in placers.all_placers()]])
def test_no_placer_puts_more_pods_on_a_node_than_its_amount_holds(placer: str) -> None:
    """Four 2-GPU pods would share one 8-GPU node; "a" has one rdma/ib, "b" two, "c" none: the
    pods that request one spread over a and b (one and two), across both roles."""
    nodes = [_node("a", "1"), _node("b", "2"), _node("c", None)]
    snap = snapshot.build(nodes, [], fake.CONFIG)
    request = Request(
        roles=(
            RoleRequest("prefill", 1, 1, 2, other=((RDMA, 1),)),
            RoleRequest("decode", 2, 1, 2, other=((RDMA, 1),)),
        ),
        traffic=(TrafficEdge(0, 1, 1.0),),
    )
    if placer == "shorthop":
        plan = solver.solve(snap, request)
    elif placer == "exact":
        plan = exact.solve(snap, request)
    else:
        plan = next(p for p in placers.all_placers() if p.name == placer).place(snap, request)
    assert plan.feasible
    assert common.plan_problems(snap, request, plan) == []
    on = sorted(a.node for a in plan.assignments)
    assert on == ["a", "b", "b"], on


def test_a_role_without_the_resource_shares_the_node_freely() -> None:
    nodes = [_node("a", "1")]
    snap = snapshot.build(nodes, [], fake.CONFIG)
    plan = solver.solve(snap, _request(1, 0, replicas=1))
    assert plan.feasible
    assert {a.node for a in plan.assignments} == {"a"}
    assert not solver.solve(snap, _request(1, 1, replicas=1)).feasible


def test_too_little_of_it_is_explained_naming_the_resource() -> None:
    nodes = [_node("a", "1"), _node("b", None), _node("c", None)]
    snap = snapshot.build(nodes, [], fake.CONFIG)
    plan = solver.solve(snap, _request(0, 2))
    assert not plan.feasible
    (reason,) = plan.reasons
    assert reason.constraint == "resources"
    assert reason.field == "spec.containers"
    assert "each pod of role decode takes 2 rdma/ib" in reason.message()
    assert "room for 0 pods of the 2 to place" in reason.message()


@pytest.mark.parametrize(
    ("cpu", "memory", "says"),
    [
        (300_000, 0, "each pod of role decode takes 300 cpu; the nodes it may use have 448 left "
         "(2 nodes), room for 0 pods of the 4 to place"),
        (120_500, 0, "takes 120500m cpu; the nodes it may use have 448 left (2 nodes), room for "
         "2 pods of the 4"),
        (0, 1500 << 30, "takes 1500Gi memory; the nodes it may use have 3600Gi left (2 nodes), "
         "room for 2 pods of the 4"),
    ],
)  # fmt: skip
def test_too_little_cpu_or_memory_is_named_not_blamed_on_gpus(
    cpu: int, memory: int, says: str
) -> None:
    """Two HGX nodes (16 free GPUs, 224 CPUs and 1800Gi each) and four 4-GPU pods: the GPUs
    are there, the CPU or memory is not, and the reason says which."""
    snap = snapshot.build(fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=2)), [],
                          fake.CONFIG)  # fmt: skip
    role = RoleRequest("decode", 4, 1, 4, cpu_millis=cpu, memory_bytes=memory)
    plan = solver.solve(snap, Request(roles=(role,)))
    assert not plan.feasible
    (reason,) = plan.reasons
    assert reason.constraint == "resources"
    assert says in reason.message()


def test_odd_keys_and_amounts_from_a_file_are_read_not_crashed_on() -> None:
    """YAML allows a number as a key and a negative quantity: read as the name "1" on both
    sides, and a negative allocatable as none (as every malformed quantity counts as 0)."""
    pod = {"containers": [{"resources": {"limits": {1: "2", RDMA: "1"}}}]}
    assert occupancy.other_requests(pod) == (("1", 2), (RDMA, 1))
    node = _node("a", "-3")
    node["status"]["allocatable"][1] = "2"
    assert occupancy.node_offer(node, fake.CONFIG).other[:1] == (("1", 2),)
    assert dict(occupancy.node_offer(node, fake.CONFIG).other)[RDMA] == 0

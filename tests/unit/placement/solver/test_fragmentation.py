"""Among plans equal in (intra, traffic) cost, the solver keeps whole units free for large
replicas: it takes a partly used NVLink domain or node before an entirely free one."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.placement import snapshot, solver
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.topology import fake

from tests import builders

CONFIG = fake.CONFIG


def _rack(name: str, trays: int, busy: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An NVL72-style clique of ``trays`` 4-GPU trays in rack ``name``, the first ``busy`` full."""
    nodes = [
        builders.node_object(f"{name}-t{i:02d}", "tray", 4, clique=f"c-{name}", rack=name)
        for i in range(trays)
    ]
    pods = [builders.gpu_pod(f"bg-{name}-{i}", f"{name}-t{i:02d}", 4) for i in range(busy)]
    return nodes, pods


def _tp1(prefill: int, decode: int) -> Request:
    return Request(
        roles=(RoleRequest("prefill", prefill, 1, 1), RoleRequest("decode", decode, 1, 1)),
        traffic=(TrafficEdge(0, 1, 1.0),),
    )


@pytest.mark.parametrize("whole_first", [True, False])
@pytest.mark.parametrize(("prefill", "decode"), [(8, 5), (4, 4), (3, 10)])
def test_a_partly_used_nvlink_domain_is_taken_before_a_whole_one(
    whole_first: bool, prefill: int, decode: int
) -> None:
    # Two racks of 18 trays: one with 14 trays busy (16 GPUs free), one entirely free. Both
    # hold the deployment inside one NVLink domain at the same cost.
    used_nodes, used_pods = _rack("ra", 18, 14)
    whole_nodes, _ = _rack("rb", 18, 0)
    nodes = whole_nodes + used_nodes if whole_first else used_nodes + whole_nodes
    snap = snapshot.build(nodes, used_pods, CONFIG)
    request = _tp1(prefill, decode)
    plan = solver.solve(snap, request)
    assert plan.feasible
    assert {a.node.split("-")[0] for a in plan.assignments} == {"ra"}
    # The same deployment alone in the whole rack costs the same: nothing was given up.
    alone = solver.solve(snapshot.build(whole_nodes, [], CONFIG), request)
    assert plan.cost.key() == alone.cost.key()


def test_a_half_used_node_is_taken_before_a_whole_one() -> None:
    # HGX nodes outside any clique in one rack: a whole one first in row order, then two with
    # half their GPUs busy. A replica of one 4-GPU pod costs the same on any of them.
    nodes = [builders.node_object(f"n{i}") for i in range(3)]
    pods = [builders.gpu_pod(f"bg{i}", f"n{i}", [0, 1, 2, 3]) for i in (1, 2)]
    snap = snapshot.build(nodes, pods, CONFIG)
    request = Request(roles=(RoleRequest("decode", 1, 1, 4),))
    plan = solver.solve(snap, request)
    alone = solver.solve(snapshot.build(nodes, [], CONFIG), request)
    assert plan.feasible
    assert plan.cost.key() == alone.cost.key()
    assert "n0" not in {a.node for a in plan.assignments}

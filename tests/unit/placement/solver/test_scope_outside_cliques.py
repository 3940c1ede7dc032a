"""A replica scoped to ``nvlink-domain`` on nodes outside every NVLink clique (HGX nodes, PCIe
nodes): the node is its own NVLink domain. Placing it again around surviving pods (repair) keeps
it on that node, and the rescue of a tight small instance finds the placement the exact solver
does (both failed before: there is no clique vertex at that layer of the domain tree)."""

from __future__ import annotations

from shorthop.placement import exact, solver
from shorthop.placement import snapshot as snapshots
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.placement.solver.greedy import greedy
from shorthop.placement.solver.rescue import rescue
from shorthop.placement.solver.state import Failure, State, Strategy
from shorthop.topology import fake

from tests import builders

NVLINK_DOMAIN = 2  # tier index of ``nvlink-domain``


def test_repairing_a_scoped_replica_on_hgx_nodes_puts_the_lost_pod_back_on_its_node() -> None:
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=3))
    request = Request(
        roles=(
            RoleRequest("prefill", 1, 1, 4),
            RoleRequest("decode", 1, 2, 4, NVLINK_DOMAIN),
        ),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
        name="repair",
    )
    plan = solver.solve(snapshots.build(nodes, [], fake.CONFIG), request)
    assert plan.feasible
    lost = next(a for a in plan.assignments if a.key.role == "decode" and a.key.pod == 1)
    kept = [a for a in plan.assignments if a != lost]
    pods = [builders.gpu_pod(f"p{i}", a.node, list(a.gpus)) for i, a in enumerate(kept)]
    again = solver.solve(
        snapshots.build(nodes, pods, fake.CONFIG),
        request,
        fixed={a.key: (a.row, a.gpus) for a in kept},
    )
    assert again.feasible, again.reasons
    survivor = next(a for a in kept if a.key.role == "decode")
    placed = next(a for a in again.assignments if a.key == lost.key)
    assert placed.node == survivor.node


def _tight() -> tuple[snapshots.ClusterSnapshot, Request]:
    """No cliques. Free: 3 GPUs on n1, 4 on n2, 1 on n3; a 2-GPU prefill pod, three 1-GPU
    decode pods, and three 1-GPU encode pods that must share an NVLink domain (a node here).
    Greedy puts decode or prefill where encode needed to go; only n1 whole for encode fits."""
    nodes = [
        builders.node_object("n1", "pcie", 4),
        builders.node_object("n2", "pcie", 8),
        builders.node_object("n3", "hgx", 2),
    ]
    pods = [
        builders.gpu_pod("bg1", "n1", [2]),
        builders.gpu_pod("bg2", "n2", [0, 3, 4, 7]),
        builders.gpu_pod("bg3", "n3", [0]),
    ]
    request = Request(
        roles=(
            RoleRequest("prefill", 1, 1, 2),
            RoleRequest("decode", 1, 3, 1),
            RoleRequest("encode", 1, 3, 1, NVLINK_DOMAIN),
        ),
        traffic=(
            TrafficEdge(1, 0, 0.25, Pattern.PAIRED),
            TrafficEdge(2, 0, 0.25, Pattern.PAIRED),
        ),
        name="tight",
    )
    return snapshots.build(nodes, pods, fake.CONFIG), request


def test_rescue_finds_a_scoped_replica_a_node_of_its_own() -> None:
    snap, request = _tight()
    failed = 0
    for strategy in (Strategy.COST, Strategy.PACK, Strategy.FIRST_FIT):
        try:
            greedy(State(snap, request, None, {}, strategy))
        except Failure:
            failed += 1
    assert failed == 3  # the case the rescue is for
    state = State(snap, request, None, {}, Strategy.COST)
    assert rescue(state)
    encode = {row for _, row, _ in state.replicas[(2, 0)].placed}
    assert len(encode) == 1


def test_the_solver_places_it_at_the_exact_optimum() -> None:
    snap, request = _tight()
    plan = solver.solve(snap, request)
    best = exact.solve(snap, request)
    assert best.feasible
    assert plan.feasible, plan.reasons
    assert plan.cost.key() == best.cost.key()


def test_a_scoped_replica_that_fits_no_node_is_told_the_room_the_largest_node_has() -> None:
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=2))
    names = [n["metadata"]["name"] for n in nodes]
    pods = [builders.gpu_pod("a", names[0], [0, 1]), builders.gpu_pod("b", names[1], [0, 1, 2, 3])]
    request = Request(
        roles=(RoleRequest("prefill", 1, 1, 1), RoleRequest("decode", 1, 2, 4, NVLINK_DOMAIN)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
        name="no-room",
    )
    plan = solver.solve(snapshots.build(nodes, pods, fake.CONFIG), request)
    assert not plan.feasible
    (reason,) = plan.reasons
    assert reason.field == "spec.roles[1].replicaScope"
    # 6 and 4 GPUs free: one 4-GPU pod fits either node, the replica needs two on one
    assert (reason.needed, reason.available) == (8, 4)
    assert "has room for 4" in reason.detail

"""The rescue on small instances: where every strategy fails but a placement exists (pod sizes
that do not divide each other, on tight nodes), the solver still finds one, and agrees with the
exact solver on feasibility; it never turns an infeasible deployment into a plan."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shorthop.placement import exact, solver
from shorthop.placement import snapshot as snapshots
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.placement.solver import rescue
from shorthop.placement.solver.greedy import greedy
from shorthop.placement.solver.state import Failure, State, Strategy

from tests import builders
from tests.hypothesis_profiles import examples
from tests.unit.placement.test_solver import CONFIG, assert_valid


def _tight() -> tuple[snapshots.ClusterSnapshot, Request]:
    """Free GPUs 4, 4 and 8; pods of 2, 2, 2 (prefill), 3, 3 (decode) and 4 (encode): 16 GPUs
    on 16, which fit only as {3, 3, 2} on the 8-GPU node, {4} and {2, 2} on the others."""
    nodes = [
        builders.node_object("n0", "pcie", 4),
        builders.node_object("n1", "pcie", 4),
        builders.node_object("n2", "hgx", 8),
    ]
    request = Request(
        roles=(
            RoleRequest("prefill", 3, 1, 2),
            RoleRequest("decode", 2, 1, 3),
            RoleRequest("encode", 1, 1, 4),
        ),
        traffic=(
            TrafficEdge(0, 1, 0.5, Pattern.ALL_TO_ALL),
            TrafficEdge(2, 0, 0.5, Pattern.ALL_TO_ALL),
        ),
        name="tight",
    )
    return snapshots.build(nodes, [], CONFIG), request


def test_every_strategy_fails_on_the_tight_instance() -> None:
    """The premise: placing replica by replica without taking a choice back finds nothing."""
    snap, request = _tight()
    for strategy in Strategy:
        state = State(snap, request, None, {}, strategy)
        try:
            greedy(state)
        except Failure:
            continue
        raise AssertionError(f"{strategy} placed the tight instance; the test needs a harder one")


def test_the_solver_places_the_tight_instance_at_the_exact_optimum() -> None:
    snap, request = _tight()
    plan = solver.solve(snap, request)
    assert plan.feasible, plan.reasons
    assert_valid(snap, request, plan)
    best = exact.solve(snap, request)
    assert plan.cost.key() == best.cost.key()


def test_rescue_leaves_the_state_as_it_was_when_nothing_fits() -> None:
    snap, request = _tight()
    bigger = Request(
        roles=(*request.roles[:2], RoleRequest("encode", 1, 1, 5)),
        traffic=request.traffic,
        name="too-big",
    )
    state = State(snap, bigger, None, {}, Strategy.COST)
    free = state.free.copy()
    assert not rescue.rescue(state)
    assert (state.free == free).all()
    assert all(not r.placed for r in state.replicas.values())
    assert not solver.solve(snap, bigger).feasible


@st.composite
def _tight_instances(draw: Any) -> tuple[snapshots.ClusterSnapshot, Request]:
    """Two or three nodes with some GPUs taken, and one-pod replicas whose pod sizes (2 to 5
    GPUs) need not divide each other, asking for every free GPU or all but one: where placing
    them can take backtracking (about 4% of such feasible instances defeat every strategy)."""
    nodes, pods = [], []
    for j in range(draw(st.integers(2, 3))):
        kind = draw(st.sampled_from(["hgx", "pcie", "tray"]))
        gpus = 4 if kind == "tray" else 8
        nodes.append(builders.node_object(f"n{j}", kind, gpus))
        free = draw(st.integers(2, gpus))
        if free < gpus:
            pods.append(builders.gpu_pod(f"bg{j}", f"n{j}", list(range(gpus - free))))
    snap = snapshots.build(nodes, pods, CONFIG)
    want = int(snap.free_counts.sum()) - draw(st.integers(0, 1))
    sizes: list[int] = []
    while sum(sizes) < want and len(sizes) < 6:
        sizes.append(draw(st.integers(2, min(5, max(2, want - sum(sizes))))))
    by_size: dict[int, int] = {}
    for size in sizes:
        by_size[size] = by_size.get(size, 0) + 1
    roles = tuple(
        RoleRequest(f"r{i}", count, 1, size)
        for i, (size, count) in enumerate(sorted(by_size.items()))
    )
    traffic = tuple(
        TrafficEdge(0, i, 1.0, draw(st.sampled_from(list(Pattern)))) for i in range(1, len(roles))
    )
    return snap, Request(roles=roles, traffic=traffic, name="tight")


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(_tight_instances())
def test_feasible_exactly_when_the_exact_solver_finds_a_placement(
    instance: tuple[snapshots.ClusterSnapshot, Request],
) -> None:
    snap, request = instance
    plan = solver.solve(snap, request)
    best = exact.solve(snap, request)
    assert plan.feasible == best.feasible, (plan.reasons, best.feasible)
    if plan.feasible:
        assert_valid(snap, request, plan)

"""Phase 3e (``solver.neighbourhood``): a few nodes at a time placed again by the exhaustive
search, everything else staying. The instances are ``bench.count_optimum``'s (nodes whose GPUs
are alike to the objective, one-pod replicas), whose optimum its brute force knows (checked
against ``placement.exact`` in tests/unit/test_bench_count_optimum.py)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import snapshot as snapshots
from shorthop.placement import solver
from shorthop.placement.request import Pattern
from shorthop.placement.solver import greedy, medium, neighbourhood
from shorthop.placement.solver.state import Failure, State

from bench import common, count_optimum
from tests.hypothesis_profiles import examples


def _state(seed: int) -> State | None:
    """Greedy's plan of count instance ``seed`` (None when it does not fit)."""
    nodes, pods, request = count_optimum.instance(seed)
    state = State(snapshots.build(nodes, pods, common.CONFIG), request, None, {})
    try:
        greedy.greedy(state)
    except Failure:
        return None
    return state


def _consistent(state: State) -> None:
    """Every placed GPU is held once and marked used; the per-node counts match."""
    held: set[tuple[int, int]] = set()
    for r in state.replicas.values():
        assert not r.missing()
        for _, row, mask in r.parts():
            for g in range(64):
                if mask >> g & 1:
                    assert (row, g) not in held
                    held.add((row, g))
                    assert not int(state.free[row]) >> g & 1
                    assert int(state.snapshot.free[row]) >> g & 1
    assert [int(c) for c in state.count] == [int(f).bit_count() for f in state.free]


# Instances where greedy, the role orders, swaps and evacuations ended above the optimum
# (docs/benchmarks.md, 4(a)); 80, 535 and 1078 need three nodes placed again at once.
@pytest.mark.parametrize("seed", [80, 96, 332, 344, 535, 1078])
def test_plans_stuck_after_swaps_and_evacuations_reach_the_optimum(seed: int) -> None:
    nodes, pods, request = count_optimum.instance(seed)
    snap = snapshots.build(nodes, pods, common.CONFIG)
    plan = solver.solve(snap, request)
    assert plan.feasible
    assert not common.plan_problems(snap, request, plan)
    assert medium.medium(State(snap, request, None, {}))
    assert (plan.cost.intra, round(plan.cost.traffic, 6)) == count_optimum.optimum(snap, request)


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(0, 10_000))
def test_it_never_raises_the_cost_nor_double_books_a_gpu(seed: int) -> None:
    state = _state(seed)
    if state is None:
        return
    before = state.total_cost()
    kept = neighbourhood.improve(state)
    after = state.total_cost()
    assert after < before if kept else after == before
    _consistent(state)


def test_paired_deployments_are_left_alone() -> None:
    """The pairs name replicas by id: lifting a few and placing them again by role would
    break them, so a deployment with a ``paired`` edge is not touched."""
    for seed in (80, 96, 332):
        state = _state(seed)
        assert state is not None
        edge = dataclasses.replace(state.request.traffic[0], pattern=Pattern.PAIRED)
        paired = dataclasses.replace(state.request, traffic=(edge,))
        state = State(state.snapshot, paired, None, {})
        greedy.greedy(state)
        placed = {k: list(r.placed) for k, r in state.replicas.items()}
        assert not neighbourhood.improve(state)
        assert {k: r.placed for k, r in state.replicas.items()} == placed

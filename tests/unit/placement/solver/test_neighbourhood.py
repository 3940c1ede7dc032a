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
from shorthop.placement.request import Pattern
from shorthop.placement.solver import greedy, neighbourhood
from shorthop.placement.solver.state import Failure, State

from bench import common, count_optimum
from tests import solver_states
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


# Instances where greedy, the role orders, swaps and evacuations ended above the optimum
# (docs/benchmarks.md, 4(a)); 80, 535 and 1078 need three nodes placed again at once.
@pytest.mark.parametrize("seed", [80, 96, 332, 344, 535, 1078])
def test_plans_stuck_after_swaps_and_evacuations_reach_the_optimum(seed: int) -> None:
    nodes, pods, request = count_optimum.instance(seed)
    solver_states.plan_at_count_optimum(snapshots.build(nodes, pods, common.CONFIG), request)


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
    solver_states.assert_books(state)


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

"""The capacities a planning run keeps up to date commit by commit (pods per node and per domain,
whole-pod room, every node's cheapest subset and each class's cheapest nodes) equal the same
computed afresh from the state's arrays, after every commit, lift and restore."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shorthop.placement import snapshot
from shorthop.placement.solver import greedy
from shorthop.placement.solver.capacity import BestSubsets, Capacity
from shorthop.placement.solver.state import Failure, State
from shorthop.topology import fake

from tests import builders
from tests.hypothesis_profiles import examples

SETTINGS = settings(max_examples=examples(100), suppress_health_check=[HealthCheck.filter_too_much])


def fresh(state: State) -> Capacity:
    """A capacity over the state's arrays as they are now, nothing cached yet."""
    return Capacity(
        state.tree,
        state.request,
        state.usable,
        state.capacity.usable_any,
        state.count,
        state.headroom,
        state.free,
        state.class_rows,
        state.demand,
    )


def assert_current(state: State) -> None:
    kept, now = state.capacity, fresh(state)
    for role in range(len(state.request.roles)):
        assert kept.pods_fit(role).tolist() == now.pods_fit(role).tolist()
        assert kept.rolled_up(role).tolist() == now.rolled_up(role).tolist()
    for q in (1, 2, 4):
        assert kept.room(q).tolist() == now.room(q).tolist()
    for shape in list(kept._best):
        best, made = kept.best(shape), now.best(shape)
        assert isinstance(made, BestSubsets)
        for cls in range(len(state.class_rows)):
            assert best.masks[cls].tolist() == made.masks[cls].tolist()
            assert best.intra[cls].tolist() == made.intra[cls].tolist()
            got, expected = best.cheapest(cls), made.cheapest(cls)
            assert (got is None) == (expected is None), (shape, cls)
            if got is not None and expected is not None:
                for a, b in zip(got, expected, strict=True):
                    assert np.array_equal(a, b), (shape, cls)


@st.composite
def runs(draw: Any) -> State:
    nodes, pods, request = draw(builders.small_pd_cases())
    snap = snapshot.build(nodes, pods, fake.CONFIG)
    return State(snap, request, None, {})


@SETTINGS
@given(runs())
def test_kept_capacities_equal_fresh_ones_after_every_change(state: State) -> None:
    for key in state.replicas:  # read every shape's subsets and cheapest nodes first
        role = state.request.roles[key[0]]
        for pods in range(1, role.pods_per_replica + 1):
            best = state.capacity.best((key[0], pods, False))
            for cls in range(len(state.class_rows)):
                best.cheapest(cls)
    assert_current(state)
    placed = []
    for key in greedy.order(state):
        try:
            state.commit(key, greedy.place(state, key))
        except Failure:
            break
        placed.append(key)
        assert_current(state)
    for key in placed:
        old = state.lift(key)
        assert_current(state)
        state.restore(key, old)
        assert_current(state)

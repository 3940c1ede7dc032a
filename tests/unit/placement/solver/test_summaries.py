"""A role's summary follows its GPUs commit by commit (brought up to date in place), except one
that ``State.caches`` handed out: refinement takes it back after its lifts are restored, so it
must still describe the GPUs of then."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from shorthop.placement import pairsums
from shorthop.placement.solver.state import State

from tests import solver_states
from tests.hypothesis_profiles import examples

SETTINGS = settings(max_examples=examples(100), suppress_health_check=[HealthCheck.filter_too_much])


def assert_describes(summary: pairsums.Summary, state: State, masks: dict[int, int]) -> None:
    fresh = pairsums.Summary(state.index, pairsums.mass(state.index, masks))
    assert summary.masks == fresh.masks
    assert summary.total == fresh.total
    for name in ("count", "up", "fab", "held"):
        assert np.array_equal(getattr(summary, name), getattr(fresh, name)), name


@SETTINGS
@given(solver_states.greedy_states(read_summaries=True))
def test_summaries_follow_commits_and_caches_keep_theirs(state: State) -> None:
    keys = [k for k, r in state.replicas.items() if r.placed]
    if not keys:
        return
    for role in range(len(state.request.roles)):
        assert_describes(state.role_summary(role), state, state.role_masks[role])
    before = [dict(m) for m in state.role_masks]
    caches = state.caches()
    key = keys[-1]
    old = state.lift(key)
    now = state.role_summary(key[0])  # the lifted GPUs are gone from the role's summary ...
    assert_describes(now, state, state.role_masks[key[0]])
    assert_describes(caches[0][key[0]], state, before[key[0]])  # ... not from the one handed out
    state.restore(key, old)
    state.reuse(caches)
    for role in range(len(state.request.roles)):
        assert_describes(state.role_summary(role), state, before[role])
    state.lift(key)  # after the move: changes reach the summary again
    assert_describes(state.role_summary(key[0]), state, state.role_masks[key[0]])

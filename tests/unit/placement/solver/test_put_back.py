"""``State.put_back`` undoes a joint move in which replicas took each other's GPUs: every GPU
is held again by exactly the replica that held it before, and the state's free GPUs, counts
and per-role GPUs say so. (Undoing replica by replica, lift then restore each in turn, frees
the GPUs a replica restored first got back when the next one is lifted: the exhaustive
search's safety net did that.)"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shorthop.placement.solver.state import Candidate, State, merged_masks

from tests import solver_states
from tests.hypothesis_profiles import examples

SETTINGS = settings(max_examples=examples(100), suppress_health_check=[HealthCheck.filter_too_much])


def _books(state: State) -> tuple[list[int], list[int], list[dict[int, int]]]:
    return (
        [int(x) for x in state.free],
        [int(x) for x in state.count],
        [dict(m) for m in state.role_masks],
    )


@SETTINGS
@given(solver_states.greedy_states(), st.data())
def test_put_back_after_a_rotation_restores_every_gpu(state: State, data: Any) -> None:
    # Replicas of one shape hand their GPUs round (each takes the next one's): the new GPUs of
    # each are the old GPUs of another.
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for key, r in state.replicas.items():
        if r.placed and not r.fixed:
            role = state.request.roles[key[0]]
            by_shape.setdefault((role.gpus_per_replica, role.pod_gpus), []).append(key)
    groups = [keys for keys in by_shape.values() if len(keys) >= 2]
    if not groups:
        return
    keys = data.draw(st.sampled_from(groups))
    before = _books(state)
    parts = {
        k: tuple(sorted(merged_masks((row, m) for _, row, m in state.replicas[k].placed).items()))
        for k in keys
    }
    olds = {k: state.lift(k) for k in keys}
    for i, k in enumerate(keys):
        state.commit(k, Candidate(0, 0.0, 0.0, 0, parts[keys[(i + 1) % len(keys)]]))
    solver_states.assert_books(state)
    state.put_back(olds)
    assert _books(state) == before
    assert {k: state.replicas[k].placed for k in keys} == olds
    solver_states.assert_books(state)
    assert np.array_equal(state.count, [int(f).bit_count() for f in state.free])

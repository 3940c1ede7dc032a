"""The status's memo of objective evaluations (``status.Evaluations``): the same figures as a
fresh evaluation, computed once per placement and topology index, dropped with the index."""

from __future__ import annotations

import numpy as np
from shorthop.controller.status import Evaluations, Placement
from shorthop.placement import objective
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.topology import fake, index

REQUEST = Request(
    roles=(RoleRequest("prefill", 2, 1, 2), RoleRequest("decode", 1, 1, 4)),
    traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
)
# prefill-0 on node 0, prefill-1 on node 1, decode-0 across both nodes' other GPUs
PLACED: Placement = (
    ("decode", 0, ((0, (4, 5)), (1, (4, 5)))),
    ("prefill", 0, ((0, (0, 1)),)),
    ("prefill", 1, ((1, (0, 1)),)),
)


def _index() -> index.TopologyIndex:
    return index.build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)


def _fresh(idx: index.TopologyIndex) -> objective.Evaluation:
    sets = {
        (role, rid): {row: np.array(gpus, dtype=np.intp) for row, gpus in members}
        for role, rid, members in PLACED
    }
    return objective.evaluate_sets(idx, REQUEST, sets)


def test_the_memo_gives_a_fresh_evaluation_once_per_placement() -> None:
    idx = _index()
    memo = Evaluations()
    first = memo.evaluate(idx, REQUEST, PLACED)
    assert first == _fresh(idx)
    assert first.cost.traffic > 0
    assert set(first.replica_tiers) == {r[:2] for r in PLACED}
    assert memo.evaluate(idx, REQUEST, PLACED) is first
    moved: Placement = (PLACED[0], PLACED[1], ("prefill", 1, ((1, (2, 3)),)))
    assert memo.evaluate(idx, REQUEST, moved) is not first


def test_a_new_index_drops_what_was_remembered() -> None:
    memo = Evaluations()
    old = memo.evaluate(_index(), REQUEST, PLACED)
    new_index = _index()
    again = memo.evaluate(new_index, REQUEST, PLACED)
    assert again is not old
    assert again == _fresh(new_index)

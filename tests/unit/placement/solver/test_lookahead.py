"""The look-ahead has one implementation: a batch of single-node candidates, a candidate spread over
several nodes and several such candidates at once all give what the formula gives, written out
here part by part as the reference (with a node unit larger than the pod size too: peers whose
replicas stay whole on a node land next to a candidate only whole)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import bitsets, snapshot, subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.placement.solver import lookahead
from shorthop.placement.solver.state import Part, State
from shorthop.topology import fake

from tests import builders
from tests.hypothesis_profiles import examples

SETTINGS = settings(max_examples=examples(150))


def reference(state: State, parts: list[Part], need: tuple[int, int, int], room: Any) -> float:
    """The estimate for one candidate, in plain integers: room taken per domain summed part by
    part, the most room left in any of the candidate's domains at each layer; on the
    candidate's own nodes only whole units of the peers (``need[2]``) count."""
    gpus, q, unit = need
    k = sum(mask.bit_count() for _, mask in parts)
    taken = {}
    for row, mask in parts:
        before = int(state.count[row]) // q * q
        after = max(int(state.count[row]) - mask.bit_count(), 0) // q * q
        taken[row] = before - after
    leftover = max(
        max(int(state.count[row]) - mask.bit_count(), 0) // unit * unit for row, mask in parts
    )
    covered = min(gpus, leftover)
    score = covered * k * lookahead.layer_distance(state, domain_tree.CLIQUE_LAYER)
    layers = state.tree.ancestor_at.shape[0]
    for layer in range(1, layers):
        under: dict[int, int] = {}
        for row, amount in taken.items():
            anc = int(state.tree.ancestor_at[layer, row])
            if anc >= 0:
                under[anc] = under.get(anc, 0) + amount
        avail = max((int(room[a]) - t for a, t in under.items()), default=covered)
        reach = min(gpus, max(avail, covered))
        score += (reach - covered) * k * lookahead.layer_distance(state, layer)
        covered = reach
    return float(score + (gpus - covered) * k * lookahead.layer_distance(state, layers - 1) * 2)


@st.composite
def states(draw: Any) -> tuple[State, list[list[Part]], tuple[int, int, int]]:
    """A state over a small mixed cluster, a few candidates (each some nodes with some of their
    free GPUs) and what the peers still need."""
    nodes, pods = draw(builders.small_clusters(max_nodes=8))
    snap = snapshot.build(nodes, pods, fake.CONFIG)
    state = State(snap, Request(roles=(RoleRequest("decode", 1, 1, 1),)), None, {})
    with_free = [int(r) for r in snap.index.rows() if int(snap.free[r])]
    if not with_free:
        return state, [], (1, 1, 1)
    options = []
    for _ in range(draw(st.integers(1, 4))):
        rows = draw(st.lists(st.sampled_from(with_free), min_size=1, max_size=4, unique=True))
        parts = []
        for row in rows:
            free = bitsets.bits(int(snap.free[row]))
            gpus = draw(st.lists(st.sampled_from(free), min_size=1, unique=True))
            parts.append((row, sum(1 << g for g in gpus)))
        options.append(parts)
    q = draw(st.sampled_from([1, 2, 4]))
    return state, options, (draw(st.integers(0, 40)), q, q * draw(st.sampled_from([1, 1, 2, 4])))


def _arrays(options: list[list[Part]]) -> tuple[Any, Any, Any]:
    flat = [part for parts in options for part in parts]
    rows = np.array([row for row, _ in flat], dtype=np.intp)
    masks = np.array([mask for _, mask in flat], dtype=np.int64)
    owner = np.repeat(np.arange(len(options)), [len(parts) for parts in options])
    return rows, masks, owner


@SETTINGS
@given(states())
def test_candidates_spread_over_nodes_match_the_reference(case: Any) -> None:
    state, options, need = case
    if not options:
        return
    room = state.capacity.room(need[1])
    rows, masks, owner = _arrays(options)
    together = lookahead.estimate(state, rows, masks, need, room, owner=owner)
    for i, parts in enumerate(options):
        expected = reference(state, parts, need, room) if need[0] else 0.0
        rows_alone, masks_alone, owner_alone = _arrays([parts])
        alone = lookahead.estimate(state, rows_alone, masks_alone, need, room, owner=owner_alone)
        assert together[i] == expected, (parts, need)
        assert alone.tolist() == [expected]


@SETTINGS
@given(states())
def test_single_node_batch_matches_the_reference(case: Any) -> None:
    state, options, need = case
    singles = [[parts[0]] for parts in options]
    if not singles:
        return
    room = state.capacity.room(need[1])
    rows, masks, owner = _arrays(singles)
    batch = lookahead.estimate(state, rows, masks, need, room)
    grouped = lookahead.estimate(state, rows, masks, need, room, owner=owner)
    expected = [reference(state, parts, need, room) if need[0] else 0.0 for parts in singles]
    assert batch.tolist() == expected
    assert grouped.tolist() == expected


def test_with_a_subset_table_peers_on_the_same_node_cost_their_real_distance() -> None:
    """On an 8-GPU PCIe node split over two sockets, the peers' GPUs that fit next to the
    candidate are costed at the nearest free GPU's distance, not the NVLink-domain one."""
    nodes = [builders.node_object("p", "pcie", 8)]
    snap = snapshot.build(nodes, [], fake.CONFIG)
    state = State(snap, Request(roles=(RoleRequest("decode", 1, 1, 1),)), None, {})
    row = snap.index.row_of["p"]
    table = subsets.table(snap.index.node_class(row))
    rows, masks = np.array([row], dtype=np.intp), np.array([0b1], dtype=np.int64)
    room = state.capacity.room(1)
    near = lookahead.nearest_free(state, rows, masks, table)
    exact = lookahead.estimate(state, rows, masks, (1, 1), room, nearest=near)
    plain = lookahead.estimate(state, rows, masks, (1, 1), room)
    nearest = min(int(snap.index.node_class(row).dist[0, g]) for g in range(1, 8))
    assert exact.tolist() == [float(nearest)]
    assert plain.tolist() == [float(lookahead.layer_distance(state, domain_tree.CLIQUE_LAYER))]


@SETTINGS
@given(states())
def test_nearest_free_over_every_class_at_once_matches_class_by_class(case: Any) -> None:
    state, options, _ = case
    singles = [parts[0] for parts in options]
    if not singles:
        return
    rows = np.array([row for row, _ in singles], dtype=np.intp)
    masks = np.array([mask for _, mask in singles], dtype=np.int64)
    together = lookahead.nearest_free_any(state, rows, masks)
    assert together is not None  # small clusters: every class has an exact table
    for i, (row, mask) in enumerate(singles):
        table = subsets.table(state.index.node_class(row))
        alone = lookahead.nearest_free(
            state, np.array([row], dtype=np.intp), np.array([mask], dtype=np.int64), table
        )
        assert together[i] == alone[0], (row, mask)


def test_peers_that_keep_their_replicas_whole_are_not_counted_on_half_a_node() -> None:
    """A prefill replica of 4 GPUs on a free 8-GPU node leaves 4 GPUs: one pod of a decode
    replica of 2 x 4 GPUs, but not the whole replica, and intra cost comes first, so the
    decode replicas will not split to sit there. The look-ahead counts peers on the node in
    whole replicas (the node unit), not in pods."""
    nodes = [builders.node_object(f"h{i}", "hgx", 8, rack="r1") for i in range(3)]
    snap = snapshot.build(nodes, [], fake.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 2, 1, 4), RoleRequest("decode", 2, 2, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
    )
    state = State(snap, request, None, {})
    need = state.unplaced_peer_gpus((0, 0))
    assert need == (16, 4, 8)
    row = snap.index.row_of["h0"]
    rows, masks = np.array([row], dtype=np.intp), np.array([0b1111], dtype=np.int64)
    room = state.capacity.room(need[1])
    whole = lookahead.estimate(state, rows, masks, need, room)
    by_pod = lookahead.estimate(state, rows, masks, need[:2], room)
    clique = lookahead.layer_distance(state, domain_tree.CLIQUE_LAYER)
    # by pods, 4 of the peers' GPUs would sit on the node (at the NVLink-domain distance);
    # by whole replicas none do, and those 4 are costed one layer out
    assert by_pod[0] == reference(state, [(row, 0b1111)], (16, 4, 4), room)
    assert whole[0] == reference(state, [(row, 0b1111)], need, room)
    assert whole[0] > by_pod[0] >= 4 * 4 * clique

"""Phase 2b, single-node candidates: every node that fits all of a replica's missing pods.

Per node class at once (numpy over the class's rows): the cheapest GPU subset of each node from
the class's subset table (``subsets``), then among the cheapest inside, the traffic to the
replica's placed peers (:func:`traffic_many`), the look-ahead for peers still to come
(``lookahead``), the preferred node affinity weight and the GPUs left over (best fit); the best of
each class competes under ``score.rank``. On the chosen node, subsets as cheap inside are
compared exactly (:func:`_refine_subset`). A replica that keeps surviving pods looks only at the
nodes nearest them (:func:`_near_fixed`).

Caller: ``greedy.place``. Reads the state; changes nothing.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import pairsums, subsets
from shorthop.placement.bitsets import bits
from shorthop.placement.solver import lookahead
from shorthop.placement.solver.score import best_of, made, measures, rank
from shorthop.placement.solver.state import Candidate, Key, Partners, State, Strategy

TIE_LIMIT = 64  # single-node candidates scored for traffic/look-ahead after the intra cut
NEAR_FIXED = 64  # nodes nearest a replica's surviving pods that are scored exactly


def single_node(
    state: State,
    key: Key,
    pods: int,
    fit: NDArray[np.int64],
    partners: Partners,
    *,
    nvlink_only: bool = False,
) -> Candidate | None:
    """The best node for all ``pods`` missing pods of ``key`` (``fit``: pods per node), or None."""
    r = state.replicas[key]
    k = pods * state.request.roles[r.role].pod_gpus
    if r.fixed:
        rows = np.flatnonzero(fit >= pods)
        if rows.size == 0:
            return None
        return _near_fixed(state, key, rows, pods, partners, nvlink_only)
    need = state.unplaced_peer_gpus(key)
    room = state.capacity.room(need[1]) if need[0] else np.zeros(0, dtype=np.int64)
    best: Candidate | None = None
    scores = state.preference[r.role]
    table_of = state.capacity.best((r.role, pods, nvlink_only))
    # Per node class: the nodes whose cheapest subset is as cheap inside as the class allows.
    groups: list[tuple[NDArray[np.intp], NDArray[np.int64], NDArray[np.int64], int]] = []
    for cls_id in range(len(table_of.rows)):
        cheapest = table_of.cheapest(cls_id)  # kept from one replica to the next
        if cheapest is not None:
            groups.append((*cheapest, cls_id))
    if not groups:
        return None
    # Traffic only grows with the tier: among equally cheap nodes of a class, the farther ones
    # cannot win on traffic (:func:`_nearest`).
    crowded = [i for i, g in enumerate(groups) if len(g[0]) > TIE_LIMIT] if partners else []
    if crowded:
        held = _held(state, partners)
        for i in crowded:
            cand, masks, intra, cls_id = groups[i]
            near = _nearest(state, cand, held)
            cand, masks, intra = cand[near], masks[near], intra[near]
            if len(cand) > TIE_LIMIT and not need[0]:
                # Equally near: traffic differs only by per-GPU uplinks; keep the preferred
                # nodes, then the best fits.
                dislike = -scores[cand] if scores is not None else np.zeros(len(cand), np.int64)
                keep = np.lexsort((cand, state.count[cand], dislike))[:TIE_LIMIT]
                cand, masks, intra = cand[keep], masks[keep], intra[keep]
            groups[i] = (cand, masks, intra, cls_id)
    # Every measure is per node: one call over the candidates of all classes, split after.
    cand = np.concatenate([g[0] for g in groups])
    masks = np.concatenate([g[1] for g in groups])
    intra = np.concatenate([g[2] for g in groups])
    nearest = None  # read by the look-ahead only when peers are still to come
    if need[0]:
        nearest = lookahead.nearest_free_any(state, cand, masks)
    if need[0] and nearest is None:
        nearest = np.concatenate(
            [
                lookahead.nearest_free(
                    state, g[0], g[1], subsets.table(state.index.classes[g[3]], nvlink_only)
                )
                for g in groups
            ]
        )
    traffic = np.round(traffic_many(state, cand, masks, partners), 6)
    ahead = np.round(lookahead.estimate(state, cand, masks, need, room, nearest=nearest), 6)
    frag = (state.count[cand] - k).astype(np.float64)
    frag += state.domain_left(cand, np.full(len(cand), k, dtype=np.int64))
    pref = scores[cand] * pods if scores is not None else None
    start = 0
    for g in groups:
        part = slice(start, start + len(g[0]))
        start += len(g[0])
        liked = () if pref is None else (-pref[part],)  # no preferred terms: one key fewer
        keys = (
            (cand[part], frag[part], *liked, ahead[part], traffic[part], intra[part])
            if state.strategy is not Strategy.PACK
            else (cand[part], *liked, ahead[part], traffic[part], intra[part], frag[part])
        )
        i = part.start + int(np.lexsort(keys)[0])
        found = Candidate(
            int(intra[i]),
            float(traffic[i]),
            float(frag[i]),
            int(cand[i]),
            ((int(cand[i]), int(masks[i])),),
            float(ahead[i]),
            int(pref[i]) if pref is not None else 0,
        )
        if best is None or rank(state, found) < rank(state, best):
            best = found
    if best is None:
        return None
    row = best.rows[0][0]
    refined = _refine_subset(state, key, row, k, best.intra, partners, need, nvlink_only)
    return refined if refined is not None else best


def _refine_subset(
    state: State,
    key: Key,
    row: int,
    k: int,
    intra: int,
    partners: Partners,
    need: tuple[int, int, int],
    nvlink_only: bool,
) -> Candidate | None:
    """On the chosen node, among the subsets as cheap inside as the best, take the one nearest
    to the peers (placed, or still to come). Only where it can matter: asymmetric nodes with
    peers on them or room left for peers."""
    table = subsets.table(state.index.node_class(row), nvlink_only)
    free = int(state.free[row])
    hosts_peer = any(row in p.summary.masks for p in partners)
    if not table.exact or (not hosts_peer and not (need[0] and free.bit_count() > k)):
        return None
    options = [m for m in _submasks(free, k) if int(table.cost[m]) == intra]
    if len(options) <= 1:
        return None
    # On one node, the subsets equally cheap inside also leave equally many GPUs free there and
    # in its NVLink domain and weigh the same in preference: they rank by traffic, look-ahead,
    # then mask. Only the winner is made a candidate.
    traffic, ahead = measures(state, key, [[(row, m)] for m in options], partners)
    best = min(range(len(options)), key=lambda i: (round(traffic[i], 6), ahead[i], options[i]))
    # Each option's measures do not depend on the others': the winner's are made a candidate.
    return made(state, key, [[(row, options[best])]], [row], None, [traffic[best]], [ahead[best]])[
        0
    ]


def _near_fixed(
    state: State,
    key: Key,
    rows: NDArray[np.intp],
    pods: int,
    partners: Partners,
    nvlink_only: bool,
) -> Candidate | None:
    """Single-node candidates for a replica with surviving pods: the nodes that share the
    deepest domain with them, scored exactly."""
    index = state.index
    anchor = state.replicas[key].fixed[0][1]
    depth = np.count_nonzero(
        (index.dom[rows] == index.dom[anchor]) & (index.dom[rows] >= 0), axis=1
    )
    clique = index.clique_of[anchor]
    same = (index.clique_of[rows] == clique) & (clique >= 0)
    closeness = depth + same * (index.levels + 1) + (rows == anchor) * (index.levels + 2)
    nearest = rows[np.lexsort((rows, -closeness))][:NEAR_FIXED]
    q = state.request.roles[state.replicas[key].role].pod_gpus
    options = []
    for row in nearest.tolist():
        pick = subsets.table(index.node_class(row), nvlink_only).pick(
            int(state.free[row]), pods * q
        )
        if pick is not None:
            options.append([(row, pick[0])])
    return best_of(state, key, options, partners)


def _held(state: State, partners: Partners) -> NDArray[np.bool_]:
    """Per tree vertex: whether a placed partner GPU lies under it."""
    held: NDArray[np.bool_] = partners[0].summary.count > 0
    for p in partners[1:]:
        held |= p.summary.count > 0
    return held


def _nearest(state: State, rows: NDArray[np.intp], held: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Which of ``rows`` share a domain with a placed partner (``held``, from :func:`_held`)
    at the finest layer where any of them does (node 0, NVLink domain 1, ...). Traffic only
    grows with the tier, so among equally cheap candidates the farther ones cannot win."""
    # A row with no domain at a layer reads the one below it (``carried``), which held nothing
    # when the search gets there: the same as no hit.
    carried = state.tree.carried
    for layer in range(carried.shape[0]):
        hit: NDArray[np.bool_] = held[carried[layer][rows]]
        if hit.any():
            return hit
    return np.ones(len(rows), dtype=np.bool_)


def traffic_many(
    state: State, cand: NDArray[np.intp], masks: NDArray[np.int64], partners: Partners
) -> NDArray[np.float64]:
    """Traffic cost of putting the subset ``masks[i]`` on ``cand[i]``, for all i at once: the
    weighted distance sums to every partner (``pairsums.costs_to``)."""
    total = np.zeros(len(cand), dtype=np.float64)
    for p in partners:
        total += p.weight * pairsums.costs_to(state.index, p.summary, cand, masks)
    return total


def _submasks(free: int, k: int) -> list[int]:
    """Every ``k``-GPU subset of ``free``, ascending."""
    return [sum(1 << g for g in combo) for combo in combinations(bits(free), k)]

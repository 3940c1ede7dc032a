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

from shorthop.placement import subsets
from shorthop.placement.snapshot import bits
from shorthop.placement.solver import lookahead
from shorthop.placement.solver.score import best_of, rank, score_many
from shorthop.placement.solver.state import Candidate, Key, PeerSets, State, Strategy

TIE_LIMIT = 64  # single-node candidates scored for traffic/look-ahead after the intra cut
NEAR_FIXED = 64  # nodes nearest a replica's surviving pods that are scored exactly


def single_node(
    state: State,
    key: Key,
    pods: int,
    fit: NDArray[np.int64],
    peer_sets: PeerSets,
    *,
    nvlink_only: bool = False,
) -> Candidate | None:
    """The best node for all ``pods`` missing pods of ``key`` (``fit``: pods per node), or None."""
    r = state.replicas[key]
    k = pods * state.request.roles[r.role].pod_gpus
    rows = np.flatnonzero(fit >= pods)
    if rows.size == 0:
        return None
    if r.fixed:
        return _near_fixed(state, key, rows, pods, peer_sets, nvlink_only)
    need = state.unplaced_peer_gpus(key)
    room = state.capacity.room(need[1]) if need[0] else np.zeros(0, dtype=np.int64)
    best: Candidate | None = None
    scores = state.preference[r.role]
    prox: NDArray[np.int64] | None = None
    if peer_sets and rows.size > TIE_LIMIT:
        prox = np.full(len(fit), state.tree.ancestor_at.shape[0], dtype=np.int64)
        prox[rows] = _proximity(state, rows, peer_sets)
    for cls_id, class_rows in enumerate(state.class_rows):
        if class_rows.size == 0:
            continue
        cls = state.index.classes[cls_id]
        cand = class_rows[fit[class_rows] >= pods]
        if cand.size == 0:
            continue
        table = subsets.table(cls, nvlink_only)
        if table.exact:
            masks, intra = table.pick_many(state.free[cand].astype(np.int64), k)
        else:
            picks = [table.pick(int(state.free[row]), k) for row in cand]
            masks = np.array([p[0] if p else -1 for p in picks], dtype=np.int64)
            intra = np.array([p[1] if p else subsets.INF for p in picks], dtype=np.int64)
        ok = masks >= 0
        cand, masks, intra = cand[ok], masks[ok], intra[ok]
        if cand.size == 0:
            continue
        low = intra == intra.min()
        cand, masks, intra = cand[low], masks[low], intra[low]
        if len(cand) > TIE_LIMIT and prox is not None:
            near = prox[cand] == prox[cand].min()
            cand, masks, intra = cand[near], masks[near], intra[near]
        if len(cand) > TIE_LIMIT and peer_sets and not need[0]:
            # Equally near: traffic differs only by per-GPU uplinks; keep the preferred nodes,
            # then the best fits.
            liked = -scores[cand] if scores is not None else np.zeros(len(cand), dtype=np.int64)
            keep = np.lexsort((cand, state.count[cand], liked))[:TIE_LIMIT]
            cand, masks, intra = cand[keep], masks[keep], intra[keep]
        traffic = np.round(traffic_many(state, cand, masks, peer_sets), 6)
        ahead = np.round(lookahead.estimate(state, cand, masks, need, room, table=table), 6)
        frag = (state.count[cand] - k).astype(np.float64)
        pref = scores[cand] * pods if scores is not None else None
        liked = () if pref is None else (-pref,)  # no preferred terms: one sort key fewer
        keys = (
            (cand, frag, *liked, ahead, traffic, intra)
            if state.strategy is not Strategy.PACK
            else (cand, *liked, ahead, traffic, intra, frag)
        )
        order = np.lexsort(keys)
        i = int(order[0])
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
    refined = _refine_subset(state, key, row, k, best.intra, peer_sets, need, nvlink_only)
    return refined if refined is not None else best


def _refine_subset(
    state: State,
    key: Key,
    row: int,
    k: int,
    intra: int,
    peer_sets: PeerSets,
    need: tuple[int, int],
    nvlink_only: bool,
) -> Candidate | None:
    """On the chosen node, among the subsets as cheap inside as the best, take the one nearest
    to the peers (placed, or still to come). Only where it can matter: asymmetric nodes with
    peers on them or room left for peers."""
    table = subsets.table(state.index.node_class(row), nvlink_only)
    free = int(state.free[row])
    hosts_peer = any(row in s for s, _ in peer_sets)
    if not table.exact or (not hosts_peer and not (need[0] and free.bit_count() > k)):
        return None
    options = [m for m in _submasks(free, k) if int(table.cost[m]) == intra]
    if len(options) <= 1:
        return None
    scored = score_many(state, key, [[(row, m)] for m in options], peer_sets, [row] * len(options))
    return min(scored, key=lambda c: (rank(state, c), c.rows))


def _near_fixed(
    state: State,
    key: Key,
    rows: NDArray[np.intp],
    pods: int,
    peer_sets: PeerSets,
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
    return best_of(state, key, options, peer_sets)


def _proximity(state: State, rows: NDArray[np.intp], peer_sets: PeerSets) -> NDArray[np.int64]:
    """Per row: the finest layer at which it shares a domain with a placed peer (node 0,
    NVLink domain 1, ...). Traffic only grows with the tier, so among equally cheap
    candidates the farther ones cannot win on traffic."""
    layers = state.tree.ancestor_at.shape[0]
    prox = np.full(len(rows), layers, dtype=np.int64)
    peer_rows = sorted({row for s, _ in peer_sets for row in s})
    for layer in range(layers - 1, -1, -1):
        targets = {int(a) for a in state.tree.ancestor_at[layer, peer_rows] if a >= 0}
        if not targets:
            continue
        mine = state.tree.ancestor_at[layer][rows]
        hit = mine == targets.pop()
        for t in targets:
            hit |= mine == t
        prox[hit] = layer
    return prox


def traffic_many(
    state: State, cand: NDArray[np.intp], masks: NDArray[np.int64], peer_sets: PeerSets
) -> NDArray[np.float64]:
    """Traffic cost of putting the subset ``masks[i]`` on ``cand[i]``, for all i at once
    (all candidates of one node class)."""
    total = np.zeros(len(cand), dtype=np.float64)
    if not peer_sets:
        return total
    index = state.index
    node_class = index.classes[int(index.class_of[cand[0]])]
    g = node_class.gpus
    bitmat = ((masks[:, None] >> np.arange(g)[None, :]) & 1).astype(np.int64)  # [n, g]
    k = bitmat.sum(axis=1)
    clique = index.clique_of[cand]
    in_clique = clique >= 0
    up = np.broadcast_to(node_class.up, (len(cand), g)).copy()
    if in_clique.any():
        exits = index.clique_exit[clique[in_clique]]
        up[in_clique] = np.minimum(up[in_clique], node_class.fab[None, :] + exits[:, None])
    up_sum = (bitmat * up).sum(axis=1)
    fab = np.where(node_class.fab >= subsets.INF, 0, node_class.fab)
    fab_sum = (bitmat * fab[None, :]).sum(axis=1)
    dom = index.dom[cand]
    for s, weight in peer_sets:
        for prow, pg in s.items():
            m = len(pg)
            pup = float(index.up(prow)[pg].sum())
            pclique = int(index.clique_of[prow])
            lca = np.count_nonzero((dom == index.dom[prow]) & (dom >= 0), axis=1) - 1
            cost = up_sum * m + pup * k + 2 * index.h[lca + 1] * k * m
            if pclique >= 0:
                same = clique == pclique
                pfab = float(index.node_class(prow).fab[pg].sum())
                cost = np.where(same, fab_sum * m + pfab * k, cost)
            here = np.flatnonzero(cand == prow)
            for i in here:
                gi = np.array(bits(int(masks[i])), dtype=np.intp)
                cost[i] = node_class.dist[np.ix_(gi, pg)].sum()
            total += weight * cost
    return total


def _submasks(free: int, k: int) -> list[int]:
    """Every ``k``-GPU subset of ``free``, ascending."""
    return [sum(1 << g for g in combo) for combo in combinations(bits(free), k)]

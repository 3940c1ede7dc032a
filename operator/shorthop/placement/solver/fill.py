"""Phase 2c, multi-node candidates: fill an NVLink domain or a network domain Kueue-style.

For a replica of several pods, layer by layer from NVLink domains up to the replica's scope
(finest first), every domain with room for all its missing pods is a candidate (when there are
many, only the best fits and those nearest the peers). A domain is filled top-down
(:func:`fill_domain`): the fewest children, largest capacity first (then cheaper inside, nearer
to peers, preferred by node affinity, lower id), the last child the best fit for what is left,
recursively down to nodes;
each node gets its cheapest GPU subset and the layer's candidates are scored exactly
(``score.score_many``).
Coarser layers are skipped once their lower bound on the intra cost (:func:`lower_bound`)
exceeds the best candidate found.

Caller: ``greedy.place``. Reads the state; changes nothing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import objective, subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.solver.score import made, measures, rank, score_many
from shorthop.placement.solver.state import (
    Candidate,
    Key,
    Part,
    Partners,
    State,
    Strategy,
    gpu_set_of,
)
from shorthop.topology.index import TopologyIndex

EVALUATE_ALL_BELOW = 24  # evaluate every feasible domain of a layer when there are this few
BEST_FIT_CANDIDATES = 3
AFFINITY_CANDIDATES = 3
FIXED_AFFINITY = 1e6  # a replica's own surviving pods attract far more than peers do


def multi_node(
    state: State,
    key: Key,
    pods: int,
    fit: NDArray[np.int64],
    cap: NDArray[np.int64],
    partners: Partners,
    max_layer: int,
    best: Candidate | None,
) -> Candidate | None:
    """The best of ``best`` and every domain fill from the NVLink layer up to ``max_layer``."""
    r = state.replicas[key]
    q = state.request.roles[r.role].pod_gpus
    aff = affinity(state, key, partners)
    aff_any = bool(aff.any())
    scores = state.preference[r.role]
    liked = tree_preference(state, scores, fit) if scores is not None else None
    need = state.unplaced_peer_gpus(key)
    max_fit = int(fit.max(initial=0))
    kept = [(row, mask) for _, row, mask in r.fixed]
    # A fill reads only the domain's own subtree: capacities, free GPUs (both covered by the
    # vertex's version) and the affinity. Without paired peers the affinity is the other roles'
    # GPUs, the same for every replica of the role and covered by the version too; a paired
    # peer's or surviving pods' affinity is the replica's own.
    cacheable = not r.fixed and (not aff_any or not state.peers[key])
    # Ranked by cost, the best candidate has the least intra cost, known before scoring: the
    # layers' fills are gathered and scored in one batch (same comparisons, same order).
    batch = state.strategy is not Strategy.PACK
    least = best.intra if best is not None else None
    options: list[list[Part]] = []
    ties: list[int] = []
    inner: list[int] = []
    for layer in range(domain_tree.CLIQUE_LAYER, max_layer + 1):
        if not batch:
            least = best.intra if best is not None else None
        if least is not None and least < lower_bound(state, layer, pods, q, max_fit):
            break
        if not batch:
            options, ties, inner = [], [], []
        for v in _domains(state, layer, pods, q, cap, aff, aff_any, need).tolist():
            cache_key = (r.role, pods, v)
            found = state.fills.get(cache_key) if cacheable else None
            if found is not None and found[0] == state.capacity.version[v]:
                parts, intra = found[1], found[2]
            else:
                rows_pods = fill_domain(state, v, pods, cap, fit, aff, q, liked)
                parts = _subsets_on(state, key, rows_pods) if rows_pods else []
                intra = (
                    objective.intra_cost(state.index, gpu_set_of([*kept, *parts])) if parts else 0
                )
                if cacheable:
                    state.fills[cache_key] = (int(state.capacity.version[v]), parts, intra)
            if parts:
                options.append(parts)
                ties.append(v)
                inner.append(intra)
                least = intra if least is None else min(least, intra)
        if not batch:
            best = _best_scored(state, key, options, partners, ties, inner, best)
    if batch:
        best = _best_scored(state, key, options, partners, ties, inner, best)
    return best


def _domains(
    state: State,
    layer: int,
    pods: int,
    q: int,
    cap: NDArray[np.int64],
    aff: NDArray[np.float64],
    aff_any: bool,
    need: tuple[int, int, int],
) -> NDArray[np.int64]:
    """The domains of ``layer`` to fill with ``pods`` pods of ``q`` GPUs: all with room when
    there are few, else the best fits (for the replica with its peers still to come, else
    alone) and those nearest the peers."""
    tree = state.tree
    at_layer = tree.layer_vertices[layer]
    verts = at_layer[cap[at_layer] >= pods]
    if verts.size <= EVALUATE_ALL_BELOW:
        return verts
    picks = []
    if need[0]:
        # Best fit for the replica together with its peers still to come.
        room = state.capacity.room(need[1])
        group = verts[room[verts] >= pods * q + need[0]]
        picks.append(group[np.lexsort((group, room[group]))][:BEST_FIT_CANDIDATES])
    if not picks or not picks[0].size:
        picks.append(verts[np.lexsort((verts, cap[verts]))][:BEST_FIT_CANDIDATES])
    if aff_any:
        picks.append(verts[np.lexsort((verts, -aff[verts]))][:AFFINITY_CANDIDATES])
    out: NDArray[np.int64] = np.unique(np.concatenate(picks))
    return out


def _best_scored(
    state: State,
    key: Key,
    options: list[list[Part]],
    partners: Partners,
    ties: list[int],
    inner: list[int],
    best: Candidate | None,
) -> Candidate | None:
    """``best`` or the best-ranked of ``options`` scored (the first of equals)."""
    if state.strategy is Strategy.PACK:
        for cand in score_many(state, key, options, partners, ties, inner):
            if best is None or rank(state, cand) < rank(state, best):
                best = cand
        return best
    if not options:
        return best
    # Ranked by cost, (intra, traffic, look-ahead) come first: only the options that tie on
    # them with the least are made candidates to compare further (the first least one wins).
    traffic, ahead = measures(state, key, options, partners)
    heads = [(n, round(t, 6), a) for n, t, a in zip(inner, traffic, ahead, strict=True)]
    least = min(heads) if best is None else min(*heads, best.key()[:3])
    keep = [i for i, h in enumerate(heads) if h == least]
    found = made(
        state,
        key,
        [options[i] for i in keep],
        [ties[i] for i in keep],
        [inner[i] for i in keep],
        [traffic[i] for i in keep],
        [ahead[i] for i in keep],
    )
    for cand in found:
        if best is None or rank(state, cand) < rank(state, best):
            best = cand
    return best


def affinity(state: State, key: Key, partners: Partners) -> NDArray[np.float64]:
    """Per tree vertex: how many of the replica's peers' GPUs (weighted) and its own surviving
    GPUs (:data:`FIXED_AFFINITY` each) lie under it."""
    tree = state.tree
    if len(partners) == 1:  # the usual case: no sum to start from zero
        out = np.multiply(partners[0].weight, partners[0].summary.count, dtype=np.float64)
    else:
        out = np.zeros(tree.vertices, dtype=np.float64)
        for p in partners:
            out += p.weight * p.summary.count
    fixed = state.replicas[key].fixed
    if fixed:
        leaf = np.zeros(len(state.index.names), dtype=np.int64)
        for _, row, mask in fixed:
            leaf[row] += mask.bit_count()
        out += FIXED_AFFINITY * tree.rollup(leaf)
    return out


def tree_preference(
    state: State, scores: NDArray[np.int64], fit: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Per tree vertex: the preferred node affinity weight of the nodes under it that have room
    (a node's own score for a node)."""
    return state.tree.rollup(np.where(fit > 0, scores, 0).astype(np.int64))


def _internal_many(
    state: State, kids: NDArray[np.int64], pods: NDArray[np.int64], q: int
) -> NDArray[np.int64]:
    """Cheapest internal cost of ``pods * q`` GPUs on each child that is a node (0 for
    domains, INF where it does not fit), vectorised per node class."""
    out = np.zeros(len(kids), dtype=np.int64)
    rows = len(state.index.names)
    is_row = kids < rows
    if not is_row.any():
        return out
    where = np.flatnonzero(is_row)
    row_ids = kids[where]
    stacked = best_costs(state.index)
    if stacked is not None:  # every class has an exact table: one lookup for all
        k = np.minimum(pods[where] * q, stacked.shape[1] - 1)
        out[where] = stacked[state.index.class_of[row_ids], k, state.free[row_ids].astype(np.int64)]
        return out
    classes = state.index.class_of[row_ids]
    for cls_id in np.unique(classes):
        sel = where[classes == cls_id]
        table = subsets.table(state.index.classes[int(cls_id)])
        k = np.minimum(pods[sel] * q, table.gpus + 1)
        if table.exact:
            ok = k <= table.gpus
            costs = np.full(len(sel), subsets.INF, dtype=np.int64)
            costs[ok] = table.best_cost[k[ok], state.free[kids[sel][ok]].astype(np.int64)]
            out[sel] = costs
        else:
            for i, u in zip(sel.tolist(), kids[sel].tolist(), strict=True):
                pick = table.pick(int(state.free[u]), int(pods[i]) * q)
                out[i] = pick[1] if pick else subsets.INF
    return out


def best_costs(index: TopologyIndex) -> NDArray[np.int64] | None:
    """``[class, k, free mask]``: every class's ``SubsetTable.best_cost``, padded with INF to the
    widest class (``k`` up to one more GPU than it has); None when some class has no exact
    table. Kept with the index."""
    return index.derived(_stack_best_costs)


def _stack_best_costs(index: TopologyIndex) -> NDArray[np.int64] | None:
    tables = [subsets.table(cls) for cls in index.classes]
    if not tables or not all(t.exact for t in tables):
        return None
    width = max(t.gpus for t in tables)
    out = np.full((len(tables), width + 2, 1 << width), subsets.INF, dtype=np.int64)
    for c, t in enumerate(tables):
        out[c, : t.gpus + 1, : 1 << t.gpus] = t.best_cost
    out.setflags(write=False)
    return out


def fill_domain(
    state: State,
    v: int,
    pods: int,
    cap: NDArray[np.int64],
    fit: NDArray[np.int64],
    aff: NDArray[np.float64],
    q: int,
    liked: NDArray[np.int64] | None = None,
) -> list[tuple[int, int]]:
    """Kueue-style fill of domain ``v`` with ``pods`` pods: fewest children, largest capacity
    first (then cheaper inside, nearer to peers, preferred by node affinity (``liked``), lower
    id); the last child is the best fit for what is left (preferred ones first among equally
    near); recurse into each child. Returns (row, pods) pairs, empty if it fails."""
    if v < len(state.index.names):
        return [(v, min(pods, int(fit[v])))]
    kids = state.tree.children_of(v)
    kids = kids[cap[kids] > 0]
    kcap = cap[kids]
    like = () if liked is None else (-liked[kids],)  # no preferred terms: one sort key fewer
    order = np.lexsort((kids, *like, -aff[kids], _internal_many(state, kids, kcap, q), -kcap))
    ordered, caps = kids[order], kcap[order]
    covered = np.cumsum(caps)
    if covered.size == 0 or covered[-1] < pods:
        return []
    count = int(np.searchsorted(covered, pods) + 1)
    before = int(covered[count - 2]) if count > 1 else 0
    need = pods - before
    pool = np.concatenate([ordered[count - 1 :]])
    pool = pool[cap[pool] >= need]
    pool_cost = _internal_many(state, pool, np.full(len(pool), need, dtype=np.int64), q)
    like = () if liked is None else (-liked[pool],)
    last = int(pool[np.lexsort((pool, cap[pool], *like, -aff[pool], pool_cost))[0]])
    taken = [*ordered[: count - 1].tolist(), last]
    out: list[tuple[int, int]] = []
    remaining = pods
    for u in taken:
        share = min(remaining, int(cap[u]))
        out += fill_domain(state, u, share, cap, fit, aff, q, liked)
        remaining -= share
    return out


def _subsets_on(state: State, key: Key, rows_pods: list[tuple[int, int]]) -> list[Part]:
    """The cheapest GPU subset on each node of a fill, or empty if one does not fit."""
    q = state.request.roles[state.replicas[key].role].pod_gpus
    parts = []
    for row, n in rows_pods:
        pick = subsets.table(state.index.node_class(row)).pick(int(state.free[row]), n * q)
        if pick is None:
            return []
        parts.append((row, pick[0]))
    return parts


def lower_bound(state: State, layer: int, pods: int, q: int, max_fit: int) -> int:
    """Least intra cost any placement spanning two nodes joined at ``layer`` can have."""
    if layer <= domain_tree.CLIQUE_LAYER:
        return 0
    n = pods * q
    largest = min(max_fit, pods) * q
    parts, left = [], n
    while left > 0:
        take = min(largest, left)
        parts.append(take)
        left -= take
    cross_pairs = (n * n - sum(p * p for p in parts)) // 2
    if len(parts) == 1:
        cross_pairs = q * (n - q)
    index = state.index
    level = index.levels - 1 - (layer - 2)
    distance = (
        2 * state.min_up + 2 * int(index.h[level + 1])
        if level >= 0
        else 2 * state.min_up + 2 * int(index.h[0])
    )
    return cross_pairs * distance


def scope_anchor(state: State, key: Key, layer: int) -> int | None:
    """The largest domain of ``layer`` or finer that holds all of a replica's surviving pods
    (``DomainTree.holders``), if any: a node outside every NVLink domain is its own, so a
    replica scoped to ``nvlink-domain`` on HGX nodes is anchored to its node."""
    tree = state.tree
    rows = sorted({row for _, row, _ in state.replicas[key].fixed})
    common = frozenset.intersection(*(tree.holders(layer, row) for row in rows))
    return max(common, key=lambda v: int(tree.layer[v])) if common else None

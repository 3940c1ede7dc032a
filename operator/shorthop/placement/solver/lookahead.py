"""Look-ahead: what a candidate leaves for the peers of its replica that are not placed yet.

Placing a prefill replica before its decode peers, the cheapest candidate now can be a poor one
later: on a node or in a domain with no room left for the peers, they land far away. For each
candidate the :func:`estimate` is the traffic cost to the ``need`` GPUs of those peers if they land
as close as the room left around the candidate allows: first on the candidate's own node (the
distance from its GPUs to the nearest remaining free GPU, when the node class has a subset table),
then in the finest domain with room, layer by layer (a representative distance per layer,
:func:`layer_distance`), the rest across the cluster.

One implementation for every caller: a batch of single-node candidates (phase 2b, all candidates
of one node class at once) and a candidate spread over several nodes (phase 2c, ``score``) both
pass their parts as arrays; ``owner`` says which candidate each part belongs to.

Callers: ``candidates`` and ``score``. Reads the state; changes nothing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.solver.state import State
from shorthop.topology.index import TopologyIndex


def layer_distance(state: State, layer: int) -> int:
    """A representative GPU-pair distance between different nodes joined at ``layer``."""
    return int(_distances(state.index)[layer])


def _distances(index: TopologyIndex) -> NDArray[np.int64]:
    """:func:`layer_distance` of every layer (static per index: kept with it)."""
    return index.derived(_build_distances)


def _build_distances(index: TopologyIndex) -> NDArray[np.int64]:
    min_up = min((int(c.up.min()) for c in index.classes), default=0)  # as State.min_up
    out = []
    for layer in range(domain_tree.tree(index).ancestor_at.shape[0]):
        if layer <= domain_tree.CLIQUE_LAYER:
            out.append(2 * index.config.weights.nvlink_domain)
        else:
            level = index.levels - 1 - (layer - 2)
            out.append(2 * min_up + 2 * int(index.h[level + 1]))
    distances = np.array(out, dtype=np.int64)
    distances.setflags(write=False)
    return distances


def estimate(
    state: State,
    rows: NDArray[np.intp],
    masks: NDArray[np.int64],
    need: tuple[int, int] | tuple[int, int, int],
    room: NDArray[np.int64],
    *,
    owner: NDArray[np.intp] | None = None,
    candidates: int | None = None,
    nearest: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Per candidate: the estimated traffic to the peers still to come.

    Parameters
    ----------
    state : State
    rows, masks : arrays
        The candidates' parts: GPUs ``masks[i]`` on node ``rows[i]``; no node twice in one
        candidate.
    need : (GPUs, pod size[, node unit])
        What the unplaced peers need (``State.unplaced_peer_gpus``); the node unit (default:
        the pod size) is what of them can land on a candidate's own node, whole.
    room : array
        ``Capacity.room(pod size)``: whole-pod free GPUs under every tree vertex.
    owner : array, optional
        The candidate of each part (``0 .. candidates-1``); by default part ``i`` is candidate
        ``i`` (every candidate one node).
    candidates : int, optional
        How many candidates ``owner`` numbers (default: one more than its largest value).
    nearest : array, optional
        Only when every candidate is one node: per candidate, :func:`nearest_free` (NaN where
        its class has no subset table); the peers' GPUs on the candidate's own node are then
        costed exactly (nearest free GPU), else at the NVLink-domain distance.

    Returns
    -------
    array of float
        One estimate per candidate (integer-valued; all zero when ``need`` is zero GPUs).

    Notes
    -----
    O(parts x layers) numpy work; with ``owner``, one sort to sum the parts of a candidate that
    share a domain.
    """
    gpus, q = need[0], need[1]
    unit = need[2] if len(need) > 2 else q
    if owner is None:
        n = len(rows)
    else:
        n = candidates if candidates is not None else (int(owner.max()) + 1 if len(owner) else 0)
    if gpus <= 0:
        return np.zeros(n, dtype=np.float64)
    part_k = np.bitwise_count(masks).astype(np.int64)
    count = state.count[rows]
    before = (count // q) * q
    after = (np.maximum(count - part_k, 0) // q) * q
    taken = before - after  # whole-pod room each part itself uses up
    if owner is None:
        k, leftover = part_k, after
    else:
        k = np.bincount(owner, weights=part_k, minlength=n).astype(np.int64)
        leftover = np.zeros(n, dtype=np.int64)
        np.maximum.at(leftover, owner, after)
    if unit != q:  # only whole peer replicas land on the candidate's own nodes
        left = np.maximum(count - part_k, 0)
        if owner is None:
            leftover = (left // unit) * unit
        else:
            leftover = np.zeros(n, dtype=np.int64)
            np.maximum.at(leftover, owner, (left // unit) * unit)
    covered = np.minimum(gpus, leftover)  # peers' GPUs that fit on the candidate's own nodes
    distance = _distances(state.index)
    if owner is None and nearest is not None:
        exact = ~np.isnan(nearest)
        apart = covered * k * distance[domain_tree.CLIQUE_LAYER]  # classes with no table
        score = np.where(exact, np.where(exact, nearest, 0.0) * covered, apart)
    else:
        score = (covered * k * distance[domain_tree.CLIQUE_LAYER]).astype(np.float64)
    left = _room_left(state, rows, taken, room, owner, n)
    # Layer by layer, the peers' GPUs within reach: those of the finest domain with room so far
    # (``gpus`` at most). All terms are integers, so summing them at once is exact.
    reach = np.minimum(gpus, np.maximum(covered, np.maximum.accumulate(left, axis=0)))
    steps = reach.copy()
    steps[1:] -= reach[:-1]
    steps[0] -= covered
    score += k * (distance[1:] @ steps)
    total: NDArray[np.float64] = score + (gpus - reach[-1]) * k * distance[-1] * 2
    return total


def nearest_free(
    state: State, rows: NDArray[np.intp], masks: NDArray[np.int64], table: subsets.SubsetTable
) -> NDArray[np.float64]:
    """Per single-node candidate of ``table``'s class: the distance sum from its GPUs ``masks``
    to the nearest GPU left free on its node (0 when none is; NaN for every candidate when
    the class has no exact table)."""
    if not table.exact:
        return np.full(len(rows), np.nan)
    free = state.free[rows].astype(np.int64) & ~masks
    per_gpu = table.to_gpu[masks].astype(np.float64)
    bit = (free[:, None] >> np.arange(table.gpus)[None, :]) & 1
    best = np.where(bit == 1, per_gpu, np.inf).min(axis=1)
    out: NDArray[np.float64] = np.where(np.isfinite(best), best, 0.0)
    return out


def nearest_free_any(
    state: State, rows: NDArray[np.intp], masks: NDArray[np.int64]
) -> NDArray[np.float64] | None:
    """:func:`nearest_free` for single-node candidates of any classes at once, from the classes'
    ``to_gpu`` tables stacked; None when some class has no exact table (then per class)."""
    stacked = _stacked_to_gpu(state.index)
    if stacked is None:
        return None
    free = state.free[rows].astype(np.int64) & ~masks
    per_gpu = stacked[state.index.class_of[rows], masks]
    bit = (free[:, None] >> np.arange(stacked.shape[2])[None, :]) & 1
    best = np.where(bit == 1, per_gpu, np.inf).min(axis=1)
    out: NDArray[np.float64] = np.where(np.isfinite(best), best, 0.0)
    return out


def _stacked_to_gpu(index: TopologyIndex) -> NDArray[np.float64] | None:
    return index.derived(_stack_to_gpu)


def _stack_to_gpu(index: TopologyIndex) -> NDArray[np.float64] | None:
    """``[class, mask, GPU]``: every class's ``SubsetTable.to_gpu`` (the same for NVLink-only
    tables), zero-padded to the widest class; None when some class has no exact table."""
    tables = [subsets.table(cls) for cls in index.classes]
    if not tables or not all(t.exact for t in tables):
        return None
    width = max(t.gpus for t in tables)
    out = np.zeros((len(tables), 1 << width, width), dtype=np.float64)
    for c, t in enumerate(tables):
        out[c, : 1 << t.gpus, : t.gpus] = t.to_gpu
    out.setflags(write=False)
    return out


NO_DOMAIN = np.int64(-(1 << 62))  # room left where a candidate has no domain at a layer


def _room_left(
    state: State,
    rows: NDArray[np.intp],
    taken: NDArray[np.int64],
    room: NDArray[np.int64],
    owner: NDArray[np.intp] | None,
    n: int,
) -> NDArray[np.int64]:
    """``[layer - 1, candidate]``: the most room left in one domain at that layer holding part of
    the candidate, after the candidate's own parts under it (:data:`NO_DOMAIN` for none)."""
    anc = state.tree.ancestor_at[1:, rows]  # [layers - 1, parts]
    if owner is None:  # one part per candidate: nothing to sum
        out: NDArray[np.int64] = np.where(anc >= 0, room[np.maximum(anc, 0)] - taken, NO_DOMAIN)
        return out
    # Layers where all the parts of each candidate share one domain (every layer from the
    # domain a multi-node candidate fills up): that domain's room less all the candidate's parts.
    one = np.full((anc.shape[0], n), -2, dtype=np.int64)
    one[:, owner] = anc  # one part's domain per candidate (-2: no part)
    total = np.bincount(owner, weights=taken, minlength=n).astype(np.int64)
    out = np.where(one >= 0, room[np.maximum(one, 0)] - total, NO_DOMAIN)
    split = np.flatnonzero((anc != one[:, owner]).any(axis=1))
    if not split.size:
        return out
    # The other layers: per (candidate, domain) pair, the room left after its parts there.
    anc = anc[split]
    out[split] = NO_DOMAIN
    inside = anc >= 0
    vertices = np.int64(state.tree.vertices)
    # (candidate, domain) pairs; domain ids are distinct across layers, so one key per pair
    keys = (np.broadcast_to(owner, anc.shape) * vertices + anc)[inside]
    pairs, which = np.unique(keys, return_inverse=True)
    under = np.bincount(which, weights=np.broadcast_to(taken, anc.shape)[inside])
    domain, cand = pairs % vertices, pairs // vertices
    np.maximum.at(out, (state.tree.layer[domain] - 1, cand), room[domain] - under.astype(np.int64))
    return out

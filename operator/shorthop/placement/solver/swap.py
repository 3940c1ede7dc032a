"""Phase 3d, swaps on medium instances: two placed replicas of different roles trade GPUs.

Replicas of two roles with the same shape and the same scheduling rules (:func:`interchangeable`)
can take each other's GPUs: intra costs and capacity stay as they are, only traffic changes. A
single move cannot do it when the NVLink domain the replicas should enter has no free GPU (4 +
2 replicas of two roles outside a full domain become 5 + 1 only by a trade).

Every trade's change of traffic is computed at once, from the sums of distances between the GPU
sets the replicas hold (``P[i, j]``: every GPU of replica ``i`` with every GPU of ``j``, from
``pairsums.dense``; the diagonal is twice the set's own pairs). Trading ``x`` of role A with
``y`` of role B changes

- an ``all-to-all`` edge between A and B (per GPU pair weight ``c``) by
  ``c x (D[x, A] - P[x, x] + D[y, B] - P[y, y] - D[y, A] - D[x, B] + 2 P[x, y])``, with
  ``D[i, R]`` the sum over every GPU of role R (the pairs between the sets that stay put do
  not change; those of the traded sets with each role and with each other do);
- an ``all-to-all`` edge between A and another role C by ``c x (D[y, C] - D[x, C])`` (B and C
  the other way round);
- a ``paired`` pair of ``x`` with a peer ``p`` by ``w x (P[y, p] - P[x, p])`` (and of ``y``
  the other way round; a pair of ``x`` with ``y`` does not change).

The cheapest trade is made and the plan's cost taken again (a trade is kept only when the cost
falls); after a trade the two replicas' rows and columns of ``P`` change places. At most
:data:`SWAP_ROUNDS` trades per call. Caller: ``medium``. Changes the state only through
``State.commit``/``lift``/``restore``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import pairsums
from shorthop.placement.bitsets import bits
from shorthop.placement.request import Pattern, RoleRequest
from shorthop.placement.solver.state import Candidate, Key, Part, State, merged_masks

SWAP_ROUNDS = 8  # trades kept per call, at most
GAIN = 1e-6  # a trade must lower the traffic by more than this (float sums)


def interchangeable(a: RoleRequest, b: RoleRequest) -> bool:
    """Replicas of ``a`` and ``b`` may take each other's GPUs: the same shape, the same rules
    (nodes allowed, tolerations, CPU and memory per pod, replica scope) and no host ports (a
    port is counted per role on each node)."""
    if a.constraints.host_ports or b.constraints.host_ports:
        return False

    def rules(r: RoleRequest) -> RoleRequest:  # the role less its name, count and field path
        return dataclasses.replace(
            r, name="", replicas=0, constraints=dataclasses.replace(r.constraints, path="")
        )

    return rules(a) == rules(b)


def swap(state: State) -> bool:
    """Make the cheapest trade while one lowers the plan's cost (at most :data:`SWAP_ROUNDS`);
    True when at least one was kept."""
    roles = state.request.roles
    pairs = [
        (a, b)
        for a in range(len(roles))
        for b in range(a + 1, len(roles))
        if interchangeable(roles[a], roles[b])
    ]
    if not pairs:
        return False
    keys = sorted(k for k, r in state.replicas.items() if r.parts())
    at = {k: i for i, k in enumerate(keys)}
    sums = _set_sums(state, keys)
    kept = 0
    while kept < SWAP_ROUNDS:
        found = _cheapest(state, keys, at, sums, pairs)
        if found is None:
            break
        i, j = found
        if not _trade(state, keys[i], keys[j]):
            break
        sums[[i, j]] = sums[[j, i]]
        sums[:, [i, j]] = sums[:, [j, i]]
        kept += 1
    return kept > 0


def _set_sums(state: State, keys: list[Key]) -> NDArray[np.float64]:
    """``P[i, j]``: the sum of distances over every GPU of ``keys[i]`` with every GPU of
    ``keys[j]`` (ordered pairs; 0 for a GPU with itself)."""
    rows: list[int] = []
    gpus: list[int] = []
    starts: list[int] = []
    for k in keys:
        starts.append(len(rows))
        for _, row, mask in state.replicas[k].parts():
            for g in bits(mask):
                rows.append(row)
                gpus.append(g)
    dist = pairsums.dense(
        state.index, np.array(rows, dtype=np.intp), np.array(gpus, dtype=np.intp)
    ).astype(np.float64)
    return np.add.reduceat(np.add.reduceat(dist, starts, axis=0), starts, axis=1)


def _cheapest(
    state: State,
    keys: list[Key],
    at: dict[Key, int],
    sums: NDArray[np.float64],
    pairs: list[tuple[int, int]],
) -> tuple[int, int] | None:
    """The indexes (into ``keys``) of the trade that lowers traffic the most, or None."""
    n_roles = len(state.request.roles)
    onehot = np.zeros((len(keys), n_roles))
    onehot[np.arange(len(keys)), [k[0] for k in keys]] = 1.0
    per_role = sums @ onehot  # D[i, R]
    own = np.diag(sums)
    movable = np.array(
        [bool(state.replicas[k].placed and not state.replicas[k].fixed) for k in keys]
    )
    paired = any(state.peers[k] for k in keys)
    best: tuple[float, int, int] | None = None
    for a, b in pairs:
        xs = np.flatnonzero((onehot[:, a] > 0) & movable)
        ys = np.flatnonzero((onehot[:, b] > 0) & movable)
        if not xs.size or not ys.size:
            continue
        delta = np.zeros((xs.size, ys.size))
        for e in state.request.traffic:
            if e.pattern is not Pattern.ALL_TO_ALL:
                continue
            c = state.pair_weight(e)
            ends = {e.source, e.target}
            if ends == {a, b}:
                delta += c * (
                    (per_role[xs, a] - own[xs] - per_role[xs, b])[:, None]
                    + (per_role[ys, b] - own[ys] - per_role[ys, a])[None, :]
                    + 2 * sums[np.ix_(xs, ys)]
                )
            elif a in ends:
                other = (ends - {a}).pop()
                delta += c * (per_role[ys, other][None, :] - per_role[xs, other][:, None])
            elif b in ends:
                other = (ends - {b}).pop()
                delta += c * (per_role[xs, other][:, None] - per_role[ys, other][None, :])
        if paired:
            for xi, x in enumerate(xs.tolist()):
                for yi, y in enumerate(ys.tolist()):
                    delta[xi, yi] += _paired(state, keys, at, sums, x, y)
        flat = int(np.argmin(delta))
        xi, yi = divmod(flat, ys.size)
        if delta[xi, yi] < -GAIN and (best is None or delta[xi, yi] < best[0]):
            best = (float(delta[xi, yi]), int(xs[xi]), int(ys[yi]))
    return None if best is None else (best[1], best[2])


def _paired(
    state: State,
    keys: list[Key],
    at: dict[Key, int],
    sums: NDArray[np.float64],
    x: int,
    y: int,
) -> float:
    """The change of the ``paired`` traffic when ``keys[x]`` and ``keys[y]`` trade GPUs."""
    out = 0.0
    for me, other in ((x, y), (y, x)):
        for peer, weight in state.peers[keys[me]]:
            p = at.get(peer)
            if p is not None and p != other:
                out += weight * (sums[other, p] - sums[me, p])
    return out


def _trade(state: State, a: Key, b: Key) -> bool:
    """Give ``a`` the GPUs of ``b`` and ``b`` those of ``a``; kept (True) when the plan's cost
    falls, else undone."""
    before = state.total_cost()
    parts_a, parts_b = _parts(state, a), _parts(state, b)
    old_a, old_b = state.lift(a), state.lift(b)
    state.commit(a, Candidate(0, 0.0, 0.0, 0, parts_b))
    state.commit(b, Candidate(0, 0.0, 0.0, 0, parts_a))
    after = state.total_cost()
    if (after[0], round(after[1], 6)) < (before[0], round(before[1], 6)):
        return True
    state.put_back({a: old_a, b: old_b})
    return False


def _parts(state: State, key: Key) -> tuple[Part, ...]:
    placed = state.replicas[key].placed
    return tuple(sorted(merged_masks((row, mask) for _, row, mask in placed).items()))

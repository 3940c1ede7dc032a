"""Best GPU subsets inside a node, on bitsets.

For a node class with at most ``EXACT_LIMIT`` GPUs, every subset's internal cost (sum of pair
distances) is precomputed once, and for every free-GPU mask and size ``k`` the cheapest subset of
the free GPUs (ties: the highest mask, leaving the lowest GPUs to allocators that take devices in
order, as kube-scheduler's DRA allocator does). A lookup is then one array access, and the solver
can score
every candidate node of a class at once with numpy fancy indexing. Larger nodes fall back to a
greedy choice. Tables are cached per :class:`~shorthop.topology.index.NodeClass` (classes are
shared across index generations), built on first use.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from shorthop.topology.index import NodeClass

EXACT_LIMIT = 12
NO_SUBSET = np.int64(-1)
INF = np.int64(1 << 50)


class SubsetTable:
    """Internal costs and best subsets for one node class."""

    def __init__(self, cls: NodeClass, *, nvlink_only: bool = False) -> None:
        self.cls = cls
        self.gpus = g = cls.gpus
        self.exact = g <= EXACT_LIMIT
        if not self.exact:
            return
        n = 1 << g
        masks = np.arange(n, dtype=np.int64)
        self.popcount = np.array([int(m).bit_count() for m in range(n)], dtype=np.int64)
        cost = np.zeros(n, dtype=np.int64)
        allowed = np.ones(n, dtype=np.bool_)
        dist, nv = cls.dist, cls.nvlink
        for m in range(1, n):
            low = (m & -m).bit_length() - 1
            rest = m & (m - 1)
            others = [j for j in range(g) if rest >> j & 1]
            cost[m] = cost[rest] + int(dist[low, others].sum())
            allowed[m] = allowed[rest] and bool(nv[low, others].all())
        if nvlink_only:
            cost = np.where(allowed, cost, INF)
        self.cost = cost
        # to_gpu[m, j] = sum of distances from the GPUs in m to GPU j (for look-ahead).
        bitmat = ((masks[:, None] >> np.arange(g)[None, :]) & 1).astype(np.int64)
        self.to_gpu = bitmat @ cls.dist
        # best[k][f] = cheapest subset of free mask f with k GPUs (-1 if none).
        self.best = np.full((g + 1, n), NO_SUBSET, dtype=np.int64)
        self.best_cost = np.full((g + 1, n), INF, dtype=np.int64)
        for k in range(g + 1):
            candidates = masks[(self.popcount == k) & (cost < INF)]
            if candidates.size == 0:
                continue
            candidates = candidates[np.lexsort((-candidates, cost[candidates]))]
            fits = (candidates[None, :] & ~masks[:, None]) == 0  # [free mask, candidate]
            has = fits.any(axis=1)
            first = fits.argmax(axis=1)
            self.best[k, has] = candidates[first[has]]
            self.best_cost[k, has] = cost[candidates[first[has]]]

    def pick(self, free: int, k: int) -> tuple[int, int] | None:
        """(subset mask, internal cost) of the cheapest ``k`` free GPUs, or None."""
        if k == 0:
            return (0, 0)
        if self.exact:
            if k > self.gpus:
                return None
            m = int(self.best[k, free])
            return None if m < 0 else (m, int(self.best_cost[k, free]))
        return self._greedy(free, k)

    def pick_many(
        self, free: NDArray[np.int64], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Vectorised :meth:`pick` for many free masks (exact tables only)."""
        if k > self.gpus:
            return np.full(free.shape, NO_SUBSET), np.full(free.shape, INF)
        return self.best[k, free], self.best_cost[k, free]

    def _greedy(self, free: int, k: int) -> tuple[int, int] | None:
        avail = [i for i in range(self.gpus) if free >> i & 1]
        if len(avail) < k:
            return None
        dist = self.cls.dist
        chosen = [min(avail, key=lambda i: (int(dist[i, avail].sum()), -i))]
        while len(chosen) < k:
            rest = [i for i in avail if i not in chosen]
            chosen.append(min(rest, key=lambda i: (int(dist[i, chosen].sum()), -i)))
        mask = sum(1 << i for i in chosen)
        cost = int(dist[np.ix_(chosen, chosen)].sum()) // 2
        return mask, cost


# A global cache, unlike the domain tree (kept with its index): a NodeClass outlives index
# generations (an IndexBuilder hands the same class objects to every index it freezes, so a
# relabelled node does not rebuild tables), a table depends on its class alone, and the bound keeps
# memory finite when builders come and go (each has its own classes; NodeClass hashes by identity).
@lru_cache(maxsize=256)
def table(cls: NodeClass, nvlink_only: bool = False) -> SubsetTable:
    """The (cached) table of ``cls``; with ``nvlink_only``, subsets with a pair not linked by
    NVLink alone cost ``INF``."""
    return SubsetTable(cls, nvlink_only=nvlink_only)

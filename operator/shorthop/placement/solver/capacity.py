"""Phase 2a, capacity: how many pods of a role every node and every domain can take now.

Per role, each node's capacity is the fewest of: free GPUs // GPUs per pod, CPU, memory and
other resources left // the pod's requests, the pod slots left, and one pod when the role binds
host ports;
zero where the role may not go (its scheduling rules, scope); rolled up the domain tree with
numpy. Per pod size ``q``, :meth:`Capacity.room` counts the whole-pod GPUs under every vertex,
for the look-ahead. Per replica shape, :meth:`Capacity.best` keeps every node's cheapest GPU
subset for the whole replica (phase 2b's candidates, per node class). All are cached and kept up
to date by :meth:`Capacity.touch` after a commit or lift changes a few rows.

Called by ``state.State`` (which owns the arrays read here and calls ``touch``) and by the phase 2
modules; reads the arrays it is given, never changes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.request import Request
from shorthop.topology.index import TopologyIndex

Shape = tuple[int, int, bool]  # (role index, pods, NVLink-only subsets)
Cheapest = tuple[NDArray[np.intp], NDArray[np.int64], NDArray[np.int64]]  # rows, masks, intra


class BestSubsets:
    """Per node class, for every node of the class: the cheapest subset of its free GPUs for a
    whole replica of ``pods`` pods (``masks``, -1 where it does not fit) and its internal cost
    (``intra``, ``subsets.INF`` where it does not fit). Arrays are per class, aligned with
    ``rows``; :meth:`update` recomputes a few rows after a commit."""

    def __init__(
        self,
        index: TopologyIndex,
        class_rows: list[NDArray[np.intp]],
        free: NDArray[np.uint64],
        fit: NDArray[np.int64],
        shape: Shape,
        q: int,
    ) -> None:
        self.index = index
        self.pods, self.k, self.nvlink_only = shape[1], shape[1] * q, shape[2]
        self.rows = class_rows
        # per class its subset table (looked up once: update runs for every row a commit touches)
        self.tables = {
            c: subsets.table(index.classes[c], self.nvlink_only)
            for c, rows in enumerate(class_rows)
            if rows.size
        }
        self.position = np.full(len(index.names), -1, dtype=np.int64)
        self.masks: list[NDArray[np.int64]] = []
        self.intra: list[NDArray[np.int64]] = []
        # per class: (least intra cost, its nodes' rows, masks and costs), until a commit touches
        # one of those nodes or brings another down to that cost (see :meth:`cheapest`)
        self._cheapest: dict[int, tuple[int, Cheapest | None]] = {}
        for rows in class_rows:
            self.position[rows] = np.arange(len(rows))
            masks, intra = self._pick(rows, free, fit)
            self.masks.append(masks)
            self.intra.append(intra)

    def _pick(
        self, rows: NDArray[np.intp], free: NDArray[np.uint64], fit: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        if not rows.size:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        table = self.tables[int(self.index.class_of[int(rows[0])])]
        if table.exact:
            masks, intra = table.pick_many(free[rows].astype(np.int64), self.k)
        else:
            picks = [table.pick(int(free[row]), self.k) for row in rows.tolist()]
            masks = np.array([p[0] if p else -1 for p in picks], dtype=np.int64)
            intra = np.array([p[1] if p else subsets.INF for p in picks], dtype=np.int64)
        ok = (fit[rows] >= self.pods) & (masks >= 0)
        return np.where(ok, masks, -1), np.where(ok, intra, subsets.INF)

    def cheapest(self, cls: int) -> Cheapest | None:
        """The nodes of class ``cls`` whose subset is as cheap inside as the class has (rows,
        masks, intra costs), or None when no node of the class fits. Callers must not modify
        the arrays."""
        found = self._cheapest.get(cls)
        if found is None:
            intra = self.intra[cls]
            low = int(intra.min()) if intra.size else int(subsets.INF)
            group = None
            if low < subsets.INF:
                at = np.flatnonzero(intra == low)
                group = (self.rows[cls][at], self.masks[cls][at], intra[at])
            found = (low, group)
            self._cheapest[cls] = found
        return found[1]

    def update(
        self, rows: NDArray[np.intp], free: NDArray[np.uint64], fit: NDArray[np.int64]
    ) -> None:
        # A handful of rows per commit: plain Python per row (what _pick does for many).
        for row in rows.tolist():
            at = int(self.position[row])
            if at < 0:
                continue
            cls = int(self.index.class_of[row])
            table = self.tables[cls]
            pick: tuple[int, int] | None = None
            if int(fit[row]) < self.pods:
                pass  # no room for the replica's pods, whatever its GPUs
            elif not table.exact:
                pick = table.pick(int(free[row]), self.k)
            elif self.k <= table.gpus:
                at_free = int(free[row])
                mask = int(table.best[self.k, at_free])
                pick = (mask, int(table.best_cost[self.k, at_free])) if mask >= 0 else None
            if pick is None:
                pick = (-1, int(subsets.INF))
            cached = self._cheapest.get(cls)
            if cached is not None and min(int(self.intra[cls][at]), pick[1]) <= cached[0]:
                del self._cheapest[cls]  # the row was, or now is, among the cheapest
            self.masks[cls][at], self.intra[cls][at] = pick


class Capacity:
    """Rolled-up capacities over the live arrays of one ``State`` (shared, not copied)."""

    def __init__(
        self,
        tree: domain_tree.DomainTree,
        request: Request,
        usable: list[NDArray[np.bool_]],
        usable_any: NDArray[np.bool_],
        count: NDArray[np.int64],
        headroom: NDArray[np.int64],
        free: NDArray[np.uint64],
        class_rows: list[NDArray[np.intp]],
        demand: list[NDArray[np.int64]],
    ) -> None:
        self.tree = tree
        # per role, the headroom columns a pod takes some of: (column, amount per pod)
        self._takes = [[(c, int(d[c])) for c in np.flatnonzero(d).tolist()] for d in demand]
        self.free = free
        self.class_rows = class_rows
        self._best: dict[Shape, BestSubsets] = {}
        # Per tree vertex: how many times GPUs under it changed hands in this run (caches of
        # per-domain work, such as phase 2c's fills, are valid while it stays the same).
        self.version = np.zeros(tree.vertices, dtype=np.int64)
        self.request = request
        self.usable = usable
        self.usable_any = usable_any
        self.count = count
        self.headroom = headroom
        self._fit: dict[int, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}
        self._rooms: dict[int, NDArray[np.int64]] = {}

    def _fit_rows(self, role_index: int, rows: slice) -> NDArray[np.int64]:
        role = self.request.roles[role_index]
        head = self.headroom[rows]
        fit = self.count[rows] // role.pod_gpus
        for column, amount in self._takes[role_index]:  # CPU, memory, pod slots (1), others
            fit = np.minimum(fit, head[:, column] // amount if amount > 1 else head[:, column])
        if role.constraints.host_ports:
            fit = np.minimum(fit, 1)  # two pods of the role would bind the same host port
        out: NDArray[np.int64] = np.where(self.usable[role_index][rows], np.maximum(fit, 0), 0)
        return out.astype(np.int64)

    def pods_fit(self, role_index: int) -> NDArray[np.int64]:
        """How many pods of this role every node can take now (cached, kept up to date by
        :meth:`touch`; callers must not modify it)."""
        if role_index not in self._fit:
            fit = self._fit_rows(role_index, slice(None))
            self._fit[role_index] = (fit, self.tree.rollup(fit))
        return self._fit[role_index][0]

    def rolled_up(self, role_index: int) -> NDArray[np.int64]:
        """:meth:`pods_fit` summed under every vertex of the domain tree."""
        self.pods_fit(role_index)
        return self._fit[role_index][1]

    def best(self, shape: Shape, *, keep: bool = True) -> BestSubsets:
        """Every node's cheapest subset for a whole replica of ``shape`` (cached, kept current
        by :meth:`touch`; callers must not modify it). ``keep=False`` for a one-off read: a
        subset not cached yet is not kept (nor updated by every later commit)."""
        found = self._best.get(shape)
        if found is None:
            role = self.request.roles[shape[0]]
            fit = self.pods_fit(shape[0])
            found = BestSubsets(
                self.tree.index, self.class_rows, self.free, fit, shape, role.pod_gpus
            )
            if keep:
                self._best[shape] = found
        return found

    def room(self, q: int) -> NDArray[np.int64]:
        """GPUs under every tree vertex usable by pods of ``q`` GPUs (whole pods only)."""
        if q not in self._rooms:
            self._rooms[q] = self.tree.rollup(np.where(self.usable_any, (self.count // q) * q, 0))
        return self._rooms[q]

    def _fit_row(self, role_index: int, row: int) -> int:
        """:meth:`_fit_rows` of one row in plain Python (a commit changes a handful)."""
        if not self.usable[role_index][row]:
            return 0
        role = self.request.roles[role_index]
        head = self.headroom[row].tolist()
        fit: int = int(self.count[row]) // role.pod_gpus
        for column, amount in self._takes[role_index]:
            fit = min(fit, head[column] // amount if amount > 1 else head[column])
        if role.constraints.host_ports:
            fit = min(fit, 1)
        return max(fit, 0)

    def touch(self, rows: Sequence[int]) -> None:
        """Bring the cached capacities up to date after GPUs on ``rows`` changed hands (a
        handful of rows per commit: plain loops beat numpy's fancy indexing here)."""
        idx = np.array(sorted(set(rows)), dtype=np.intp)
        ancestors = self.tree.ancestor_at
        chains = {row: [v for v in ancestors[:, row].tolist() if v >= 0] for row in idx.tolist()}
        for row, chain in chains.items():
            self.version[row] += 1
            for v in chain:
                self.version[v] += 1
        for ri, (fit, cap) in self._fit.items():
            for row, chain in chains.items():
                new = self._fit_row(ri, row)
                delta = new - int(fit[row])
                if delta:
                    fit[row] = new
                    for v in chain:
                        cap[v] += delta
        for q, room in self._rooms.items():
            for row, chain in chains.items():
                new = (int(self.count[row]) // q) * q if self.usable_any[row] else 0
                delta = new - int(room[row])
                if delta:
                    for v in chain:
                        room[v] += delta
        for shape, best in self._best.items():
            best.update(idx, self.free, self._fit[shape[0]][0])

"""Phase 2e, rescue on small instances: any feasible placement, when every strategy failed.

The strategies of ``run`` place replica by replica and never take a choice back, so on a tight
small cluster they can all fail where a placement exists: pods of 3, 2 and 4 GPUs on nodes with
4, 4 and 8 free GPUs fit only as 3+3+2, 4 and 2+2, and largest-first puts the 4 on the 8-GPU
node. Here a depth-first search with backtracking tries the ways each replica's missing pods can
be spread over the nodes (per node a number of whole pods, on the node's cheapest free GPUs for
that count; inside one domain of the role's ``replicaScope``), largest pods first, nodes with the
least room left over first, and remembers states that failed. It asks only for feasibility: the
plan it finds is then refined and searched like any start.

Bounded: :data:`BUDGET` commits at most, and only on instances ``search.small`` accepts, so an
infeasible deployment on a large cluster costs nothing here. Caller: ``run._run``. Changes the
state only through ``State.commit``/``lift``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import subsets
from shorthop.placement.solver.fill import scope_anchor
from shorthop.placement.solver.state import Candidate, Key, State

BUDGET = 5_000  # placements tried, over the whole rescue


class _OutOfBudget(Exception):
    pass


def rescue(state: State) -> bool:
    """Place every replica's missing pods somewhere, backtracking over the ways to spread
    them; True when a complete placement was found (committed to ``state``), else the state is
    as it was."""
    roles = state.request.roles
    keys = sorted(
        (k for k, r in state.replicas.items() if r.missing()),
        key=lambda k: (
            -roles[k[0]].pod_gpus,
            -len(state.replicas[k].missing()) * roles[k[0]].pod_gpus,
            k,
        ),
    )
    search = _Rescue(state, keys)
    try:
        return search.dfs(0)
    except _OutOfBudget:
        return False


class _Rescue:
    def __init__(self, state: State, keys: list[Key]) -> None:
        self.state = state
        self.keys = keys
        self.left = BUDGET
        self.failed: set[tuple[object, ...]] = set()

    def dfs(self, depth: int) -> bool:
        if depth == len(self.keys):
            return True
        state = self.state
        # The GPUs each role holds matter too (host ports), not only what is left free.
        held = tuple(tuple(sorted(masks.items())) for masks in state.role_masks)
        seen = (depth, state.free.tobytes(), state.headroom.tobytes(), held)
        if seen in self.failed:
            return False
        if not self._may_fit(depth):
            return False
        key = self.keys[depth]
        for parts in self._ways(key):
            self.left -= 1
            if self.left < 0:
                raise _OutOfBudget
            state.commit(key, Candidate(0, 0.0, 0.0, parts[0][0], parts))
            try:
                if self.dfs(depth + 1):
                    return True
            except _OutOfBudget:
                state.lift(key)
                raise
            state.lift(key)
        self.failed.add(seen)
        return False

    def _may_fit(self, depth: int) -> bool:
        """A necessary condition for the replicas from ``depth`` on: for every pod size q among
        them, each node holds at most ``free // q`` (and its pod headroom) of their pods of q
        GPUs or more, over the nodes any of them may use."""
        state = self.state
        roles = state.request.roles
        sizes = sorted(
            (roles[k[0]].pod_gpus for k in self.keys[depth:] for _ in state.replicas[k].missing()),
            reverse=True,
        )
        usable = np.logical_or.reduce([state.usable[k[0]] for k in self.keys[depth:]])
        count = state.count[usable]
        room = state.headroom[usable][:, 2]
        for i, q in enumerate(sizes):
            if i + 1 < len(sizes) and sizes[i + 1] == q:
                continue  # the last pod of each size counts them all (sizes descending)
            if int(np.minimum(count // q, room).sum()) < i + 1:
                return False
        return True

    def _ways(self, key: Key) -> Iterator[tuple[tuple[int, int], ...]]:
        """Each distinct spread of the replica's missing pods: (row, GPU mask) per node used."""
        state = self.state
        r = state.replicas[key]
        role = state.request.roles[r.role]
        pods = len(r.missing())
        nvlink_only = role.replica_scope == 0
        fit = state.capacity.pods_fit(r.role)
        rows = [int(row) for row in np.flatnonzero(fit > 0)]
        # Least room left over first (best fit), then row order: tight packings come early.
        rows.sort(key=lambda row: (int(state.count[row]), row))
        groups: list[list[int]] = [rows]
        if role.replica_scope is not None:
            tree = state.tree
            layer = tree.layer_of_tier(role.replica_scope)
            if r.fixed:
                anchor = scope_anchor(state, key, layer)
                # None: the surviving pods already break the scope, nothing fits it
                inside = [] if anchor is None else [anchor]
            else:
                inside = tree.layer_vertices[layer].tolist()
                # Rows under no domain of that layer are held by a finer one (a node outside
                # every NVLink domain is its own): the largest holder of each row counts too.
                extra = {
                    max(tree.holders(layer, row), key=lambda v: int(tree.layer[v])) for row in rows
                }
                inside += sorted(extra - set(inside))
            groups = []
            for v in inside:
                under = set(tree.rows_under(int(v)))
                groups.append([row for row in rows if row in under])
        done: set[tuple[tuple[int, int], ...]] = set()
        for group in groups:
            for parts in self._spreads(group, pods, role.pod_gpus, nvlink_only, fit):
                if parts not in done:
                    done.add(parts)
                    yield parts

    def _spreads(
        self,
        rows: list[int],
        pods: int,
        q: int,
        nvlink_only: bool,
        fit: NDArray[np.int64],
    ) -> Iterator[tuple[tuple[int, int], ...]]:
        state = self.state
        index = state.index

        def mask_for(row: int, count: int) -> int | None:
            table = subsets.table(index.node_class(row), nvlink_only)
            found = table.pick(int(state.free[row]), count * q)
            return None if found is None else found[0]

        if nvlink_only:  # same-node-nvlink: the whole replica on one node
            for row in rows:
                if int(fit[row]) >= pods:
                    mask = mask_for(row, pods)
                    if mask is not None:
                        yield ((row, mask),)
            return

        def extend(at: int, left: int, chosen: list[tuple[int, int]]) -> Iterator[None]:
            if left == 0:
                yield None  # ``chosen`` holds the spread until the caller asks for the next
                return
            for i in range(at, len(rows)):
                row = rows[i]
                for count in range(min(int(fit[row]), left), 0, -1):
                    chosen.append((row, count))
                    yield from extend(i + 1, left - count, chosen)
                    chosen.pop()

        chosen: list[tuple[int, int]] = []
        for _ in extend(0, pods, chosen):
            parts = []
            for row, count in chosen:
                mask = mask_for(row, count)
                if mask is None:
                    break
                parts.append((row, mask))
            else:
                yield tuple(sorted(parts))

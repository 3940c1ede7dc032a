"""Phase 3c, exhaustive search on small instances: branch and bound over replicas.

When an instance is small (few usable nodes and free GPUs, few pods to place), the heuristics'
best plan is only a starting point: every placement of every replica is enumerated up to
symmetry and the cheapest plan is proven, or found. Greedy can end in a basin no single move
leaves (the large replicas fill the NVSwitch node and every small one crosses the network); the
search does not care where greedy ended.

Algorithm overview
------------------
1. The universe: the free GPUs of the nodes the deployment may use and the GPUs of the pods kept
   (``fixed``), with their full distance matrix (``pairsums.dense``).
2. Replicas with missing pods, largest first (of equal size, hubs of ``paired`` edges first:
   their spokes are then costed against them). A replica's *options* are all ways to put its
   missing GPUs on nodes: per node a multiple of the pod size, within free GPUs, pod headroom
   and its ``replicaScope``; GPUs that are twins (swapping them changes no distance) are taken
   lowest first, and options that differ only by nodes interchangeable now (same class, NVLink
   domain, network domains, free GPUs, headroom, none of the deployment's GPUs) are one.
   Replicas the objective cannot tell apart (same role and shape, nothing kept, the same paired
   peers) are placed in one order only: each takes GPUs whose lowest id is above the previous
   one's (any plan can be permuted into that order), so k of them are not tried k! times.
3. Depth first, cheapest option first. A GPU pair is costed when its second GPU is placed: the
   replica's own pairs (intra), and its pairs with placed partner GPUs (peers of ``paired``
   edges, the other role of ``all-to-all`` edges, weighted as the objective weighs them).
4. A branch is cut when its cost plus a lower bound for the rest (each remaining replica's
   cheapest intra cost at the start; every traffic GPU pair still to come at the smallest
   distance, except that on an ``all-to-all`` edge the pairs of a GPU still to come with the
   placed GPUs of the other role cost at least those of the free GPUs nearest them) cannot
   beat the best plan, the heuristics' plan to begin with.
5. :data:`BUDGET` options scored at most; the best plan found stands (never worse than the
   heuristics').

The universe (which nodes' free GPUs, which pods stay) is a ``universe.Scope``: :func:`search`
takes every usable node and keeps the pods the request keeps; :func:`within` takes any scope
(``neighbourhood``: a few nodes, every other pod staying).

Callers: ``run`` (after refinement) and ``neighbourhood``. Changes the state only through
``State.lift``/``commit``/``put_back``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import other_resources
from shorthop.placement.solver import universe
from shorthop.placement.solver.state import Candidate, Key, State
from shorthop.placement.solver.universe import canonical_subsets, twin_classes

SMALL_ROWS = 12  # usable nodes with free GPUs
SMALL_GPUS = 96  # free GPUs on them
SMALL_PODS = 14  # pods to place
BUDGET = 60_000  # options scored, over the whole search
EPS = 1e-7


def small(state: State) -> bool:
    """Whether the instance is small enough for the exhaustive search."""
    missing = sum(r.pods - len(r.fixed) for r in state.replicas.values())
    if not missing or missing > SMALL_PODS:
        return False
    usable = np.logical_or.reduce(state.usable)
    rows = np.flatnonzero(usable & (state.snapshot.free_counts > 0))
    return len(rows) <= SMALL_ROWS and int(state.snapshot.free_counts[rows].sum()) <= SMALL_GPUS


def search(state: State) -> bool:
    """Phase 3c: replace the state's placement by the optimum when the search finds a cheaper
    one within its budget; True when it did."""
    return small(state) and within(state, universe.whole(state))


def within(state: State, scope: universe.Scope, budget: int = BUDGET, margin: float = 0.0) -> bool:
    """Place again, at the least cost the search finds within ``budget`` options, every
    replica with pods outside ``scope.kept``; kept only when the plan's cost falls (True).
    Those pods must be placed now, on GPUs ``scope.free`` counts as free. With ``margin``,
    the search looks only for traffic at least that much lower at equal intra cost (the
    state's cost is rounded to 6 places: a tie can look a few 1e-7 cheaper to the search)."""
    problem = universe.problem(state, scope)
    before = state.total_cost()
    found = _Search(state, problem, (before[0], before[1] - margin), budget).run()
    if found is None:
        return False
    olds = {key: state.lift(key) for key in found}
    chosen = [problem.gpu_of[i] for ids in found.values() for i in ids]
    highest = universe.highest_twins(state, chosen, scope.free)
    for key, ids in found.items():
        masks: dict[int, int] = {}
        for i in ids:
            row, gpu = problem.gpu_of[i]
            masks[row] = masks.get(row, 0) | 1 << highest[(row, gpu)]
        state.commit(key, Candidate(0, 0.0, 0.0, 0, tuple(sorted(masks.items()))))
    if state.total_cost() < before:
        return True
    state.put_back(olds)  # never keep a plan that is not cheaper (a safety net)
    return False


class _Search:
    def __init__(
        self, state: State, problem: universe.Problem, best: tuple[int, float], budget: int
    ) -> None:
        self.state = state
        self.p = problem
        self.best = best
        self.budget = budget
        self.best_plan: dict[Key, list[int]] | None = None
        index = state.index
        self.twins = {row: twin_classes(index, row) for row in problem.rows}
        self.static = {
            row: (
                int(index.class_of[row]),
                int(index.clique_of[row]),
                tuple(index.dom[row].tolist()),
                tuple(bool(u[row]) for u in state.usable),
            )
            for row in problem.rows
        }
        # Everything already placed for good: the GPUs of replicas with no missing pods, and
        # the kept GPUs of the others; their pairs are a constant of every plan.
        for key, kept in problem.kept.items():
            ids = [
                problem.gpu_id[(row, g)]
                for _, row, mask in kept
                for g in range(64)
                if mask >> g & 1
            ]
            problem.placed[key] = list(ids)
            problem.role_placed[key[0]] += ids
            for _, row, mask in kept:
                problem.on_row[row] += mask.bit_count()
        self.base = self._base_cost()
        # Per role of an all-to-all edge: every universe GPU's summed distance to the role's
        # placed GPUs, and which universe GPUs are free (kept current by _place/_unplace):
        # the traffic bound charges each GPU still to come at least the cheapest free ones.
        self.free_u = np.ones(len(problem.dist), dtype=np.bool_)
        self.reach: dict[int, NDArray[np.int64]] = {}
        for ri, edges in enumerate(state.role_edges):
            if any(w for _, w, _ in edges):
                self.reach[ri] = problem.dist[:, problem.role_placed[ri]].sum(axis=1)
        for ids in problem.placed.values():
            self.free_u[ids] = False
        off = problem.dist[~np.eye(len(problem.dist), dtype=np.bool_)]
        self.d_min = int(off.min()) if off.size else 0
        self.order = problem.replicas
        # Replicas interchangeable with the one before them in the order (same role and shape,
        # nothing kept, the same paired peers, if any, at the same weights: the objective does
        # not tell them apart): their GPU sets are taken in increasing order of their lowest
        # GPU, which every plan can be permuted into.
        self.alike = [
            i > 0 and self._interchangeable(self.order[i - 1], x) for i, x in enumerate(self.order)
        ]
        # Options at the root, per replica shape: replicas of one role alike in what they miss
        # and keep have the same options before anything is placed (computed once each).
        self.root_options: dict[tuple[object, ...], NDArray[np.intp]] = {}
        self.root_intra = [self._cheapest_intra(x) for x in self.order]

    def _interchangeable(self, a: universe.Replica, b: universe.Replica) -> bool:
        return (
            a.role == b.role
            and (a.k, a.q, a.scope_layer, a.nvlink_only) == (b.k, b.q, b.scope_layer, b.nvlink_only)
            and not a.fixed
            and not b.fixed
            and sorted(self.state.peers[a.key]) == sorted(self.state.peers[b.key])
            and all(peer not in (a.key, b.key) for peer, _ in self.state.peers[a.key])
        )

    # -- costs -------------------------------------------------------------------------------

    def _partners(self, x: universe.Replica) -> list[tuple[list[int], float]]:
        """Placed GPUs ``x`` exchanges traffic with, and the weight of one pair."""
        out = []
        for peer, weight in self.state.peers[x.key]:
            out.append((self.p.placed[peer], weight))
        for other, weight, _ in self.state.role_edges[x.role]:
            if weight:
                out.append((self.p.role_placed[other], weight))
        return out

    def _base_cost(self) -> tuple[int, float]:
        """Pairs among GPUs placed for good (kept pods), counted once."""
        d = self.p.dist
        intra = 0
        traffic = 0.0
        for r in self.state.replicas.values():
            ids = self.p.placed[(r.role, r.rid)]
            intra += int(d[np.ix_(ids, ids)].sum()) // 2
        seen: set[tuple[Key, Key]] = set()
        for key in self.state.replicas:
            for peer, weight in self.state.peers[key]:
                pair = (min(key, peer), max(key, peer))
                if pair not in seen:
                    seen.add(pair)
                    a, b = self.p.placed[key], self.p.placed[peer]
                    traffic += weight * float(d[np.ix_(a, b)].sum())
        for e in self.state.request.traffic:
            for other, weight, edge in self.state.role_edges[e.source]:
                if edge is e and weight:
                    a, b = self.p.role_placed[e.source], self.p.role_placed[other]
                    traffic += weight * float(d[np.ix_(a, b)].sum())
        return intra, traffic

    def _score(
        self, x: universe.Replica, options: NDArray[np.intp]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """(intra, traffic) each option adds: its pairs with itself, the replica's kept GPUs
        and the placed partner GPUs."""
        d = self.p.dist
        self.p.scored += len(options)
        inner = d[options[:, :, None], options[:, None, :]].sum(axis=(1, 2)) // 2
        if x.fixed:
            inner = inner + d[options][:, :, x.fixed].sum(axis=(1, 2))
        traffic = np.zeros(len(options), dtype=np.float64)
        for ids, weight in self._partners(x):
            if ids:
                traffic += weight * d[options][:, :, ids].sum(axis=(1, 2))
        return inner.astype(np.int64), traffic

    def _root_options(self, x: universe.Replica) -> NDArray[np.intp]:
        shape = (x.role, x.k, x.q, tuple(x.fixed), x.scope_layer, x.nvlink_only, x.anchor)
        if shape not in self.root_options:
            self.root_options[shape] = self._options(x)
        return self.root_options[shape]

    def _cheapest_intra(self, x: universe.Replica) -> int:
        options = self._root_options(x)
        if not len(options):
            return 0
        d = self.p.dist
        inner = d[options[:, :, None], options[:, None, :]].sum(axis=(1, 2)) // 2
        if x.fixed:
            inner = inner + d[options][:, :, x.fixed].sum(axis=(1, 2))
        return int(inner.min())

    def _traffic_bound(self, depth: int) -> float:
        """Every traffic GPU pair not costed yet, at the smallest distance, weighted."""
        state = self.state
        pending = {x.key: x.k for x in self.order[depth:]}
        total = 0.0
        seen: set[tuple[Key, Key]] = set()
        for x in self.order[depth:]:
            for peer, weight in state.peers[x.key]:
                pair = (min(x.key, peer), max(x.key, peer))
                if pair in seen:
                    continue
                seen.add(pair)
                mine = len(self.p.placed[x.key]) + x.k
                other = len(self.p.placed[peer]) + pending.get(peer, 0)
                total += weight * (
                    mine * other - len(self.p.placed[x.key]) * len(self.p.placed[peer])
                )
        role_pending: dict[int, int] = defaultdict(int)
        for x in self.order[depth:]:
            role_pending[x.role] += x.k
        nearest = 0.0
        for e in state.request.traffic:
            for other, weight, edge in state.role_edges[e.source]:
                if edge is not e or not weight:
                    continue
                a_new, b_new = role_pending[e.source], role_pending[other]
                # pairs of two GPUs still to come, at the least distance; pairs of one still
                # to come with one placed, at least the cheapest free GPUs' sums
                total += weight * a_new * b_new
                nearest += weight * (
                    self._cheapest_sums(other, a_new) + self._cheapest_sums(e.source, b_new)
                )
        return total * self.d_min + nearest

    def _cheapest_sums(self, role: int, n: int) -> float:
        """The least total distance ``n`` distinct free GPUs can have to the placed GPUs of
        ``role``: the ``n`` smallest of their per-GPU sums."""
        if not n or not self.p.role_placed[role]:
            return 0.0
        sums = self.reach[role][self.free_u]
        if n >= len(sums):
            return float(sums.sum())
        return float(np.partition(sums, n - 1)[:n].sum())

    # -- options -------------------------------------------------------------------------------

    def _row_ok(self, x: universe.Replica, row: int) -> bool:
        h = self.p.head[row]
        return bool(
            self.state.usable[x.role][row]
            and self.p.free[row].bit_count() >= x.q
            and all(have >= need for have, need in zip(h, self.state.demand[x.role], strict=True))
        )

    def _subsets(self, row: int, k: int) -> tuple[tuple[int, ...], ...]:
        """Canonical ``k``-GPU subsets of the row's free GPUs (twins lowest first)."""
        return canonical_subsets(self.twins[row], self.p.free[row], k)

    def _options(self, x: universe.Replica) -> NDArray[np.intp]:
        """Every distinct way to place the replica's missing GPUs now, as universe ids."""
        rows = [row for row in self.p.rows if self._row_ok(x, row)]
        tree = self.state.tree
        if x.nvlink_only:
            fixed_rows = {self.p.gpu_of[i][0] for i in x.fixed}
            rows = [row for row in rows if not fixed_rows or fixed_rows == {row}]
        seen: set[tuple[object, ...]] = set()
        out: list[list[int]] = []
        # Nothing is placed while the options are listed: per row, what tells it apart from
        # interchangeable rows, and each subset's twin classes, are worked out once.
        row_key: dict[int, tuple[object, ...]] = {
            r: (0, self.static[r], self.p.free[r], tuple(self.p.head[r]))
            if self.p.on_row[r] == 0
            else (1, r)
            for r in rows
        }
        classes: dict[tuple[int, tuple[int, ...]], tuple[int, ...]] = {}

        def twin_key(r: int, gs: tuple[int, ...]) -> tuple[int, ...]:
            found = classes.get((r, gs))
            if found is None:
                found = classes[(r, gs)] = tuple(sorted(self.twins[r][g] for g in gs))
            return found

        demand = self.state.demand[x.role].tolist()

        def pods_room(row: int) -> int:
            n = self.p.free[row].bit_count() // x.q
            return min(n, other_resources.pods_room(self.p.head[row], demand))

        def extend(
            at: int,
            left: int,
            chosen: list[tuple[int, tuple[int, ...]]],
            domain: frozenset[int] | None,
        ) -> None:
            if left == 0:
                signature = tuple(sorted((row_key[r], twin_key(r, gs)) for r, gs in chosen))
                if signature not in seen:
                    seen.add(signature)
                    out.append([self.p.gpu_id[(r, g)] for r, gs in chosen for g in gs])
                return
            for i in range(at, len(rows)):
                row = rows[i]
                d = None
                if x.scope_layer is not None:
                    # Every row of the replica under one vertex of the scope's layer or finer.
                    d = tree.holders(x.scope_layer, row)
                    if x.anchor is not None:
                        d &= x.anchor
                    if domain is not None:
                        d &= domain
                    if not d:
                        continue
                most = min(pods_room(row), left // x.q)
                least = left // x.q if x.nvlink_only else 1  # same-node-nvlink: one node
                for pods in range(most, least - 1, -1):
                    for gs in self._subsets(row, pods * x.q):
                        if x.nvlink_only and not self._nvlink(row, gs, x):
                            continue
                        chosen.append((row, gs))
                        extend(i + 1, left - pods * x.q, chosen, d)
                        chosen.pop()

        extend(0, x.k, [], None)
        return np.array(out, dtype=np.intp).reshape(len(out), x.k)

    def _nvlink(self, row: int, gpus: tuple[int, ...], x: universe.Replica) -> bool:
        nv = self.state.index.node_class(row).nvlink
        mine = list(gpus) + [self.p.gpu_of[i][1] for i in x.fixed]
        return bool(nv[np.ix_(mine, mine)].all())

    # -- search --------------------------------------------------------------------------------

    def run(self) -> dict[Key, list[int]] | None:
        base_intra, base_traffic = self.base
        self.chosen: dict[Key, list[int]] = {}
        self._dfs(0, base_intra, base_traffic)
        return self.best_plan

    def _better(self, intra: int, traffic: float) -> bool:
        best_intra, best_traffic = self.best
        return intra < best_intra or (intra == best_intra and traffic < best_traffic - EPS)

    def _dfs(self, depth: int, intra: int, traffic: float) -> None:
        if depth == len(self.order):
            if self._better(intra, traffic):
                self.best = (intra, round(traffic, 6))
                self.best_plan = {k: list(v) for k, v in self.chosen.items()}
            return
        if self.p.scored > self.budget:
            return
        x = self.order[depth]
        options = self._root_options(x) if depth == 0 else self._options(x)
        if self.alike[depth] and len(options):
            options = options[options.min(axis=1) > min(self.chosen[self.order[depth - 1].key])]
        if not len(options):
            return
        add_intra, add_traffic = self._score(x, options)
        rest_intra = sum(self.root_intra[depth + 1 :])
        order = np.lexsort((add_traffic, add_intra))
        for i in order.tolist():
            new_intra = intra + int(add_intra[i])
            new_traffic = traffic + float(add_traffic[i])
            if new_intra + rest_intra > self.best[0]:
                break  # sorted by intra: the rest are no better
            ids = options[i].tolist()
            self._place(x, ids)
            bound = self._traffic_bound(depth + 1)
            if self._better(new_intra + rest_intra, new_traffic + bound):
                self.chosen[x.key] = ids
                self._dfs(depth + 1, new_intra, new_traffic)
                del self.chosen[x.key]
            self._unplace(x, ids)
            if self.p.scored > self.budget:
                return

    def _place(self, x: universe.Replica, ids: list[int]) -> None:
        self._shift(x, ids, 1)
        self.p.placed[x.key] = self.p.placed[x.key] + ids
        self.p.role_placed[x.role] = self.p.role_placed[x.role] + ids

    def _unplace(self, x: universe.Replica, ids: list[int]) -> None:
        self._shift(x, ids, -1)
        self.p.placed[x.key] = self.p.placed[x.key][: -len(ids)]
        self.p.role_placed[x.role] = self.p.role_placed[x.role][: -len(ids)]

    def _shift(self, x: universe.Replica, ids: list[int], sign: int) -> None:
        """Take (``sign`` 1) or give back (-1) the GPUs ``ids`` and their pods' headroom."""
        demand = self.state.demand[x.role].tolist()
        for i in ids:
            row, gpu = self.p.gpu_of[i]
            self.p.free[row] ^= 1 << gpu
            self.p.on_row[row] += sign
        for row in {self.p.gpu_of[i][0] for i in ids}:
            pods = sign * (sum(1 for i in ids if self.p.gpu_of[i][0] == row) // x.q)
            h = self.p.head[row]
            for column, need in enumerate(demand):
                h[column] -= need * pods
        self.free_u[ids] = sign < 0
        if x.role in self.reach:
            self.reach[x.role] = self.reach[x.role] + sign * self.p.dist[:, ids].sum(axis=1)

"""shorthop's placer: gang placement of an InferenceDeployment that minimises hop distance.

Algorithm overview
------------------
Phase 1 (scope). If the deployment has a required or preferred scope, candidate domains of that
tier with enough free GPUs are tried, best fit first (fewest free GPUs that suffice); the best
feasible plan among them wins. A preferred scope that fits nowhere falls back to the whole cluster.

Phase 2 (greedy, one replica at a time, largest replicas first). For a replica of ``P`` pods of
``q`` GPUs:

  a. *capacity*: how many such pods every usable node can take (free GPUs, CPU, memory, pod
     count, taints vs tolerations), rolled up the domain tree with numpy;
  b. *single-node candidates*: every node that fits all ``P`` pods is scored at once: the
     cheapest GPU subset from precomputed per-class tables (``subsets``), the traffic cost to the
     replica's already placed peers (vectorised over candidates), and the GPUs it would leave
     free (best fit);
  c. *multi-node candidates*: for NVLink domains and then network levels, finest first, domains
     that fit are filled Kueue-style (fewest children, largest first; the last child best fit,
     nearest to peers) and scored exactly; coarser levels are skipped once their lower bound
     exceeds the best cost found;
  d. the lexicographically best candidate (intra-replica cost, traffic cost, leftover GPUs,
     vertex id) is committed.

Phase 3 (refinement). Local search: each replica in turn is lifted out and placed again now that
all its peers are known; the move is kept when the (intra, traffic) cost falls. At most
``REFINE_PASSES`` passes.

Phase 4 (verdict). Either every pod is placed (gang) and the plan is scored by ``objective``, or
the plan is infeasible with a reason naming the field and the numbers.

Deterministic: no randomness, and ties always break by vertex/row id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import objective, subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.plan import Assignment, Cost, Plan, PodKey, Reason
from shorthop.placement.request import Request, RoleRequest, peer_pairs
from shorthop.placement.snapshot import ClusterSnapshot, bits
from shorthop.topology.index import TopologyIndex

REFINE_PASSES = 2
REFINE_PATIENCE = 4  # stop a pass after this many moves in a row that did not help
EVALUATE_ALL_BELOW = 24  # evaluate every feasible domain of a layer when there are this few
BEST_FIT_CANDIDATES = 3
AFFINITY_CANDIDATES = 3
TIE_LIMIT = 64  # single-node candidates scored for traffic/look-ahead after the intra cut
FIXED_AFFINITY = 1e6  # a replica's own surviving pods attract far more than peers do

Fixed = Mapping[PodKey, tuple[int, Sequence[int]]]  # pod -> (row, GPU indices)


@dataclass
class _Replica:
    role: int
    rid: int
    pods: int
    fixed: list[tuple[int, int, int]] = field(default_factory=list)  # (pod, row, mask)
    placed: list[tuple[int, int, int]] = field(default_factory=list)

    def missing(self) -> list[int]:
        have = {p for p, _, _ in self.fixed} | {p for p, _, _ in self.placed}
        return [p for p in range(self.pods) if p not in have]

    def parts(self) -> list[tuple[int, int, int]]:
        return self.fixed + self.placed


@dataclass(frozen=True)
class _Candidate:
    intra: int
    traffic: float
    frag: float
    tie: int
    rows: tuple[tuple[int, int], ...]  # (row, GPU mask)
    lookahead: float = 0.0  # estimated traffic to peers not placed yet (see _lookahead_many)

    def key(self) -> tuple[int, float, float, float, int]:
        return (self.intra, round(self.traffic, 6), self.lookahead, self.frag, self.tie)


class _Failure(Exception):
    def __init__(self, reason: Reason) -> None:
        self.reason = reason


def _gpu_set_of(parts: Sequence[tuple[int, int]]) -> objective.GpuSet:
    merged: dict[int, int] = {}
    for row, mask in parts:
        merged[row] = merged.get(row, 0) | mask
    return {row: np.array(bits(mask), dtype=np.intp) for row, mask in merged.items()}


class _Solve:
    """One planning run; owns its scratch arrays."""

    def __init__(
        self,
        snapshot: ClusterSnapshot,
        request: Request,
        allowed: NDArray[np.bool_] | None,
        fixed: Fixed,
        mode: str = "cost",
    ) -> None:
        self.mode = (
            mode  # "cost", or on failure "pack" (best fit first), then "request" (first fit)
        )
        self.snapshot = snapshot
        self.index: TopologyIndex = snapshot.index
        self.tree = domain_tree.tree(self.index)
        self.request = request
        self.free = snapshot.free.copy()
        self.count = snapshot.free_counts.copy()
        self.headroom = snapshot.headroom.copy()
        rows = len(self.index.names)
        allowed = np.ones(rows, dtype=np.bool_) if allowed is None else allowed
        self.usable = [snapshot.usable_rows(role.tolerations) & allowed for role in request.roles]
        self._usable_any = np.logical_or.reduce(self.usable) if self.usable else allowed & False
        self._fit: dict[int, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}
        alive_rows = np.flatnonzero(self.index.alive)
        self.class_rows = [
            alive_rows[self.index.class_of[alive_rows] == c] for c in range(len(self.index.classes))
        ]
        self._rooms: dict[int, NDArray[np.int64]] = {}
        self._cursor: dict[int, int] = {}
        self.classes = self.index.class_of
        self.min_up = min((int(c.up.min()) for c in self.index.classes), default=0)
        self.replicas = self._replicas(fixed)
        self.peers = self._peers()

    # -- set-up ------------------------------------------------------------------------------

    def _replicas(self, fixed: Fixed) -> dict[tuple[int, int], _Replica]:
        out: dict[tuple[int, int], _Replica] = {}
        names = [r.name for r in self.request.roles]
        by_role: dict[int, dict[int, list[tuple[int, int, int]]]] = {}
        for key, (row, gpus) in fixed.items():
            if key.role not in names:
                continue
            ri = names.index(key.role)
            mask = sum(1 << g for g in gpus)
            by_role.setdefault(ri, {}).setdefault(key.replica, []).append((key.pod, row, mask))
        for ri, role in enumerate(self.request.roles):
            existing = by_role.get(ri, {})
            ids = sorted(existing)[: role.replicas]
            next_id = 0
            while len(ids) < role.replicas:
                if next_id not in existing:
                    ids.append(next_id)
                next_id += 1
            for rid in sorted(ids):
                parts = [p for p in existing.get(rid, []) if p[0] < role.pods_per_replica]
                out[(ri, rid)] = _Replica(ri, rid, role.pods_per_replica, fixed=parts)
        return out

    def _peers(self) -> dict[tuple[int, int], list[tuple[tuple[int, int], float]]]:
        peers: dict[tuple[int, int], list[tuple[tuple[int, int], float]]] = {
            k: [] for k in self.replicas
        }
        for edge in self.request.traffic:
            s_ids = sorted(rid for ri, rid in self.replicas if ri == edge.source)
            t_ids = sorted(rid for ri, rid in self.replicas if ri == edge.target)
            for i, j in peer_pairs(len(s_ids), len(t_ids)):
                a, b = (edge.source, s_ids[i]), (edge.target, t_ids[j])
                peers[a].append((b, edge.weight))
                peers[b].append((a, edge.weight))
        return peers

    # -- phase 2a: capacity ------------------------------------------------------------------

    def _fit_rows(self, role_index: int, rows: NDArray[np.intp] | slice) -> NDArray[np.int64]:
        role = self.request.roles[role_index]
        head = self.headroom[rows]
        fit = self.count[rows] // role.pod_gpus
        if role.cpu_millis > 0:
            fit = np.minimum(fit, head[:, 0] // role.cpu_millis)
        if role.memory_bytes > 0:
            fit = np.minimum(fit, head[:, 1] // role.memory_bytes)
        fit = np.minimum(fit, head[:, 2])
        out: NDArray[np.int64] = np.where(self.usable[role_index][rows], np.maximum(fit, 0), 0)
        return out.astype(np.int64)

    def pods_fit(self, role_index: int) -> NDArray[np.int64]:
        """How many pods of this role every node can take now (cached, kept up to date by
        :meth:`_touch`; callers must not modify it)."""
        if role_index not in self._fit:
            fit = self._fit_rows(role_index, slice(None))
            self._fit[role_index] = (fit, self.tree.rollup(fit))
        return self._fit[role_index][0]

    def capacity(self, role_index: int) -> NDArray[np.int64]:
        """:meth:`pods_fit` summed under every vertex of the domain tree."""
        self.pods_fit(role_index)
        return self._fit[role_index][1]

    def _room(self, q: int) -> NDArray[np.int64]:
        """GPUs under every tree vertex usable by pods of ``q`` GPUs (whole pods only)."""
        if q not in self._rooms:
            self._rooms[q] = self.tree.rollup(np.where(self._usable_any, (self.count // q) * q, 0))
        return self._rooms[q]

    def _propagate(
        self, totals: NDArray[np.int64], rows: NDArray[np.intp], delta: NDArray[np.int64]
    ) -> None:
        # A handful of rows change per commit: plain loops beat numpy's fancy indexing here.
        ancestors = self.tree.ancestor_at
        for row, d in zip(rows.tolist(), delta.tolist(), strict=True):
            if d:
                for v in ancestors[:, row].tolist():
                    if v >= 0:
                        totals[v] += d

    def _touch(self, rows: Sequence[int]) -> None:
        """Bring the cached capacities up to date after GPUs on ``rows`` changed hands."""
        idx = np.array(sorted(set(rows)), dtype=np.intp)
        for ri, (fit, cap) in self._fit.items():
            new = self._fit_rows(ri, idx)
            delta = new - fit[idx]
            fit[idx] = new
            self._propagate(cap, idx, delta)
        for q, room in self._rooms.items():
            new = np.where(self._usable_any[idx], (self.count[idx] // q) * q, 0)
            self._propagate(room, idx, new - room[idx])

    # -- helpers -----------------------------------------------------------------------------

    def _key(self, cand: _Candidate) -> tuple[float, ...]:
        """Candidate order: cost first, or (when packing to find a feasible plan) best fit first."""
        if self.mode == "pack":
            return (cand.frag, cand.intra, round(cand.traffic, 6), cand.lookahead, cand.tie)
        return cand.key()

    def _placed_set(self, key: tuple[int, int]) -> objective.GpuSet:
        r = self.replicas[key]
        return _gpu_set_of([(row, mask) for _, row, mask in r.parts()])

    def _peer_sets(self, key: tuple[int, int]) -> list[tuple[objective.GpuSet, float]]:
        out = []
        for peer, weight in self.peers[key]:
            s = self._placed_set(peer)
            if s:
                out.append((s, weight))
        return out

    def _affinity(
        self, key: tuple[int, int], peer_sets: list[tuple[objective.GpuSet, float]]
    ) -> NDArray[np.float64]:
        leaf = np.zeros(len(self.index.names), dtype=np.float64)
        for s, weight in peer_sets:
            for row, gpus in s.items():
                leaf[row] += weight * len(gpus)
        for _, row, mask in self.replicas[key].fixed:
            leaf[row] += FIXED_AFFINITY * mask.bit_count()
        return (
            self.tree.rollup(leaf.astype(np.int64)).astype(np.float64)
            if leaf.any()
            else np.zeros(self.tree.vertices)
        )

    def _score(
        self,
        key: tuple[int, int],
        parts: Sequence[tuple[int, int]],
        peer_sets: list[tuple[objective.GpuSet, float]],
        tie: int,
    ) -> _Candidate:
        r = self.replicas[key]
        merged: dict[int, int] = {}
        for row, mask in [*((row, mask) for _, row, mask in r.fixed), *parts]:
            merged[row] = merged.get(row, 0) | mask
        mine = {row: np.array(bits(mask), dtype=np.intp) for row, mask in merged.items()}
        intra = 0
        rows = sorted(merged)
        for i, a in enumerate(rows):
            table = subsets.table(self.index.node_class(a))
            intra += (
                int(table.cost[merged[a]])
                if table.exact
                else objective.internal(self.index, a, mine[a])
            )
            for b in rows[i + 1 :]:
                intra += self.index.cross_cost(a, mine[a], b, mine[b])
        traffic = sum(w * objective.between_cost(self.index, mine, s) for s, w in peer_sets)
        frag = float(sum((int(self.free[row]) & ~mask).bit_count() for row, mask in parts))
        need = self._unplaced_peer_gpus(key)
        ahead = round(self._lookahead(parts, need, self._room(need[1])), 6) if need[0] else 0.0
        return _Candidate(intra, traffic, frag, tie, tuple(parts), ahead)

    def _unplaced_peer_gpus(self, key: tuple[int, int]) -> tuple[int, int]:
        """(GPUs, pod size) the peers of ``key`` that are not placed yet will need."""
        need, q = 0, 0
        for peer, _ in self.peers[key]:
            r = self.replicas[peer]
            if not r.parts():
                role = self.request.roles[r.role]
                need += role.gpus_per_replica
                q = role.pod_gpus if q == 0 else min(q, role.pod_gpus)
        return need, max(q, 1)

    def _layer_distance(self, layer: int) -> int:
        """A representative GPU-pair distance between different nodes joined at ``layer``."""
        if layer <= domain_tree.CLIQUE_LAYER:
            return 2 * self.index.config.weights.nvlink_domain
        level = self.index.levels - 1 - (layer - 2)
        return 2 * self.min_up + 2 * int(self.index.h[level + 1])

    def _lookahead_many(
        self,
        cand: NDArray[np.intp],
        masks: NDArray[np.int64],
        need: tuple[int, int],
        room: NDArray[np.int64],
        table: subsets.SubsetTable | None,
    ) -> NDArray[np.float64]:
        """Per candidate (row, subset): an estimate of the traffic to the ``need`` GPUs of peers not
        placed yet, if they land as close as the room left around the candidate allows: on the
        same node (distance from the subset to the best remaining GPU), else in the closest
        domain with room (a representative distance for its layer)."""
        gpus, q = need
        if gpus <= 0:
            return np.zeros(len(cand), dtype=np.float64)
        k = np.array([int(m).bit_count() for m in masks.tolist()], dtype=np.int64)
        layers = self.tree.ancestor_at.shape[0]
        score = np.zeros(len(cand), dtype=np.float64)
        before = (self.count[cand] // q) * q
        leftover = (np.maximum(self.count[cand] - k, 0) // q) * q
        taken = before - leftover  # whole-pod room the candidate itself uses up
        covered = np.minimum(gpus, leftover)
        if table is not None and table.exact:
            free = self.free[cand].astype(np.int64) & ~masks
            per_gpu = table.to_gpu[masks].astype(np.float64)
            bit = (free[:, None] >> np.arange(table.gpus)[None, :]) & 1
            best = np.where(bit == 1, per_gpu, np.inf).min(axis=1)
            best = np.where(np.isfinite(best), best, 0.0)
            score += best * covered
        else:
            score += covered * k * self._layer_distance(domain_tree.CLIQUE_LAYER)
        for layer in range(1, layers):
            anc = self.tree.ancestor_at[layer, cand]
            avail = np.where(anc >= 0, room[np.maximum(anc, 0)] - taken, covered)
            reach = np.minimum(gpus, np.maximum(avail, covered))
            score += (reach - covered) * k * self._layer_distance(layer)
            covered = reach
        total: NDArray[np.float64] = (
            score + (gpus - covered) * k * self._layer_distance(layers - 1) * 2
        )
        return total

    def _lookahead(
        self, parts: Sequence[tuple[int, int]], need: tuple[int, int], room: NDArray[np.int64]
    ) -> float:
        """:meth:`_lookahead_many` for one multi-node candidate (room taken on all its rows)."""
        gpus, q = need
        k = sum(mask.bit_count() for _, mask in parts)
        taken: dict[int, int] = {}
        for row, mask in parts:
            before = int(self.count[row]) // q * q
            after = max(int(self.count[row]) - mask.bit_count(), 0) // q * q
            taken[row] = before - after
        leftover = max(int(self.count[row]) // q * q - taken[row] for row, _ in parts)
        covered = min(gpus, max(leftover, 0))
        score = covered * k * self._layer_distance(domain_tree.CLIQUE_LAYER)
        layers = self.tree.ancestor_at.shape[0]
        for layer in range(1, layers):
            under: dict[int, int] = {}
            for row, amount in taken.items():
                anc = int(self.tree.ancestor_at[layer, row])
                if anc >= 0:
                    under[anc] = under.get(anc, 0) + amount
            avail = max((int(room[a]) - t for a, t in under.items()), default=covered)
            reach = min(gpus, max(avail, covered))
            score += (reach - covered) * k * self._layer_distance(layer)
            covered = reach
        return float(score + (gpus - covered) * k * self._layer_distance(layers - 1) * 2)

    # -- phase 2b: single-node candidates (vectorised) --------------------------------------

    def _single_node(
        self,
        key: tuple[int, int],
        pods: int,
        fit: NDArray[np.int64],
        peer_sets: list[tuple[objective.GpuSet, float]],
        *,
        nvlink_only: bool = False,
    ) -> _Candidate | None:
        r = self.replicas[key]
        k = pods * self.request.roles[r.role].pod_gpus
        rows = np.flatnonzero(fit >= pods)
        if rows.size == 0:
            return None
        if r.fixed:
            return self._near_fixed(key, rows, pods, peer_sets, nvlink_only)
        need = self._unplaced_peer_gpus(key)
        room = self._room(need[1]) if need[0] else np.zeros(0, dtype=np.int64)
        best: _Candidate | None = None
        prox: NDArray[np.int64] | None = None
        if peer_sets and rows.size > TIE_LIMIT:
            prox = np.full(len(fit), self.tree.ancestor_at.shape[0], dtype=np.int64)
            prox[rows] = self._proximity(rows, peer_sets)
        for cls_id, class_rows in enumerate(self.class_rows):
            if class_rows.size == 0:
                continue
            cls = self.index.classes[cls_id]
            cand = class_rows[fit[class_rows] >= pods]
            if cand.size == 0:
                continue
            table = subsets.table(cls, nvlink_only)
            if table.exact:
                masks, intra = table.pick_many(self.free[cand].astype(np.int64), k)
            else:
                picks = [table.pick(int(self.free[row]), k) for row in cand]
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
                # Equally near: traffic differs only by per-GPU uplinks; keep the best fits.
                keep = np.lexsort((cand, self.count[cand]))[:TIE_LIMIT]
                cand, masks, intra = cand[keep], masks[keep], intra[keep]
            traffic = np.round(self._traffic_many(cand, masks, peer_sets), 6)
            ahead = np.round(self._lookahead_many(cand, masks, need, room, table), 6)
            frag = (self.count[cand] - k).astype(np.float64)
            keys = (
                (cand, frag, ahead, traffic, intra)
                if self.mode != "pack"
                else (cand, ahead, traffic, intra, frag)
            )
            order = np.lexsort(keys)
            i = int(order[0])
            found = _Candidate(
                int(intra[i]),
                float(traffic[i]),
                float(frag[i]),
                int(cand[i]),
                ((int(cand[i]), int(masks[i])),),
                float(ahead[i]),
            )
            if best is None or self._key(found) < self._key(best):
                best = found
        if best is None:
            return None
        row = best.rows[0][0]
        refined = self._refine_subset(key, row, k, best.intra, peer_sets, need, room, nvlink_only)
        return refined if refined is not None else best

    def _refine_subset(
        self,
        key: tuple[int, int],
        row: int,
        k: int,
        intra: int,
        peer_sets: list[tuple[objective.GpuSet, float]],
        need: tuple[int, int],
        room: NDArray[np.int64],
        nvlink_only: bool,
    ) -> _Candidate | None:
        """On the chosen node, among the subsets as cheap inside as the best, take the one nearest
        to the peers (placed, or still to come). Only where it can matter: asymmetric nodes with
        peers on them or room left for peers."""
        table = subsets.table(self.index.node_class(row), nvlink_only)
        free = int(self.free[row])
        hosts_peer = any(row in s for s, _ in peer_sets)
        if not table.exact or (not hosts_peer and not (need[0] and free.bit_count() > k)):
            return None
        options = [m for m in _submasks(free, k) if int(table.cost[m]) == intra]
        if len(options) <= 1:
            return None
        scored = [self._score(key, [(row, m)], peer_sets, tie=row) for m in options]
        return min(scored, key=lambda c: (self._key(c), c.rows))

    def _near_fixed(
        self,
        key: tuple[int, int],
        rows: NDArray[np.intp],
        pods: int,
        peer_sets: list[tuple[objective.GpuSet, float]],
        nvlink_only: bool,
    ) -> _Candidate | None:
        """Single-node candidates for a replica with surviving pods: the nodes that share the
        deepest domain with them, scored exactly."""
        anchor = self.replicas[key].fixed[0][1]
        depth = np.count_nonzero(
            (self.index.dom[rows] == self.index.dom[anchor]) & (self.index.dom[rows] >= 0), axis=1
        )
        clique = self.index.clique_of[anchor]
        same = (self.index.clique_of[rows] == clique) & (clique >= 0)
        closeness = (
            depth + same * (self.index.levels + 1) + (rows == anchor) * (self.index.levels + 2)
        )
        nearest = rows[np.lexsort((rows, -closeness))][:64]
        q = self.request.roles[self.replicas[key].role].pod_gpus
        options = []
        for row in nearest.tolist():
            pick = subsets.table(self.index.node_class(row), nvlink_only).pick(
                int(self.free[row]), pods * q
            )
            if pick is not None:
                options.append([(row, pick[0])])
        return self._best_of(options, peer_sets, key)

    def _proximity(
        self, rows: NDArray[np.intp], peer_sets: list[tuple[objective.GpuSet, float]]
    ) -> NDArray[np.int64]:
        """Per row: the finest layer at which it shares a domain with a placed peer (node 0,
        NVLink domain 1, ...). Traffic only grows with the tier, so among equally cheap
        candidates the farther ones cannot win on traffic."""
        layers = self.tree.ancestor_at.shape[0]
        prox = np.full(len(rows), layers, dtype=np.int64)
        peer_rows = sorted({row for s, _ in peer_sets for row in s})
        for layer in range(layers - 1, -1, -1):
            targets = {int(a) for a in self.tree.ancestor_at[layer, peer_rows] if a >= 0}
            if not targets:
                continue
            mine = self.tree.ancestor_at[layer][rows]
            hit = mine == targets.pop()
            for t in targets:
                hit |= mine == t
            prox[hit] = layer
        return prox

    def _traffic_many(
        self,
        cand: NDArray[np.intp],
        masks: NDArray[np.int64],
        peer_sets: list[tuple[objective.GpuSet, float]],
    ) -> NDArray[np.float64]:
        """Traffic cost of putting the subset ``masks[i]`` on ``cand[i]``, for all i at once
        (all candidates of one node class)."""
        total = np.zeros(len(cand), dtype=np.float64)
        if not peer_sets:
            return total
        index = self.index
        node_class = index.classes[int(self.classes[cand[0]])]
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

    # -- phase 2c: multi-node candidates ----------------------------------------------------

    def _internal_many(
        self, kids: NDArray[np.int64], pods: NDArray[np.int64], q: int
    ) -> NDArray[np.int64]:
        """Cheapest internal cost of ``pods * q`` GPUs on each child that is a node (0 for
        domains, INF where it does not fit), vectorised per node class."""
        out = np.zeros(len(kids), dtype=np.int64)
        rows = len(self.index.names)
        is_row = kids < rows
        if not is_row.any():
            return out
        where = np.flatnonzero(is_row)
        row_ids = kids[where]
        classes = self.classes[row_ids]
        for cls_id in np.unique(classes):
            sel = where[classes == cls_id]
            table = subsets.table(self.index.classes[int(cls_id)])
            k = np.minimum(pods[sel] * q, table.gpus + 1)
            if table.exact:
                ok = k <= table.gpus
                costs = np.full(len(sel), subsets.INF, dtype=np.int64)
                costs[ok] = table.best_cost[k[ok], self.free[kids[sel][ok]].astype(np.int64)]
                out[sel] = costs
            else:
                for i, u in zip(sel.tolist(), kids[sel].tolist(), strict=True):
                    pick = table.pick(int(self.free[u]), int(pods[i]) * q)
                    out[i] = pick[1] if pick else subsets.INF
        return out

    def _fill(
        self,
        v: int,
        pods: int,
        cap: NDArray[np.int64],
        fit: NDArray[np.int64],
        aff: NDArray[np.float64],
        q: int,
    ) -> list[tuple[int, int]]:
        """Kueue-style fill of domain ``v`` with ``pods`` pods: fewest children, largest capacity
        first (then cheaper inside, nearer to peers, lower id); the last child is the best fit
        for what is left; recurse into each child."""
        if v < len(self.index.names):
            return [(v, min(pods, int(fit[v])))]
        kids = self.tree.children_of(v)
        kids = kids[cap[kids] > 0]
        kcap = cap[kids]
        order = np.lexsort((kids, -aff[kids], self._internal_many(kids, kcap, q), -kcap))
        ordered, caps = kids[order], kcap[order]
        covered = np.cumsum(caps)
        if covered.size == 0 or covered[-1] < pods:
            return []
        count = int(np.searchsorted(covered, pods) + 1)
        before = int(covered[count - 2]) if count > 1 else 0
        need = pods - before
        pool = np.concatenate([ordered[count - 1 :]])
        pool = pool[cap[pool] >= need]
        pool_cost = self._internal_many(pool, np.full(len(pool), need, dtype=np.int64), q)
        last = int(pool[np.lexsort((pool, cap[pool], -aff[pool], pool_cost))[0]])
        taken = [*ordered[: count - 1].tolist(), last]
        out: list[tuple[int, int]] = []
        remaining = pods
        for u in taken:
            share = min(remaining, int(cap[u]))
            out += self._fill(u, share, cap, fit, aff, q)
            remaining -= share
        return out

    def _fill_rows(
        self, key: tuple[int, int], rows_pods: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        q = self.request.roles[self.replicas[key].role].pod_gpus
        parts = []
        for row, n in rows_pods:
            pick = subsets.table(self.index.node_class(row)).pick(int(self.free[row]), n * q)
            if pick is None:
                return []
            parts.append((row, pick[0]))
        return parts

    def _best_of(
        self,
        options: list[list[tuple[int, int]]],
        peer_sets: list[tuple[objective.GpuSet, float]],
        key: tuple[int, int],
    ) -> _Candidate | None:
        best = None
        for parts in options:
            if not parts:
                continue
            cand = self._score(key, parts, peer_sets, tie=min(row for row, _ in parts))
            if best is None or self._key(cand) < self._key(best):
                best = cand
        return best

    def _lower_bound(self, layer: int, pods: int, q: int, max_fit: int) -> int:
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
        level = self.index.levels - 1 - (layer - 2)
        distance = (
            2 * self.min_up + 2 * int(self.index.h[level + 1])
            if level >= 0
            else 2 * self.min_up + 2 * int(self.index.h[0])
        )
        return cross_pairs * distance

    def _scope_anchor(self, key: tuple[int, int], layer: int) -> int | None:
        """The one domain at ``layer`` that holds all of a replica's surviving pods, if any."""
        rows = sorted({row for _, row, _ in self.replicas[key].fixed})
        holders = [({row} | set(self.tree.ancestors(row))) for row in rows]
        common = set.intersection(*holders)
        at_layer = [v for v in common if int(self.tree.layer[v]) == layer]
        return at_layer[0] if at_layer else None

    def _first_fit(self, key: tuple[int, int]) -> _Candidate:
        """Pod by pod, the first node (row order) with room; the lowest free GPUs (first-fit).
        Capacity only shrinks while first-fit runs, so a cursor per role skips the full rows."""
        r = self.replicas[key]
        q = self.request.roles[r.role].pod_gpus
        fit = self.pods_fit(r.role)
        cursor = self._cursor.get(r.role, 0)
        parts: dict[int, int] = {}
        taken: dict[int, int] = {}
        for _ in r.missing():
            while cursor < len(fit) and fit[cursor] - taken.get(cursor, 0) <= 0:
                cursor += 1
            if cursor == len(fit):
                raise _Failure(self._why(key, fit, None))
            row = cursor
            free = int(self.free[row]) & ~parts.get(row, 0)
            parts[row] = parts.get(row, 0) | sum(1 << g for g in bits(free)[:q])
            taken[row] = taken.get(row, 0) + 1
        self._cursor[r.role] = cursor
        # First-fit is never compared candidate by candidate; only the finished plan is scored.
        return _Candidate(0, 0.0, 0.0, min(parts), tuple(sorted(parts.items())))

    def place(self, key: tuple[int, int]) -> _Candidate:
        if (
            self.mode == "request"
            and self.request.roles[self.replicas[key].role].replica_scope is None
        ):
            return self._first_fit(key)
        r = self.replicas[key]
        role = self.request.roles[r.role]
        pods = len(r.missing())
        q = role.pod_gpus
        fit = self.pods_fit(r.role)
        cap = self.capacity(r.role)
        peer_sets = self._peer_sets(key)
        scoped = role.replica_scope is not None
        max_layer = int(self.tree.layer[self.tree.root])
        if role.replica_scope is not None:
            max_layer = self.tree.layer_of_tier(role.replica_scope)
        if r.fixed and scoped:
            anchor = self._scope_anchor(key, max_layer)
            inside = np.zeros(len(fit), dtype=np.bool_)
            if anchor is not None:
                inside[_rows_under(self.tree, anchor)] = True
            fit = np.where(inside, fit, 0)
            cap = self.tree.rollup(fit)
        # phase 2b
        best = self._single_node(key, pods, fit, peer_sets, nvlink_only=role.replica_scope == 0)
        scope_cap = int(cap[np.flatnonzero(self.tree.layer == max_layer)].max(initial=0))
        if pods > 1 and max_layer > domain_tree.NODE_LAYER:
            # phase 2c
            aff = self._affinity(key, peer_sets)
            need = self._unplaced_peer_gpus(key)
            max_fit = int(fit.max(initial=0))
            for layer in range(domain_tree.CLIQUE_LAYER, max_layer + 1):
                if best is not None and best.intra < self._lower_bound(layer, pods, q, max_fit):
                    break
                verts = np.flatnonzero((self.tree.layer == layer) & (cap >= pods))
                if verts.size > EVALUATE_ALL_BELOW:
                    picks = []
                    if need[0]:
                        # Best fit for the replica together with its peers still to come.
                        room = self._room(need[1])
                        group = verts[room[verts] >= pods * q + need[0]]
                        picks.append(group[np.lexsort((group, room[group]))][:BEST_FIT_CANDIDATES])
                    if not picks or not picks[0].size:
                        picks.append(verts[np.lexsort((verts, cap[verts]))][:BEST_FIT_CANDIDATES])
                    if aff.any():
                        picks.append(verts[np.lexsort((verts, -aff[verts]))][:AFFINITY_CANDIDATES])
                    verts = np.unique(np.concatenate(picks))
                for v in verts.tolist():
                    rows_pods = self._fill(v, pods, cap, fit, aff, q)
                    parts = self._fill_rows(key, rows_pods) if rows_pods else []
                    if not parts:
                        continue
                    cand = self._score(key, parts, peer_sets, tie=v)
                    if best is None or self._key(cand) < self._key(best):
                        best = cand
        if best is None:
            raise _Failure(self._why(key, fit, scope_cap if scoped else None))
        return best

    # -- commit / lift -----------------------------------------------------------------------

    def commit(self, key: tuple[int, int], cand: _Candidate) -> None:
        r = self.replicas[key]
        role = self.request.roles[r.role]
        q = role.pod_gpus
        missing = iter(r.missing())
        for row, mask in cand.rows:
            gpus = bits(mask)
            for start in range(0, len(gpus), q):
                pod_mask = sum(1 << g for g in gpus[start : start + q])
                r.placed.append((next(missing), row, pod_mask))
            self.free[row] = np.uint64(int(self.free[row]) & ~mask)
            self.count[row] -= len(gpus)
            pods_here = len(gpus) // q
            self.headroom[row] -= (
                role.cpu_millis * pods_here,
                role.memory_bytes * pods_here,
                pods_here,
            )
        self._touch([row for row, _ in cand.rows])

    def lift(self, key: tuple[int, int]) -> list[tuple[int, int, int]]:
        r = self.replicas[key]
        role = self.request.roles[r.role]
        old = r.placed
        r.placed = []
        for _, row, mask in old:
            self.free[row] = np.uint64(int(self.free[row]) | mask)
            self.count[row] += mask.bit_count()
            self.headroom[row] += (role.cpu_millis, role.memory_bytes, 1)
        self._touch([row for _, row, _ in old])
        return old

    def restore(self, key: tuple[int, int], old: list[tuple[int, int, int]]) -> None:
        r = self.replicas[key]
        role = self.request.roles[r.role]
        r.placed = list(old)
        for _, row, mask in old:
            self.free[row] = np.uint64(int(self.free[row]) & ~mask)
            self.count[row] -= mask.bit_count()
            self.headroom[row] -= (role.cpu_millis, role.memory_bytes, 1)
        self._touch([row for _, row, _ in old])

    def replica_cost(self, key: tuple[int, int]) -> tuple[int, float]:
        mine = self._placed_set(key)
        intra = objective.intra_cost(self.index, mine)
        traffic = sum(
            w * objective.between_cost(self.index, mine, s) for s, w in self._peer_sets(key)
        )
        return intra, round(traffic, 6)

    # -- phases 2 and 3 ----------------------------------------------------------------------

    def order(self) -> list[tuple[int, int]]:
        roles = self.request.roles
        if self.mode == "request":
            return sorted(self.replicas)
        if self.mode == "pack":
            return sorted(
                self.replicas,
                key=lambda k: (-roles[k[0]].pod_gpus, -roles[k[0]].gpus_per_replica, k),
            )
        return sorted(
            self.replicas,
            key=lambda k: (-roles[k[0]].gpus_per_replica, -roles[k[0]].pod_gpus, k),
        )

    def _intra_of(self, key: tuple[int, int]) -> int:
        merged: dict[int, int] = {}
        for _, row, mask in self.replicas[key].parts():
            merged[row] = merged.get(row, 0) | mask
        rows = sorted(merged)
        gpus = {row: np.array(bits(merged[row]), dtype=np.intp) for row in rows}
        total = 0
        for i, a in enumerate(rows):
            table = subsets.table(self.index.node_class(a))
            total += (
                int(table.cost[merged[a]])
                if table.exact
                else objective.internal(self.index, a, gpus[a])
            )
            for b in rows[i + 1 :]:
                total += self.index.cross_cost(a, gpus[a], b, gpus[b])
        return total

    def group_cost(self, keys: Sequence[tuple[int, int]]) -> tuple[int, float]:
        """Intra cost of ``keys`` plus the traffic of every peer pair touching them."""
        intra = sum(self._intra_of(k) for k in keys)
        seen: set[tuple[tuple[int, int], tuple[int, int]]] = set()
        traffic = 0.0
        sets: dict[tuple[int, int], objective.GpuSet] = {}
        for k in keys:
            for peer, weight in self.peers[k]:
                pair = (min(k, peer), max(k, peer))
                if pair in seen:
                    continue
                seen.add(pair)
                a = sets.setdefault(k, self._placed_set(k))
                b = sets.setdefault(peer, self._placed_set(peer))
                traffic += weight * objective.between_cost(self.index, a, b)
        return intra, round(traffic, 6)

    def _close_enough(self, key: tuple[int, int]) -> bool:
        """True when every GPU pair between ``key`` and its peers is already an NVLink pair
        (same node over NVLink, or the same NVLink domain): no move can improve its traffic."""
        mine = self._placed_set(key)
        for peer, _ in self.peers[key]:
            counts: dict[int, int] = {}
            objective.tier_counts(self.index, mine, self._placed_set(peer), counts)
            if any(n and tier not in (0, 2) for tier, n in counts.items()):
                return False
        return True

    def _move(self, keys: list[tuple[int, int]]) -> bool:
        """Lift ``keys`` and place them again in that order; keep the result if it is cheaper."""
        before = self.group_cost(keys)
        olds = [self.lift(k) for k in keys]
        placed: list[tuple[int, int]] = []
        try:
            for k in keys:
                self.commit(k, self.place(k))
                placed.append(k)
        except _Failure:
            pass
        if len(placed) == len(keys) and self.group_cost(keys) < before:
            return True
        for k in placed:
            self.lift(k)
        for k, old in zip(keys, olds, strict=True):
            self.restore(k, old)
        return False

    def greedy(self) -> None:
        """Phase 2: place every replica that misses pods, in :meth:`order`."""
        for key in self.order():
            if self.replicas[key].missing():
                self.commit(key, self.place(key))

    def refine(self) -> None:
        """Phase 3: local search (single and group moves), in "cost" mode."""
        self.mode = "cost"
        order = self.order()
        for _ in range(REFINE_PASSES):
            improved = False
            misses = 0
            moves: list[list[tuple[int, int]]] = []
            # phase 3a: one replica at a time, now that its peers are known
            moves += [[key] for key in order if self.peers[key]]
            # phase 3b: a replica with all its peers, the hub first
            moves += [[key] + [p for p, _ in self.peers[key]] for key in order if self.peers[key]]
            for keys in moves:
                if misses >= REFINE_PATIENCE and len(moves) > 4 * REFINE_PATIENCE:
                    break  # a large, crowded deployment: more moves rarely help and cost time
                if not all(self.replicas[k].placed for k in keys) or self._close_enough(keys[0]):
                    continue
                if self._move(keys):
                    improved, misses = True, 0
                else:
                    misses += 1
            if not improved:
                break

    def total_cost(self) -> tuple[int, float]:
        return self.group_cost(list(self.replicas))

    # -- explanations ------------------------------------------------------------------------

    def _why(self, key: tuple[int, int], fit: NDArray[np.int64], scope_cap: int | None) -> Reason:
        r = self.replicas[key]
        role = self.request.roles[r.role]
        pods, q = len(r.missing()), role.pod_gpus
        where = f"spec.roles[{role.name}]"
        usable = self.usable[r.role]
        largest = max((self.index.gpus(int(row)) for row in np.flatnonzero(usable)), default=0)
        if largest < q:
            return Reason(
                "gpus-per-pod",
                f"{where}.gpusPerPod",
                q,
                largest,
                f"each pod needs {q} GPUs on one node; the largest usable node has {largest}",
            )
        if role.replica_scope is not None and scope_cap is not None:
            tier = self.index.tiers[role.replica_scope]
            return Reason(
                "replica-scope",
                f"{where}.replicaScope",
                pods * q,
                scope_cap * q,
                f"replica {r.rid} needs {_count(pods, 'pod')} x {q} GPUs = {pods * q} GPUs "
                f"in one {tier}; "
                f"the largest free {tier} has room for {scope_cap * q}",
            )
        total = int(fit.sum())
        return Reason(
            "capacity",
            where,
            pods * q,
            total * q,
            f"replica {r.rid} needs {_count(pods, 'more pod')} of {q} GPUs; the cluster has room "
            f"for {total} such pods ({total * q} GPUs) after the rest of the deployment",
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _submasks(free: int, k: int) -> list[int]:
    """Every ``k``-GPU subset of ``free``, ascending."""
    from itertools import combinations

    return [sum(1 << g for g in combo) for combo in combinations(bits(free), k)]


def _total_gpus(request: Request) -> int:
    return sum(r.replicas * r.gpus_per_replica for r in request.roles)


def _plan_from(solve: _Solve, free_before: NDArray[np.uint64], strategy: str) -> Plan:
    index = solve.index
    names = [r.name for r in solve.request.roles]
    assignments = []
    for (ri, rid), r in sorted(solve.replicas.items()):
        for pod, row, mask in sorted(r.parts()):
            assignments.append(
                Assignment(PodKey(names[ri], rid, pod), index.names[row], row, bits(mask))
            )
    new = [
        a
        for a in assignments
        if any(
            a.key == PodKey(names[ri], rid, p)
            for (ri, rid), r in solve.replicas.items()
            for p, _, _ in r.placed
        )
    ]
    ev = objective.evaluate(index, solve.request, assignments)
    frag = objective.fragmentation(index, free_before, new)
    domains = []
    for (ri, rid), r in sorted(solve.replicas.items()):
        rows = sorted({row for _, row, _ in r.parts()})
        common = set(solve.tree.ancestors(rows[0])) | {rows[0]}
        for row in rows[1:]:
            common &= set(solve.tree.ancestors(row)) | {row}
        lowest = min(common, key=lambda v: (int(solve.tree.layer[v]), v), default=solve.tree.root)
        domains.append(f"{names[ri]}-{rid}: {solve.tree.name(lowest)}")
    return Plan(
        feasible=True,
        assignments=tuple(assignments),
        cost=Cost(ev.cost.intra, ev.cost.traffic, frag),
        tiers=ev.tiers,
        replica_tiers=ev.replica_tiers,
        domains=tuple(domains),
        strategy=strategy,
    )


def _infeasible(reason: Reason, strategy: str) -> Plan:
    return Plan(feasible=False, reasons=(reason,), strategy=strategy)


def solve(snapshot: ClusterSnapshot, request: Request, *, fixed: Fixed | None = None) -> Plan:
    """Plan ``request`` on ``snapshot``; pods in ``fixed`` stay where they are.

    Parameters
    ----------
    snapshot : ClusterSnapshot
        Free GPUs; pods in ``fixed`` must already be accounted as used in it.
    request : Request
    fixed : mapping of PodKey -> (row, GPU indices), optional
        Existing pods to keep (scale-up keeps every existing replica; repair keeps survivors).

    Returns
    -------
    Plan
        Feasible with every pod assigned, or infeasible with reasons. Never raises for an
        infeasible request.

    Notes
    -----
    See the module docstring for the algorithm. Cost grows with the number of replicas times the
    number of candidate nodes (vectorised) plus a bounded number of domain fills per replica.
    """
    fixed = fixed or {}
    index = snapshot.index
    tree = domain_tree.tree(index)
    scope = (
        request.required_scope if request.required_scope is not None else request.preferred_scope
    )
    if scope is not None and tree.layer_of_tier(scope) < tree.layer[tree.root]:
        layer = tree.layer_of_tier(scope)
        counts = np.array([int(m).bit_count() for m in snapshot.free.tolist()], dtype=np.int64)
        usable = snapshot.schedulable
        fixed_rows = {row for row, _ in fixed.values()}
        need = _total_gpus(request) - sum(len(g) for _, g in fixed.values())
        free_under = tree.rollup(np.where(usable, counts, 0))
        verts = np.flatnonzero(tree.layer == layer)
        if fixed_rows:
            holders = set.intersection(*(set(tree.ancestors(r)) | {r} for r in fixed_rows))
            verts = np.array([v for v in verts.tolist() if v in holders], dtype=np.int64)
        fitting = verts[free_under[verts] >= need] if verts.size else verts
        fitting = fitting[np.lexsort((fitting, free_under[fitting]))][
            : max(3, EVALUATE_ALL_BELOW // 4)
        ]
        plans = []
        last_failure: Reason | None = None
        for v in fitting.tolist():
            allowed = np.zeros(len(index.names), dtype=np.bool_)
            members = _rows_under(tree, v)
            allowed[members] = True
            try:
                attempt = _run(snapshot, request, allowed, fixed)
            except _Failure as failure:
                last_failure = failure.reason
                continue
            plans.append(_plan_from(attempt, snapshot.free, "shorthop"))
        if plans:
            return min(plans, key=lambda p: (p.cost.key(), p.cost.fragmentation))
        if request.required_scope is not None:
            tier = index.tiers[scope]
            largest = int(free_under[verts].max()) if verts.size else 0
            if last_failure is None:
                last_failure = Reason(
                    "deployment-scope",
                    "spec.placement.required",
                    need,
                    largest,
                    f"the deployment needs {need} GPUs in one {tier}; "
                    f"the largest {tier} has {largest} free",
                )
            return _infeasible(last_failure, "shorthop")
    try:
        attempt = _run(snapshot, request, None, fixed)
    except _Failure as failure:
        return _infeasible(failure.reason, "shorthop")
    return _plan_from(attempt, snapshot.free, "shorthop")


def _run(
    snapshot: ClusterSnapshot, request: Request, allowed: NDArray[np.bool_] | None, fixed: Fixed
) -> _Solve:
    """Greedy in "cost" mode, falling back to "pack" then first-fit order when a replica does
    not fit; also starts from first-fit's plan and keeps whichever start ends cheaper, so the
    result is never worse than first-fit. Raises _Failure when no mode finds room."""
    failure: _Failure | None = None
    for mode in ("cost", "pack", "request"):
        attempt = _Solve(snapshot, request, allowed, fixed, mode)
        try:
            attempt.greedy()
        except _Failure as exc:
            failure = failure or exc
            continue
        attempt.refine()
        if mode == "request":
            return attempt
        first = _Solve(snapshot, request, allowed, fixed, "request")
        try:
            first.greedy()
        except _Failure:
            return attempt
        if first.total_cost() < attempt.total_cost():
            first.refine()
            if first.total_cost() < attempt.total_cost():
                return first
        return attempt
    assert failure is not None
    raise failure


def _rows_under(tree: domain_tree.DomainTree, v: int) -> list[int]:
    rows = len(tree.index.names)
    out, stack = [], [v]
    while stack:
        u = stack.pop()
        if u < rows:
            out.append(u)
        else:
            stack.extend(tree.children_of(u).tolist())
    return out


__all__ = ["RoleRequest", "solve"]

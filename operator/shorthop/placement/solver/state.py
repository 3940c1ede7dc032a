"""The solver's state for one planning run: the only mutable thing the phases share.

A :class:`State` owns copies of the snapshot's per-node arrays (free-GPU bitsets, free counts,
headroom) and the replicas being placed, with their surviving (``fixed``) and newly placed pods;
its :class:`~shorthop.placement.solver.capacity.Capacity` keeps the rolled-up capacities in step.
Which rows each role may use (``usable``) and prefers (``preference``) come from the role's
scheduling rules (``placement.filters``); host ports of the plan's own pods narrow ``usable`` as
pods are committed and widen it again when they are lifted.
Every phase is a function over a ``State``: the candidates of phase 2b and 2c read it, and only
:meth:`State.commit`, :meth:`State.lift` and :meth:`State.restore` change it. Also here: the
strategy (:class:`Strategy`), the :class:`Candidate` value, a replica's traffic *partners*
(:meth:`State.partners`: each placed peer of a ``paired`` edge, or all placed GPUs of the other
role of an ``all-to-all`` edge, weighted as the objective weighs them) and the cost of what is
placed so far (:meth:`State.group_cost`, with ``objective.intra_cost``, the one intra-replica
cost, and ``pairsums`` for traffic).

Never imports other solver modules except ``capacity``; must not touch the snapshot it copies.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import filters, objective, other_resources, pairsums
from shorthop.placement import tree as domain_tree
from shorthop.placement.bitsets import bits
from shorthop.placement.plan import PodKey, Reason
from shorthop.placement.request import Pattern, Request, TrafficEdge, replica_pairs
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.solver.capacity import Capacity
from shorthop.topology.index import TopologyIndex

Key = tuple[int, int]  # a replica: (role index, replica id)
Part = tuple[int, int]  # GPUs on one node: (row, GPU mask)
PodPart = tuple[int, int, int]  # one pod: (pod index, row, GPU mask)
Fixed = Mapping[PodKey, tuple[int, Sequence[int]]]  # pod -> (row, GPU indices)


@dataclass(frozen=True, eq=False)
class Partner:
    """GPUs a replica exchanges traffic with, summarised per domain, and the weight of one GPU
    pair (a ``paired`` peer: the edge's weight; an ``all-to-all`` role: weight / (nS x nT))."""

    summary: pairsums.Summary
    weight: float


Partners = list[Partner]


class Strategy(enum.Enum):
    """How greedy orders replicas and compares candidates (see ``run``: tried in this order).

    ``COST`` is shorthop's search. When a replica finds no room, ``PACK`` tries again best fit
    first; when that fails too, ``FIRST_FIT`` places replicas in id order, each pod on the first
    node with room (also the start that makes a plan never worse than first-fit's).
    """

    COST = "cost"  # largest replicas first; cheapest candidate (intra, traffic, ...) first
    PACK = "pack"  # largest pods first; fewest GPUs left over first
    FIRST_FIT = "first-fit"  # replicas in id order; pods on the first node (row order) with room


@dataclass
class Replica:
    role: int
    rid: int
    pods: int
    fixed: list[PodPart] = field(default_factory=list)  # surviving pods: stay where they are
    placed: list[PodPart] = field(default_factory=list)  # placed by this run

    def missing(self) -> list[int]:
        if not self.fixed and not self.placed:
            return list(range(self.pods))
        have = {p for p, _, _ in self.fixed} | {p for p, _, _ in self.placed}
        return [p for p in range(self.pods) if p not in have]

    def parts(self) -> list[PodPart]:
        return self.fixed + self.placed


@dataclass(frozen=True)
class Candidate:
    """Where a replica's missing pods could go, and what it would cost."""

    intra: int
    traffic: float
    frag: float
    tie: int
    rows: tuple[Part, ...]
    lookahead: float = 0.0  # estimated traffic to peers not placed yet (see lookahead)
    preference: int = 0  # preferred node affinity weight over its pods (higher is better)

    def key(self) -> tuple[int, float, float, int, float, int]:
        """Topology cost first, then preferred node affinity, then best fit."""
        return (
            self.intra,
            round(self.traffic, 6),
            self.lookahead,
            -self.preference,
            self.frag,
            self.tie,
        )


# State.caches: per-role summaries, per-replica peer summaries, the total cost (or None)
Caches = tuple[
    dict[int, pairsums.Summary],
    dict[int, set[int]],
    dict[Key, pairsums.Summary],
    tuple[int, float] | None,
]


class Failure(Exception):
    """A replica found no room; carries the reason (``explain``). Caught inside the solver:
    ``solve`` returns it as an infeasible plan."""

    def __init__(self, reason: Reason) -> None:
        self.reason = reason


def merged_masks(parts: Iterable[Part]) -> dict[int, int]:
    """GPUs as row -> mask, the masks of parts on one row merged."""
    merged: dict[int, int] = {}
    for row, mask in parts:
        merged[row] = merged.get(row, 0) | mask
    return merged


def gpu_set_of(parts: Sequence[Part]) -> objective.GpuSet:
    return {row: np.array(bits(mask), dtype=np.intp) for row, mask in merged_masks(parts).items()}


class State:
    """One planning run's scratch state (owned by that run alone)."""

    def __init__(
        self,
        snapshot: ClusterSnapshot,
        request: Request,
        allowed: NDArray[np.bool_] | None,
        fixed: Fixed,
        strategy: Strategy = Strategy.COST,
    ) -> None:
        self.strategy = strategy
        self.interleave = True  # greedy.order: all-to-all roles interleaved, or largest first
        self.roles_first: tuple[int, ...] | None = None  # greedy.order: whole roles in this order
        self.snapshot = snapshot
        self.index: TopologyIndex = snapshot.index
        self.tree = domain_tree.tree(self.index)
        self.request = request
        widest = max((c.gpus for c in self.index.classes), default=1)
        # per role: what of a replica stays on one node (the replica where one fits a node)
        self.node_unit = [
            r.gpus_per_replica if r.gpus_per_replica <= widest else r.pod_gpus
            for r in request.roles
        ]
        self.free = snapshot.free.copy()
        self.count = snapshot.free_counts.copy()
        # CPU, memory, pod slots and a column per other resource the roles request; per role
        # its demand per pod over those columns (placement.other_resources)
        self.base_headroom, self.demand = other_resources.headroom(
            snapshot.headroom,
            snapshot.other,
            request.roles,
        )
        self.headroom = self.base_headroom.copy()
        rows = len(self.index.names)
        allowed = np.ones(rows, dtype=np.bool_) if allowed is None else allowed
        found = filters.role_filters(snapshot, request)
        self.base_usable = [f.usable & allowed for f in found]
        self.usable = [u.copy() for u in self.base_usable]  # less the plan's own host ports
        self.preference = [f.preference for f in found]
        self.ports = filters.PlanPorts(request, rows)
        usable_any = np.logical_or.reduce(self.usable) if self.usable else allowed & False
        alive_rows = np.flatnonzero(self.index.alive & usable_any)
        self.class_rows = [
            alive_rows[self.index.class_of[alive_rows] == c] for c in range(len(self.index.classes))
        ]
        self.capacity = Capacity(
            self.tree,
            request,
            self.usable,
            usable_any,
            self.count,
            self.headroom,
            self.free,
            self.class_rows,
            self.demand,
        )
        # phase 2c's domain fills per (role, pods, vertex): (vertex version, parts, intra)
        self.fills: dict[tuple[int, int, int], tuple[int, list[Part], int]] = {}
        self.cursor: dict[int, int] = {}  # first-fit: per role, the first row that may have room
        self.min_up = min((int(c.up.min()) for c in self.index.classes), default=0)
        self.replicas = self._replicas(fixed)
        self.peers = self._peers()
        # GPUs placed per role (row -> mask) and their summaries, rebuilt when a role changes.
        self.role_masks: list[dict[int, int]] = [{} for _ in request.roles]
        for r in self.replicas.values():
            for _, row, mask in r.fixed:
                self._add_role_gpus(r.role, row, mask)
        self._summaries: dict[int, pairsums.Summary] = {}
        self._stale: dict[int, set[int]] = {}  # per role: rows changed since its summary
        # roles whose summary caches() handed out: it must not change in place
        self._pinned: set[int] = set()
        self._peer_summaries: dict[Key, pairsums.Summary] = {}
        self._total: tuple[int, float] | None = None  # total_cost until commit/lift/restore
        self._intra: dict[tuple[tuple[int, int], ...], int] = {}  # replica_intra per GPU set
        self.role_missing = [0] * len(request.roles)  # pods not placed yet, per role
        for r in self.replicas.values():
            self.role_missing[r.role] += len(r.missing())
        self.role_edges = [
            [
                (e.target if e.source == ri else e.source, self.pair_weight(e), e)
                for e in request.traffic
                if e.pattern is Pattern.ALL_TO_ALL and ri in (e.source, e.target)
            ]
            for ri in range(len(request.roles))
        ]
        for r in self.replicas.values():
            for _, row, _ in r.fixed:
                self.ports.add(r.role, row, 1)
        self._ports_changed([row for r in self.replicas.values() for _, row, _ in r.fixed])

    # -- set-up ------------------------------------------------------------------------------

    def _replicas(self, fixed: Fixed) -> dict[Key, Replica]:
        out: dict[Key, Replica] = {}
        names = [r.name for r in self.request.roles]
        by_role: dict[int, dict[int, list[PodPart]]] = {}
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
                out[(ri, rid)] = Replica(ri, rid, role.pods_per_replica, fixed=parts)
        return out

    def _peers(self) -> dict[Key, list[tuple[Key, float]]]:
        """Peers over ``paired`` edges (pairs made before are kept: ``request.pairs``)."""
        peers: dict[Key, list[tuple[Key, float]]] = {k: [] for k in self.replicas}
        ids: dict[int, list[int]] = {}
        for ri, rid in self.replicas:
            ids.setdefault(ri, []).append(rid)
        for e, pairs in replica_pairs(self.request, ids).items():
            edge = self.request.traffic[e]
            for s, t in pairs:
                a, b = (edge.source, s), (edge.target, t)
                peers[a].append((b, edge.weight))
                peers[b].append((a, edge.weight))
        return peers

    def pair_weight(self, edge: TrafficEdge) -> float:
        """Weight of one GPU pair of an ``all-to-all`` edge: ``weight / (nS x nT)``."""
        n_s = self.request.roles[edge.source].replicas
        n_t = self.request.roles[edge.target].replicas
        return edge.weight / (n_s * n_t) if n_s and n_t else 0.0

    def _add_role_gpus(self, role: int, row: int, mask: int) -> None:
        masks = self.role_masks[role]
        masks[row] = masks.get(row, 0) | mask

    def _drop_role_gpus(self, role: int, row: int, mask: int) -> None:
        masks = self.role_masks[role]
        left = masks.get(row, 0) & ~mask
        if left:
            masks[row] = left
        else:
            masks.pop(row, None)

    # -- reading -----------------------------------------------------------------------------

    def placed_set(self, key: Key) -> objective.GpuSet:
        r = self.replicas[key]
        return gpu_set_of([(row, mask) for _, row, mask in r.parts()])

    def replica_intra(self, key: Key) -> int:
        """``objective.intra_cost`` of the GPUs ``key`` holds now (remembered per GPU set: the
        same replicas are costed again and again by the starts and moves of one run)."""
        merged: dict[int, int] = {}
        for _, row, mask in self.replicas[key].parts():
            merged[row] = merged.get(row, 0) | mask
        gpus = tuple(sorted(merged.items()))
        found = self._intra.get(gpus)
        if found is None:
            found = objective.intra_cost(self.index, self.placed_set(key))
            self._intra[gpus] = found
        return found

    def role_summary(self, role: int) -> pairsums.Summary:
        """The GPUs placed so far for ``role``, summarised per domain (cached until it changes)."""
        found = self._summaries.get(role)
        stale = self._stale.pop(role, None)
        if found is None:
            found = pairsums.Summary(self.index, pairsums.mass(self.index, self.role_masks[role]))
            self._summaries[role] = found
        elif stale and role in self._pinned:  # held by caches(): refreshed as a new summary
            found = found.refreshed(stale, self.role_masks[role])
            self._summaries[role] = found
            self._pinned.discard(role)
        elif stale:
            found.refresh(stale, self.role_masks[role])
        return found

    def partners(self, key: Key) -> Partners:
        """Everything ``key`` exchanges traffic with that is placed already (see
        :class:`Partner`): its placed ``paired`` peers, and per ``all-to-all`` edge the placed
        GPUs of the other role."""
        out = []
        for peer, weight in self.peers[key]:
            r = self.replicas[peer]
            if not r.parts():
                continue
            summary = self._peer_summaries.get(peer)
            if summary is None:
                masks: dict[int, int] = {}
                for _, row, mask in r.parts():
                    masks[row] = masks.get(row, 0) | mask
                summary = pairsums.Summary(self.index, pairsums.mass(self.index, masks))
                self._peer_summaries[peer] = summary
            out.append(Partner(summary, weight))
        for other, weight, _ in self.role_edges[key[0]]:
            if self.role_masks[other] and weight:
                out.append(Partner(self.role_summary(other), weight))
        return out

    def unplaced_peer_gpus(self, key: Key) -> tuple[int, int, int]:
        """(GPUs, pod size, node unit) that the replicas ``key`` exchanges traffic with and
        that are not placed yet will need. The node unit is the least of those peers' replica
        sizes where a replica fits one node, else of their pod sizes: intra cost comes first,
        so a peer replica that can stay on one node does, and only whole ones of it can land
        next to ``key`` on a node (the look-ahead counts them so)."""
        need, q, unit = 0, 0, 0
        for peer, _ in self.peers[key]:
            r = self.replicas[peer]
            if not r.parts():
                role = self.request.roles[r.role]
                need += role.gpus_per_replica
                q = role.pod_gpus if q == 0 else min(q, role.pod_gpus)
                whole = self.node_unit[r.role]
                unit = whole if unit == 0 else min(unit, whole)
        for other, _, _ in self.role_edges[key[0]]:
            missing = self.role_missing[other]
            if missing:
                role = self.request.roles[other]
                need += missing * role.pod_gpus
                q = role.pod_gpus if q == 0 else min(q, role.pod_gpus)
                whole = self.node_unit[other]
                unit = whole if unit == 0 else min(unit, whole)
        return need, max(q, 1), max(unit, 1)

    def has_traffic(self, key: Key) -> bool:
        return bool(self.peers[key]) or any(w for _, w, _ in self.role_edges[key[0]])

    def _masses(self, keys: Sequence[Key]) -> dict[int, dict[int, int]]:
        """GPUs of ``keys`` per role (row -> mask)."""
        out: dict[int, dict[int, int]] = {}
        for k in keys:
            for _, row, mask in self.replicas[k].parts():
                masks = out.setdefault(k[0], {})
                masks[row] = masks.get(row, 0) | mask
        return out

    def group_cost(self, keys: Sequence[Key]) -> tuple[int, float]:
        """Intra cost of ``keys`` plus the traffic of every GPU pair touching them (peer pairs
        of ``paired`` edges, pairs with the other role of ``all-to-all`` edges)."""
        index = self.index
        intra = sum(self.replica_intra(k) for k in keys)
        traffic = 0.0
        seen: set[tuple[Key, Key]] = set()
        for k in keys:
            for peer, weight in self.peers[k]:
                pair = (min(k, peer), max(k, peer))
                if pair not in seen:
                    seen.add(pair)
                    a, b = self.placed_set(k), self.placed_set(peer)
                    traffic += weight * objective.between_cost(index, a, b)
        moved = self._masses(keys)
        for e in self.request.traffic:
            if e.pattern is not Pattern.ALL_TO_ALL:
                continue
            weight = self.pair_weight(e)
            k_s, k_t = moved.get(e.source, {}), moved.get(e.target, {})
            if not weight or not (k_s or k_t):
                continue
            if k_s == self.role_masks[e.source] and k_t == self.role_masks[e.target]:
                # Both roles moved whole (total_cost): the sum below is this one pair sum, the
                # same integer (float64 sums of integers are exact far beyond these).
                m_s, m_t = pairsums.mass(index, k_s), pairsums.mass(index, k_t)
                traffic += weight * float(pairsums.pair_sums(index, m_s, m_t)[0])
                continue
            # pairs (moved source, any target) + (any source, moved target) - (moved, moved)
            total = self._to_role(k_s, e.target) + self._to_role(k_t, e.source)
            if k_s and k_t:
                total -= pairsums.pair_sums(
                    index, pairsums.mass(index, k_s), pairsums.mass(index, k_t)
                )[0]
            traffic += weight * total
        return intra, round(traffic, 6)

    def _to_role(self, masks: dict[int, int], role: int) -> float:
        """Sum of distances from the GPUs ``masks`` (row -> mask) to every placed GPU of
        ``role`` (which must not hold them)."""
        if not masks or not self.role_masks[role]:
            return 0.0
        rows = np.array(sorted(masks), dtype=np.intp)
        values = np.array([masks[r] for r in rows.tolist()], dtype=np.int64)
        return float(pairsums.costs_to(self.index, self.role_summary(role), rows, values).sum())

    def total_intra(self) -> int:
        """The intra part of :meth:`total_cost`, without its traffic."""
        if self._total is not None:
            return self._total[0]
        return sum(self.replica_intra(k) for k in self.replicas)

    def total_cost(self) -> tuple[int, float]:
        if self._total is None:
            self._total = self.group_cost(list(self.replicas))
        return self._total

    def domain_left(self, rows: NDArray[np.intp], used: NDArray[np.int64]) -> NDArray[np.float64]:
        """Fragmentation's domain term for taking ``used`` GPUs on each of ``rows``: the free
        GPUs then left in the row's NVLink domain, a hundredth each (0 outside cliques), as
        ``objective.fragmentation`` weighs them. Prefers partly used domains among candidates
        equal in everything before, so whole domains stay free for large replicas."""
        anc = self.tree.ancestor_at[domain_tree.CLIQUE_LAYER, rows]
        room = self.capacity.room(1)
        left = np.where(anc >= 0, room[np.maximum(anc, 0)] - used, 0)
        return np.maximum(left, 0).astype(np.float64) / 100

    def preference_of(self, role: int, parts: Sequence[Part]) -> int:
        """Preferred node affinity weight of putting pods of ``role`` on ``parts``."""
        scores = self.preference[role]
        if scores is None:
            return 0
        q = self.request.roles[role].pod_gpus
        return sum(int(scores[row]) * (mask.bit_count() // q) for row, mask in parts)

    def _ports_changed(self, rows: Sequence[int]) -> None:
        """Host ports of the plan's own pods moved on ``rows``: bring ``usable`` up to date
        (before the capacities are touched)."""
        if not self.ports.active or not rows:
            return
        idx = np.array(sorted(set(rows)), dtype=np.intp)
        for ri in range(len(self.usable)):
            self.usable[ri][idx] = self.base_usable[ri][idx] & ~self.ports.blocked(ri, idx)

    # -- changing ----------------------------------------------------------------------------

    def commit(self, key: Key, cand: Candidate) -> None:
        """Place the missing pods of ``key`` on ``cand``'s GPUs (pod by pod, in mask order)."""
        r = self.replicas[key]
        role = self.request.roles[r.role]
        q = role.pod_gpus
        missing = iter(r.missing())
        pods = 0
        for row, mask in cand.rows:
            gpus = bits(mask)
            for start in range(0, len(gpus), q):
                pod_mask = sum(1 << g for g in gpus[start : start + q])
                r.placed.append((next(missing), row, pod_mask))
                pods += 1
            self.free[row] = np.uint64(int(self.free[row]) & ~mask)
            self.count[row] -= len(gpus)
            self._add_role_gpus(r.role, row, mask)
            pods_here = len(gpus) // q
            demand = self.demand[r.role]
            self.headroom[row] -= demand if pods_here == 1 else demand * pods_here
            self.ports.add(r.role, row, pods_here)
        self._ports_changed([row for row, _ in cand.rows])
        self._changed(r.role, [row for row, _ in cand.rows])
        self._peer_summaries.pop(key, None)
        self._total = None
        self.role_missing[r.role] -= pods  # each a distinct missing pod
        self.capacity.touch([row for row, _ in cand.rows])

    def _changed(self, role: int, rows: Sequence[int]) -> None:
        """GPUs of ``role`` changed on ``rows``: its summary is brought up to date when read."""
        if role in self._summaries:
            self._stale.setdefault(role, set()).update(rows)

    def caches(self) -> Caches:
        """The cached summaries and total cost as they are now, for :meth:`reuse`."""
        stale = {role: set(rows) for role, rows in self._stale.items()}
        self._pinned = set(self._summaries)
        return dict(self._summaries), stale, dict(self._peer_summaries), self._total

    def reuse(self, caches: Caches) -> None:
        """Take back :meth:`caches` taken before lifts that were all restored since (the GPUs
        are where they were then, so are the summaries; those caches handed out are never
        changed in place, see ``_pinned``)."""
        self._summaries, self._peer_summaries, self._total = (
            dict(caches[0]),
            dict(caches[2]),
            caches[3],
        )
        self._stale = {role: set(rows) for role, rows in caches[1].items()}
        self._pinned = set(self._summaries)

    def lift(self, key: Key) -> list[PodPart]:
        """Take the pods this run placed for ``key`` off again; returns them for :meth:`restore`."""
        r = self.replicas[key]
        old = r.placed
        r.placed = []
        for _, row, mask in old:
            self.free[row] = np.uint64(int(self.free[row]) | mask)
            self.count[row] += mask.bit_count()
            self.headroom[row] += self.demand[r.role]
            self.ports.add(r.role, row, -1)
            self._drop_role_gpus(r.role, row, mask)
        self._ports_changed([row for _, row, _ in old])
        self._changed(r.role, [row for _, row, _ in old])
        self._peer_summaries.pop(key, None)
        self._total = None
        self.role_missing[r.role] += len(old)
        self.capacity.touch([row for _, row, _ in old])
        return old

    def restore(self, key: Key, old: list[PodPart]) -> None:
        r = self.replicas[key]
        r.placed = list(old)
        for _, row, mask in old:
            self.free[row] = np.uint64(int(self.free[row]) & ~mask)
            self.count[row] -= mask.bit_count()
            self.headroom[row] -= self.demand[r.role]
            self.ports.add(r.role, row, 1)
            self._add_role_gpus(r.role, row, mask)
        self._ports_changed([row for _, row, _ in old])
        self._changed(r.role, [row for _, row, _ in old])
        self._peer_summaries.pop(key, None)
        self._total = None
        self.role_missing[r.role] -= len(old)
        self.capacity.touch([row for _, row, _ in old])

    def put_back(self, olds: Mapping[Key, list[PodPart]]) -> None:
        """Undo a joint move: lift every key of ``olds`` (where the move put it), then restore
        each to its old pods. All lifts come first: one replica's new GPUs may be another's old
        ones, and lifting it after that one was restored would free GPUs held again."""
        for key in olds:
            self.lift(key)
        for key, old in olds.items():
            self.restore(key, old)

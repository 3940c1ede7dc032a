"""The ``Placer`` seam and the baselines shorthop is measured against.

Every placer takes a snapshot and a request and returns a :class:`~shorthop.placement.plan.Plan`
scored by the same ``objective``, and honours the same scheduling rules (``filters``: taints, node
selectors, node affinity, host ports), so they compare honestly:

- ``shorthop``: the solver (``solver.solve``);
- ``first-fit``: each pod on the first node (row order) with enough free GPUs, lowest indices;
- ``best-fit``: each pod on the node with the fewest free GPUs that still fits it (ties: row
  order), lowest indices (kube-scheduler's MostAllocated / bin packing);
- ``spread``: each pod on the node with the most free GPUs (kube-scheduler's LeastAllocated);
- ``tas``: Kueue-TAS-like: all pods of a role in the lowest domain (node, NVLink domain, network
  levels) that fits them all, best fit, filled with the fewest sub-domains; lowest GPU indices;
- ``random``: each pod on a random node that fits (seeded).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Protocol

import numpy as np

from shorthop.placement import filters, objective, other_resources, solver
from shorthop.placement import tree as domain_tree
from shorthop.placement.bitsets import bits
from shorthop.placement.plan import Assignment, Plan, PodKey, Reason
from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot


class Placer(Protocol):
    name: str

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan: ...


class _Scratch:
    def __init__(self, snapshot: ClusterSnapshot, request: Request) -> None:
        self.snapshot = snapshot
        self.request = request
        self.free = [int(m) for m in snapshot.free.tolist()]
        self.headroom, self.demand = other_resources.headroom(
            snapshot.headroom,
            snapshot.other,
            request.roles,
        )
        found = filters.role_filters(snapshot, request)
        self.usable = [f.usable for f in found]
        self.scores = [f.preference for f in found]
        self.ports = filters.PlanPorts(request, len(self.free))
        self.assignments: list[Assignment] = []

    def fits(self, ri: int, row: int) -> bool:
        role = self.request.roles[ri]
        return bool(
            self.usable[ri][row]
            and not self.ports.blocks(ri, row)
            and self.free[row].bit_count() >= role.pod_gpus
            and (self.headroom[row] >= self.demand[ri]).all()
        )

    def take(self, ri: int, replica: int, pod: int, row: int) -> None:
        role = self.request.roles[ri]
        gpus = bits(self.free[row])[: role.pod_gpus]
        for g in gpus:
            self.free[row] &= ~(1 << g)
        self.headroom[row] -= self.demand[ri]
        self.ports.add(ri, row, 1)
        key = PodKey(role.name, replica, pod)
        self.assignments.append(Assignment(key, self.snapshot.index.names[row], row, gpus))

    def pods(self) -> list[tuple[int, int, int]]:
        return [
            (ri, replica, pod)
            for ri, role in enumerate(self.request.roles)
            for replica in range(role.replicas)
            for pod in range(role.pods_per_replica)
        ]

    def plan(self, name: str) -> Plan:
        ev = objective.evaluate(
            self.snapshot.index, self.request, self.assignments, free_before=self.snapshot.free
        )
        liked = objective.preference(self.request, self.assignments, self.scores)
        return Plan(
            True,
            tuple(self.assignments),
            cost=dataclasses.replace(ev.cost, preference=liked),
            tiers=ev.tiers,
            replica_tiers=ev.replica_tiers,
            traffic=ev.edges,
            strategy=name,
        )

    def fail(self, name: str, ri: int) -> Plan:
        role = self.request.roles[ri]
        reason = Reason(
            "capacity",
            f"spec.roles[{ri}]",
            role.pod_gpus,
            0,
            f"{name}: no node has {role.pod_gpus} free GPUs for the next pod of role {role.name}",
        )
        return Plan(False, reasons=(reason,), strategy=name)


def _per_pod(
    name: str, choose: Callable[[_Scratch, int, list[int]], int]
) -> Callable[[ClusterSnapshot, Request], Plan]:
    def place(snapshot: ClusterSnapshot, request: Request) -> Plan:
        s = _Scratch(snapshot, request)
        rows = list(range(len(snapshot.index.names)))
        for ri, replica, pod in s.pods():
            options = [row for row in rows if s.fits(ri, row)]
            if not options:
                return s.fail(name, ri)
            s.take(ri, replica, pod, choose(s, ri, options))
        return s.plan(name)

    return place


class ShorthopPlacer:
    name = "shorthop"

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        return solver.solve(snapshot, request)


class FirstFit:
    name = "first-fit"

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        return _per_pod(self.name, lambda s, ri, options: options[0])(snapshot, request)


class BestFit:
    name = "best-fit"

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        return _per_pod(
            self.name,
            lambda s, ri, options: min(options, key=lambda r: (s.free[r].bit_count(), r)),
        )(snapshot, request)


class Spread:
    name = "spread"

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        return _per_pod(
            self.name,
            lambda s, ri, options: max(options, key=lambda r: (s.free[r].bit_count(), -r)),
        )(snapshot, request)


class RandomFit:
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        rng = random.Random(self.seed)
        return _per_pod(self.name, lambda s, ri, options: rng.choice(options))(snapshot, request)


class TasLike:
    """Kueue-TAS-like: a role's pods in the lowest single domain that fits them all (best fit),
    filled with the fewest sub-domains; no notion of traffic between roles or of GPU subsets."""

    name = "tas"

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        s = _Scratch(snapshot, request)
        t = domain_tree.tree(snapshot.index)
        for ri, role in enumerate(request.roles):
            total = role.replicas * role.pods_per_replica
            if total == 0:
                continue
            fit = np.array([self._room(s, ri, row) for row in range(len(s.free))], dtype=np.int64)
            cap = t.rollup(fit)
            chosen = None
            for layer in range(int(t.layer[t.root]) + 1):
                verts = np.flatnonzero((t.layer == layer) & (cap >= total))
                if verts.size:
                    chosen = int(verts[np.lexsort((verts, cap[verts]))][0])
                    break
            if chosen is None:
                return s.fail(self.name, ri)
            rows = self._fill(t, chosen, total, cap)
            slots = iter(
                (replica, pod)
                for replica in range(role.replicas)
                for pod in range(role.pods_per_replica)
            )
            for row, n in rows:
                for _ in range(n):
                    replica, pod = next(slots)
                    s.take(ri, replica, pod, row)
        return s.plan(self.name)

    @staticmethod
    def _room(s: _Scratch, ri: int, row: int) -> int:
        role = s.request.roles[ri]
        if not s.usable[ri][row] or s.ports.blocks(ri, row):
            return 0
        n = s.free[row].bit_count() // role.pod_gpus
        n = min(n, other_resources.pods_room(s.headroom[row].tolist(), s.demand[ri].tolist()))
        if role.constraints.host_ports:
            n = min(n, 1)
        return max(0, n)

    def _fill(
        self, t: domain_tree.DomainTree, v: int, n: int, cap: np.ndarray
    ) -> list[tuple[int, int]]:
        if v < len(t.index.names):
            return [(v, n)]
        kids = [int(u) for u in t.children_of(v) if cap[u] > 0]
        kids.sort(key=lambda u: (-int(cap[u]), u))
        out, left = [], n
        for u in kids:
            if left <= 0:
                break
            share = min(left, int(cap[u]))
            out += self._fill(t, u, share, cap)
            left -= share
        return out


def all_placers(seed: int = 0) -> list[Placer]:
    return [ShorthopPlacer(), FirstFit(), BestFit(), Spread(), TasLike(), RandomFit(seed)]

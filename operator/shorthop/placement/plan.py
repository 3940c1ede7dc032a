"""The result of placement: assignments, cost, tiers and the reasons behind it.

Frozen values; ``Plan.to_json`` is the ``shorthop plan --format json`` **contract** (keys
``feasible``, ``assignments[{role, replica, pod, node, gpus}]``, ``reasons``, ``cost``, ``tiers``;
``traffic`` adds each traffic edge: its pattern, cost share, GPU and replica pairs per tier;
``exclusions``: per role, the nodes its scheduling rules left out, by rule; an assignment on a
DRA node also has ``devices``: ``{driver, pool, device}`` per GPU, in the order of ``gpus``).
Infeasibility is a value: ``feasible`` False with :class:`Reason` entries, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shorthop.topology.slices import NodeDevices


@dataclass(frozen=True, slots=True, order=True)
class PodKey:
    role: str
    replica: int
    pod: int

    def name(self, deployment: str) -> str:
        return f"{deployment}-{self.role}-{self.replica}-{self.pod}"


@dataclass(frozen=True, slots=True)
class Assignment:
    key: PodKey
    node: str
    row: int
    gpus: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a plan is infeasible: the constraint, the field it comes from, needed vs available."""

    constraint: str
    field: str
    needed: int
    available: int
    detail: str

    def message(self) -> str:
        return f"{self.field}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Cost:
    """Lexicographic objective: intra-replica, then traffic-weighted role-to-role (lower is
    better), then preferred node affinity (``preference``: the weights of the preferred terms
    each pod's node matches, summed; higher is better), then fragmentation (lower is better).
    Compare with :meth:`rank`."""

    intra: int = 0
    traffic: float = 0.0
    fragmentation: float = 0.0
    preference: int = 0

    def key(self) -> tuple[int, float]:
        """The topology cost, which an exact solver optimises first."""
        return (self.intra, round(self.traffic, 6))

    def rank(self) -> tuple[int, float, int, float]:
        """The whole order, lower first: topology cost, then preference, then fragmentation."""
        return (self.intra, round(self.traffic, 6), -self.preference, self.fragmentation)

    def to_json(self) -> dict[str, float]:
        return {
            "intraReplica": self.intra,
            "traffic": round(self.traffic, 3),
            "preference": self.preference,
            "fragmentation": round(self.fragmentation, 3),
            "total": round(self.intra + self.traffic, 3),
        }


@dataclass(frozen=True, slots=True)
class EdgeTraffic:
    """One traffic edge of a placement, evaluated (``objective.edge_traffic``): its share of the
    traffic cost, the GPU pairs per tier it counts, and its replica pairs per widest tier; for a
    ``paired`` edge also each peer pair."""

    source: str
    target: str
    pattern: str  # request.Pattern value
    weight: float
    cost: float
    gpu_pairs: dict[str, int]
    replica_pairs: dict[str, int]
    peers: tuple[tuple[int, int, str], ...] = ()  # paired: (source id, target id, widest tier)
    source_gpus: int = 0  # GPUs per source replica (for modeled transfer times)
    target_gpus: int = 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "from": self.source,
            "to": self.target,
            "pattern": self.pattern,
            "weight": self.weight,
            "cost": round(self.cost, 3),
            "gpuPairs": dict(self.gpu_pairs),
            "replicaPairs": dict(self.replica_pairs),
        }
        if self.peers:
            doc["peers"] = [
                {"from": f"{self.source}-{s}", "to": f"{self.target}-{t}", "tier": tier}
                for s, t, tier in self.peers
            ]
        return doc


@dataclass(frozen=True, slots=True)
class Plan:
    feasible: bool
    assignments: tuple[Assignment, ...] = ()
    reasons: tuple[Reason, ...] = ()
    cost: Cost = field(default_factory=Cost)
    tiers: dict[str, int] = field(default_factory=dict)  # traffic GPU pairs per tier
    replica_tiers: dict[tuple[str, int], str] = field(default_factory=dict)
    traffic: tuple[EdgeTraffic, ...] = ()  # per traffic edge
    domains: tuple[str, ...] = ()  # the domains chosen, for the explanation
    strategy: str = "shorthop"
    # Per role, the nodes its scheduling rules left out, by rule (``filters.CAUSES``).
    exclusions: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(
        self, node_devices: Callable[[str], NodeDevices | None] | None = None
    ) -> dict[str, Any]:
        """The JSON form; ``node_devices`` (node -> its DRA index map, or None) adds the
        ``devices`` of assignments on DRA nodes."""
        assignments = []
        for a in sorted(self.assignments, key=lambda a: a.key):
            entry: dict[str, Any] = {
                "role": a.key.role,
                "replica": a.key.replica,
                "pod": a.key.pod,
                "node": a.node,
                "gpus": list(a.gpus),
            }
            found = node_devices(a.node) if node_devices is not None else None
            if found is not None:
                entry["devices"] = [
                    {"driver": found.driver, "pool": found.pool, "device": device}
                    for device in found.devices_of(a.gpus)
                ]
            assignments.append(entry)
        return {
            "feasible": self.feasible,
            "assignments": assignments,
            "reasons": [r.message() for r in self.reasons],
            "cost": self.cost.to_json(),
            "tiers": dict(self.tiers),
            "replicaTiers": {
                f"{role}-{replica}": tier
                for (role, replica), tier in sorted(self.replica_tiers.items())
            },
            "traffic": [e.to_json() for e in self.traffic],
            "domains": list(self.domains),
            "strategy": self.strategy,
            "exclusions": {role: dict(causes) for role, causes in self.exclusions.items()},
        }

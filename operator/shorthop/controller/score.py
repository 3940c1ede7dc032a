"""The placement score in status (``status.placementScore``) and the
``shorthop_placement_score`` metric: the cost of the pods where they run now against the cost of
a fresh plan of the whole deployment on the current cluster (its own GPUs counted free), so users
see when churn has left them far from what is achievable.

A fresh plan is a full solve, so it is not made on every visit: :class:`Scores` lets one through
for a deployment only when it is fully placed and idle (the caller checks), at most once per
``interval_s``, and only when the cluster's free GPUs changed since the last one (a fingerprint
of the snapshot's free-GPU bitsets). The first visit after a start computes it once. A plan of
the whole deployment from nothing (no pod of it present) *is* a fresh plan on the cluster of that
moment: :meth:`Scores.planned` keeps its cost as the achievable one and starts the interval, so
a newly placed deployment costs one solve, not two.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shorthop.placement import solver
from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot, mask_of

INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Score:
    current: float
    achievable: float
    computed_at: str

    @property
    def ratio(self) -> float:
        """current / achievable; 1.0 when both are 0; current + 1 when only achievable is 0."""
        if self.achievable > 0:
            return self.current / self.achievable
        return 1.0 if self.current <= 0 else 1.0 + self.current

    def to_json(self) -> dict[str, Any]:
        return {
            "current": round(self.current, 3),
            "achievable": round(self.achievable, 3),
            "ratio": round(self.ratio, 4),
            "computedAt": self.computed_at,
        }


def fingerprint(snap: ClusterSnapshot) -> str:
    return hashlib.blake2b(snap.free.tobytes(), digest_size=16).hexdigest()


class Scores:
    """When each deployment's score was last computed, and on which free GPUs."""

    def __init__(
        self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, tuple[float, str]] = {}
        self._planned: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key: str, snap: ClusterSnapshot) -> bool:
        with self._lock:
            last = self._last.get(key)
        if last is None:
            return True
        at, seen = last
        return self._clock() - at >= self.interval_s and fingerprint(snap) != seen

    def record(self, key: str, snap: ClusterSnapshot) -> None:
        with self._lock:
            self._last[key] = (self._clock(), fingerprint(snap))

    def planned(self, key: str, snap: ClusterSnapshot, cost: float) -> None:
        """A plan of the whole deployment was just made on ``snap`` (none of its pods present):
        its ``cost`` (intra + traffic) is the achievable one until the next recompute."""
        with self._lock:
            self._last[key] = (self._clock(), fingerprint(snap))
            self._planned[key] = cost

    def take_planned(self, key: str) -> float | None:
        """The cost :meth:`planned` kept for ``key`` (once: later scores are recomputed)."""
        with self._lock:
            return self._planned.pop(key, None)

    def forget(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)
            self._planned.pop(key, None)


def achievable(
    snap: ClusterSnapshot,
    request: Request,
    own: Mapping[str, tuple[str, tuple[int, ...], str]],
) -> float | None:
    """intra + traffic of a fresh plan of ``request`` with the deployment's own pods released
    (``own``: pod name -> (node, GPUs, role)); None when the fresh plan does not fit."""
    gpus: dict[int, int] = {}
    pods: dict[int, tuple[int, int, int]] = {}
    roles = {r.name: r for r in request.roles}
    for node, indices, role in own.values():
        row = snap.index.row_of.get(node)
        if row is None:
            continue
        gpus[row] = gpus.get(row, 0) | mask_of(indices)
        shape = roles.get(role)
        cpu, mem = (shape.cpu_millis, shape.memory_bytes) if shape else (0, 0)
        before = pods.get(row, (0, 0, 0))
        pods[row] = (before[0] + cpu, before[1] + mem, before[2] + 1)
    plan = solver.solve(snap.with_released(gpus, pods), request)
    if not plan.feasible:
        return None
    return plan.cost.intra + plan.cost.traffic


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

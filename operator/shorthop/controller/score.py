"""The placement score in status (``status.placementScore``) and the
``shorthop_placement_score`` metric: the cost of the pods where they run now against the cost of
a fresh plan of the whole deployment on the current cluster (its own GPUs counted free), so users
see when churn has left them far from what is achievable.

A fresh plan is a full solve, so it is not made on every visit: :class:`Scores` lets one through
for a deployment only when it is fully placed and idle (the caller checks), and only when it was
never scored, or the deployment itself changed since (its spec's generation or where its pods
run: a scale or a repair), or ``interval_s`` passed and the cluster's free GPUs changed since the
last one (a fingerprint of the snapshot's free-GPU bitsets). A plan of the whole deployment from
nothing (no pod of it present) *is* a fresh plan on the cluster of that moment:
:meth:`Scores.planned` keeps its cost as the achievable one and starts the interval, so a newly
placed deployment costs no score solve at all.

Every score solve is charged to one CPU budget (:data:`BUDGET_SHARE` of one core since the start,
plus :data:`BUDGET_BURST_S`; :meth:`Scores.compute` charges each) and none runs beyond it, so
the score never competes with placing pods: without it, N deployments on a busy cluster cost N
full solves a minute, and in the scale soak (chaos/test_soak.py) the recomputes after each scale
were 40 % of the operator's busy CPU, more than its placements. A deployment refused keeps its
last score while that score is of the placement it reports (its ``current`` equals the status'
cost), and has none until a later visit otherwise: a number for a placement that is gone is
never shown (:func:`status_entry`).

Nor is a transient placement scored: a due recompute waits until the operator has placed nothing
for :data:`SETTLE_S` (the visit asks to come back then), since a deployment being scaled, or any
deployment around it being placed, is likely to change again; in the scale soak every scale was
followed by a scale-back within seconds, and a score of either state was a solve thrown away. A
recompute never waits longer than the interval, so a cluster that is never quiet still gets its
scores.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shorthop.metrics import Metrics
from shorthop.placement import occupancy, solver
from shorthop.placement.bitsets import mask_of
from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.triage import PodState

INTERVAL_S = 60.0
BUDGET_SHARE = 0.05  # of one core, for every score solve
BUDGET_BURST_S = 2.0
SETTLE_S = 5.0  # no placement for this long: the cluster settled, a score may be computed


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
        self,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        *,
        share: float = BUDGET_SHARE,
        burst_s: float = BUDGET_BURST_S,
        cpu: Callable[[], float] = time.thread_time,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.interval_s = interval_s
        self.settle_s = settle_s
        self._placed_at = -float("inf")  # the operator's last placement (any deployment)
        self._waiting: dict[str, float] = {}  # key -> since when a due recompute waits
        self._clock = clock
        self._cpu = cpu
        self._last: dict[str, tuple[float, str, str]] = {}  # time, free GPUs, placement
        self._planned: dict[str, float] = {}
        self._lock = threading.Lock()
        self._share, self._burst_s = share, burst_s
        self._started = clock()
        self._spent_s = 0.0  # CPU seconds of every score solve so far

    def placing(self) -> None:
        """The operator just placed pods (of any deployment): the cluster is not settled."""
        with self._lock:
            self._placed_at = self._clock()

    def wait_s(self, key: str) -> float:
        """0 when a due recompute of ``key`` may run now, else how long it should wait for the
        cluster to settle (the first wait starts its clock: never longer than the interval)."""
        with self._lock:
            now = self._clock()
            since = self._waiting.setdefault(key, now)
            left = self._placed_at + self.settle_s - now
            if left <= 0 or now - since >= self.interval_s:
                return 0.0
            return left

    def within_budget(self) -> bool:
        """Whether a score solve may run now (see the module docstring)."""
        with self._lock:
            allowed = self._share * (self._clock() - self._started) + self._burst_s
            return self._spent_s < allowed

    def compute(
        self,
        key: str,
        snap: ClusterSnapshot,
        placement: str,
        request: Request,
        own: Mapping[str, tuple[str, tuple[int, ...], str]],
    ) -> float | None:
        """:func:`achievable` for deployment ``key``, recorded and charged to the budget."""
        started = self._cpu()
        fresh = achievable(snap, request, own)
        spent = self._cpu() - started
        self.record(key, snap, placement)
        with self._lock:
            self._waiting.pop(key, None)
            self._spent_s += max(0.0, spent)
        return fresh

    def due(self, key: str, snap: ClusterSnapshot, placement: str = "") -> bool:
        """``placement``: what the deployment is and where it runs (any change makes it due
        before the interval). Never beyond the CPU budget."""
        with self._lock:
            last = self._last.get(key)
        if not self.within_budget():
            return False
        if last is None:
            return True
        at, seen, placed = last
        if placed != placement:
            return True
        return self._clock() - at >= self.interval_s and fingerprint(snap) != seen

    def record(self, key: str, snap: ClusterSnapshot, placement: str = "") -> None:
        with self._lock:
            self._last[key] = (self._clock(), fingerprint(snap), placement)

    def planned(self, key: str, snap: ClusterSnapshot, cost: float) -> None:
        """A plan of the whole deployment was just made on ``snap`` (none of its pods present):
        its ``cost`` (intra + traffic) is the achievable one until the next recompute."""
        with self._lock:
            self._last[key] = (self._clock(), fingerprint(snap), "")
            self._planned[key] = cost

    def take_planned(self, key: str, placement: str = "") -> float | None:
        """The cost :meth:`planned` kept for ``key`` (once: later scores are recomputed), for
        the deployment as ``placement`` describes it (what it is and where it runs now)."""
        with self._lock:
            cost = self._planned.pop(key, None)
            last = self._last.get(key)
            if cost is not None and last is not None:
                self._last[key] = (last[0], last[1], placement)
            return cost

    def forget(self, key: str) -> None:
        with self._lock:
            self._waiting.pop(key, None)
            self._last.pop(key, None)
            self._planned.pop(key, None)


def status_entry(
    scores: Scores,
    metrics: Metrics,
    snap: ClusterSnapshot,
    key: str,
    request: Request,
    own: Mapping[str, tuple[str, tuple[int, ...], str]],
    new: dict[str, Any],
    old: Mapping[str, Any],
    *,
    idle: bool,
) -> float | None:
    """Set ``new["placementScore"]`` (and the metrics) for deployment ``key``: a planned or
    recomputed score when :class:`Scores` has one or lets one through, else the last one while it
    is of the placement ``new`` reports, else none. Returns the seconds after which to visit
    again when a due recompute waits for the cluster to settle, else None."""
    current = float(new.get("cost", {}).get("total", 0.0))
    # A scale or a repair changes the deployment: its score is due before the interval.
    placement = repr((new.get("observedGeneration"), sorted(own.values())))
    ready = idle and new.get("phase") == "Running"
    fresh = scores.take_planned(key, placement) if ready else None
    namespace, _, name = key.partition("/")
    kept = old.get("placementScore") or {}
    again: float | None = None
    if fresh is None and ready and scores.due(key, snap, placement):
        again = scores.wait_s(key) or None
        if again is None:
            fresh = scores.compute(key, snap, placement, request, own)
    if fresh is None:
        if kept and (not ready or kept.get("current") == round(current, 3)):
            new["placementScore"] = kept
        elif kept:  # of a placement that is gone: none until the next recompute
            with contextlib.suppress(KeyError):
                metrics.score.remove(namespace, name)
        return again
    result = Score(current, fresh, now())
    fresh_json = result.to_json()
    same = all(kept.get(k) == fresh_json[k] for k in ("current", "achievable", "ratio"))
    # Unchanged: keep the old entry (and its time), so the visit writes nothing.
    new["placementScore"] = dict(kept) if same else fresh_json
    metrics.score.labels(namespace, name).set(result.ratio)
    metrics.cost.labels(namespace, name, "achievable").set(fresh)
    return None


def own_pods(pods: Iterable[PodState]) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """The deployment's placed pods as :func:`achievable` releases them (and as the placement
    that makes a score due when it changes): pod name -> (node, GPUs, role)."""
    return {
        p.name: (str(p.node), tuple(p.exact or ()), str(p.role))
        for p in pods
        if p.node and p.exact and p.role and p.active and not p.deleting
    }


def achievable(
    snap: ClusterSnapshot,
    request: Request,
    own: Mapping[str, tuple[str, tuple[int, ...], str]],
) -> float | None:
    """intra + traffic of a fresh plan of ``request`` with the deployment's own pods released
    (``own``: pod name -> (node, GPUs, role)); None when the fresh plan does not fit."""
    gpus: dict[int, int] = {}
    pods: dict[int, tuple[int, int, int]] = {}
    other: dict[int, occupancy.Amounts] = {}
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
        if shape is not None and shape.other:
            other[row] = other.get(row, ()) + shape.other
    plan = solver.solve(snap.with_released(gpus, pods, other), request)
    if not plan.feasible:
        return None
    return plan.cost.intra + plan.cost.traffic


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

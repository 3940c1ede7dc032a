"""The gauges the reconciler keeps beside the deployments' status: pods per tier over every
deployment, and the cluster's free and stranded GPUs per NVLink domain and node label issues.

Split off :mod:`controller.reconcile` (which decides what to write) so that module stays about
one visit; both run under the reconciler's threads, hence the lock: a refresh clears and refills
a gauge, and two refreshes must not interleave.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from shorthop import manifest
from shorthop import metrics as metrics_module
from shorthop.api import models
from shorthop.controller.live import LiveCluster
from shorthop.errors import SpecError
from shorthop.views import summary

SIZES_KEPT = 100_000  # deployment generations whose pod sizes are remembered (then start over)


class Gauges:
    def __init__(self, metrics: metrics_module.Metrics) -> None:
        self.metrics = metrics
        self._tier_pods: dict[str, Counter[str]] = {}
        self._pod_sizes: dict[tuple[str, Any], tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def count_tiers(self, key: str, status: Mapping[str, Any]) -> None:
        """The pods of deployment ``key`` by the widest tier of their replica (its new status)."""
        counts: Counter[str] = Counter()
        for replica in status.get("replicas") or []:
            counts[str(replica.get("tier"))] += len(replica.get("pods") or [])
        with self._lock:
            self._tier_pods[key] = counts
            self._publish_tiers()

    def forget(self, key: str) -> None:
        with self._lock:
            self._tier_pods.pop(key, None)
            self._publish_tiers()

    def _publish_tiers(self) -> None:
        total: Counter[str] = Counter()
        for counts in self._tier_pods.values():
            total.update(counts)
        self.metrics.pods_per_tier.clear()
        for tier, n in total.items():
            self.metrics.pods_per_tier.labels(tier=tier).set(n)

    def _smallest_pods(self, body: Mapping[str, Any]) -> tuple[int, ...]:
        """GPUs per pod of each role of ``body``; parsed once per deployment generation (the
        gauges are refreshed after every burst of pod events, over every deployment)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("uid")), meta.get("generation"))
        found = self._pod_sizes.get(key)
        if found is None:
            found = tuple(r.gpus_per_pod or r.gpus_per_replica for r in _roles(body))
            if len(self._pod_sizes) >= SIZES_KEPT:
                self._pod_sizes.clear()
            self._pod_sizes[key] = found
        return found

    def publish_cluster(self, live: LiveCluster, bodies: Iterable[Mapping[str, Any]]) -> None:
        """Free and stranded GPUs per NVLink domain (``views.summary``; stranded for the
        smallest pod any deployment of ``bodies`` asks for), node label issues."""
        snap = live.snapshot()
        smallest = min((s for body in bodies for s in self._smallest_pods(body)), default=1)
        domains = summary.nvlink_capacity(snap, smallest)
        issues: Counter[tuple[str, str]] = Counter()
        for issue in live.issues():
            if issue.severity == "warning":
                issues[(issue.field, str(issue.excluded).lower())] += 1
        with self._lock:
            self.metrics.free_gpus.clear()
            self.metrics.stranded.clear()
            for domain in domains:
                self.metrics.free_gpus.labels(nvlink_domain=domain.name).set(domain.free)
                self.metrics.stranded.labels(nvlink_domain=domain.name).set(domain.stranded)
            self.metrics.node_issues.clear()
            for (field, excluded), n in issues.items():
                self.metrics.node_issues.labels(field=field, excluded=excluded).set(n)


def _roles(body: Mapping[str, Any]) -> list[models.Role]:
    try:
        return list(manifest.parse_deployment(body).spec.roles)
    except SpecError:
        return []

"""Prometheus metrics of the operator, created against a given ``CollectorRegistry`` (each test
gets a fresh one) and served by ``serve``.

=====================================  =========  ================================================
metric                                 type       meaning
=====================================  =========  ================================================
shorthop_placement_latency_seconds     histogram  time to plan one deployment
shorthop_snapshot_refresh_seconds      histogram  time to bring the snapshot up to date for a plan
shorthop_plan_cost                     gauge      intra-replica and traffic cost per deployment,
                                                  and the achievable cost of a fresh plan
shorthop_placement_score               gauge      current cost / achievable cost (1.0: as good
                                                  as a fresh plan; see controller/score.py)
shorthop_pods_per_tier                 gauge      pods by the widest tier of their replica
shorthop_unschedulable_deployments     gauge      deployments waiting for room
shorthop_free_gpus                     gauge      free GPUs per NVLink domain ("none": outside any)
shorthop_stranded_gpus                 gauge      free GPUs per NVLink domain on nodes with fewer
                                                  free GPUs than the smallest pod asks for
shorthop_reconcile_errors_total        counter    reconcile failures by reason
shorthop_binds_total                   counter    bind results (bound, conflict, error)
shorthop_node_label_issues             gauge      nodes with label problems, by field
shorthop_leader                        gauge      1 on the active instance, 0 on standbys
=====================================  =========  ================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shorthop.errors import ConfigError


@dataclass
class Metrics:
    registry: CollectorRegistry
    latency: Histogram
    snapshot: Histogram
    cost: Gauge
    score: Gauge
    pods_per_tier: Gauge
    unschedulable: Gauge
    free_gpus: Gauge
    stranded: Gauge
    errors: Counter
    binds: Counter
    node_issues: Gauge
    leader: Gauge


def create(registry: CollectorRegistry | None = None) -> Metrics:
    registry = registry or CollectorRegistry()
    return Metrics(
        registry=registry,
        latency=Histogram(
            "shorthop_placement_latency_seconds",
            "Time to plan one deployment",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        ),
        snapshot=Histogram(
            "shorthop_snapshot_refresh_seconds",
            "Time to bring the cluster snapshot up to date for one plan (the rows events touched)",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        ),
        cost=Gauge(
            "shorthop_plan_cost",
            "Plan cost (hop-distance units)",
            ["namespace", "deployment", "component"],
            registry=registry,
        ),
        score=Gauge(
            "shorthop_placement_score",
            "Current cost / cost of a fresh plan on the current cluster (1.0 is achievable)",
            ["namespace", "deployment"],
            registry=registry,
        ),
        pods_per_tier=Gauge(
            "shorthop_pods_per_tier",
            "Pods by the widest tier of their replica",
            ["tier"],
            registry=registry,
        ),
        unschedulable=Gauge(
            "shorthop_unschedulable_deployments", "Deployments waiting for room", registry=registry
        ),
        free_gpus=Gauge(
            "shorthop_free_gpus",
            "Free GPUs per NVLink domain",
            ["nvlink_domain"],
            registry=registry,
        ),
        stranded=Gauge(
            "shorthop_stranded_gpus",
            "Free GPUs per NVLink domain on nodes with fewer free GPUs than the smallest pod",
            ["nvlink_domain"],
            registry=registry,
        ),
        errors=Counter(
            "shorthop_reconcile_errors_total", "Reconcile failures", ["reason"], registry=registry
        ),
        binds=Counter("shorthop_binds_total", "Bind results", ["result"], registry=registry),
        node_issues=Gauge(
            "shorthop_node_label_issues",
            "Nodes with label problems",
            ["field", "excluded"],
            registry=registry,
        ),
        leader=Gauge(
            "shorthop_leader", "1 when this instance is the active one", registry=registry
        ),
    )


def serve(metrics: Metrics, port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on ``port`` from a daemon thread (0 disables it)."""
    if port:
        try:
            start_http_server(port, addr=address, registry=metrics.registry)
        except OSError as exc:
            raise ConfigError(
                "metricsPort", f"cannot listen on port {port} ({exc.strerror}); pick a free port"
            ) from None

"""Placement latency (issue C) and the speed ratio against the NetworkX reference.

**Latency.** For every cluster size and seed (background occupancy 40/55/70%), the snapshot is
built once (``snapshot.build``: labels, index, pods; timed apart), then:

1. the static state is forgotten (the domain tree, ``placement.tree.tree``, kept with the index,
   and the per-node-class subset tables, ``placement.subsets.table``; both are static per index
   generation) and rebuilt on its own: *static-state build*;
2. the caches are cleared again and the first ``solver.solve`` runs cold: *first call*;
3. ``solves`` more calls are timed one by one: the per-plan latency (p50/p99 over all seeds).

The deployment is ``common.deployment()``: 16 prefill x (1 pod x 4 GPUs) + 16 decode x (2 pods x
4 GPUs), traffic prefill -> decode (32 replicas, 192 GPUs). When it does not fit some seed's
snapshot at a size, that size uses a smaller one (halving both roles) and the report says so.

**NetworkX ratio.** On the first seed's snapshot of each size, ``networkx_reference`` plans the
same request; its time (median of a few runs, or a lower bound when it hits its time limit) is
divided by shorthop's p50 on that snapshot. Both plans are checked for validity, and the
reference's own graph-distance cost is compared with the objective's index-based cost.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shorthop.placement import snapshot as snapshots
from shorthop.placement import solver, subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.plan import Plan
from shorthop.placement.request import Request
from shorthop.topology import fake, graph
from shorthop.topology.index import IndexBuilder

from bench import common
from bench.networkx_reference import NetworkXReference, ReferenceTimeout

Log = Callable[[str], None]


@dataclass
class LatencyRun:
    """One (size, seed) snapshot: its build time, the cold first call and the timed solves."""

    seed: int
    occupancy: float
    nodes: int
    gpus: int
    free_gpus: int
    snapshot_build_s: float
    snapshot_warm_s: float  # snapshot.build again with a warm IndexBuilder, nothing changed
    static_build_s: float
    first_call_s: float
    times_s: list[float]
    feasible: bool
    problems: list[str]
    cost: dict[str, float]
    tiers: dict[str, int]


@dataclass
class LatencySize:
    size: int
    request: str
    shrunk: bool
    runs: list[LatencyRun] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [t for run in self.runs for t in run.times_s]

    @property
    def p50(self) -> float:
        return common.percentile(self.times, 50)

    @property
    def p99(self) -> float:
        return common.percentile(self.times, 99)

    @property
    def fastest(self) -> float:
        return min(self.times)

    @property
    def nodes(self) -> int:
        return self.runs[0].nodes

    @property
    def gpus(self) -> int:
        return self.runs[0].gpus

    @property
    def valid(self) -> bool:
        return all(run.feasible and not run.problems for run in self.runs)


@dataclass
class ReferenceRun:
    size: int
    nodes: int
    request: str
    graph_build_s: float
    shorthop_p50_s: float
    reference_s: float  # median of the runs, or the time at which it was stopped
    runs: int
    capped: bool
    time_limit_s: float
    replicas_done: int
    replicas: int
    shorthop_valid: bool
    reference_valid: bool | None  # None when it was stopped
    shorthop_cost: dict[str, float]
    reference_cost: dict[str, float] | None
    graph_cost_matches: bool | None
    dijkstra_runs: int
    pair_queries: int

    @property
    def ratio(self) -> float:
        return self.reference_s / self.shorthop_p50_s


@dataclass
class PlacementResult:
    latency: list[LatencySize]
    reference: list[ReferenceRun]


def clear_static_caches(c: common.Cluster) -> None:
    """Forget the static per-index state the solver keeps (domain tree, subset tables)."""
    c.snapshot.index.forget_derived()
    subsets.table.cache_clear()


def build_static(c: common.Cluster) -> None:
    idx = c.snapshot.index
    domain_tree.tree(idx)
    for cls in idx.classes:
        subsets.table(cls)


SHRINK_STEPS = (16, 12, 8, 6, 4, 3, 2, 1)  # replicas per role


def _request_for(clusters: list[common.Cluster]) -> tuple[Request, bool]:
    """The benchmark deployment, or the largest smaller one that fits every snapshot."""
    for replicas in SHRINK_STEPS:
        request = common.deployment(replicas, replicas)
        if all(solver.solve(c.snapshot, request).feasible for c in clusters):
            break
    return request, replicas != SHRINK_STEPS[0]


def _warm_snapshot_build(c: common.Cluster) -> float:
    """``snapshot.build`` with a long-lived ``IndexBuilder`` (as the controller keeps one) that
    already holds every node, nothing changed: the per-cycle cost of a fresh snapshot."""
    builder = IndexBuilder(common.CONFIG)
    snapshots.build(c.nodes, c.pods, common.CONFIG, builder=builder)
    took, _ = common.timed(lambda: snapshots.build(c.nodes, c.pods, common.CONFIG, builder=builder))
    return took


def _time_one(c: common.Cluster, request: Request, solves: int) -> LatencyRun:
    clear_static_caches(c)
    static_s, _ = common.timed(lambda: build_static(c))
    clear_static_caches(c)
    gc.collect()
    first_s, plan = common.timed(lambda: solver.solve(c.snapshot, request))
    times = []
    for _ in range(solves):
        start = time.perf_counter()
        again = solver.solve(c.snapshot, request)
        times.append(time.perf_counter() - start)
    problems = common.plan_problems(c.snapshot, request, plan)
    if again.to_json() != plan.to_json():
        problems.append("not deterministic: a later solve returned a different plan")
    return LatencyRun(
        seed=c.seed,
        occupancy=c.occupancy,
        nodes=c.node_count,
        gpus=c.gpus,
        free_gpus=c.free_gpus,
        snapshot_build_s=c.build_s,
        snapshot_warm_s=_warm_snapshot_build(c),
        static_build_s=static_s,
        first_call_s=first_s,
        times_s=times,
        feasible=plan.feasible,
        problems=problems if plan.feasible else [],
        cost=plan.cost.to_json(),
        tiers=dict(plan.tiers),
    )


def _reference(
    c: common.Cluster,
    request: Request,
    shorthop_p50: float,
    *,
    runs: int,
    time_limit_s: float,
) -> ReferenceRun:
    graph_s, g = common.timed(
        lambda: graph.build_graph(fake.topologies(c.nodes, common.CONFIG), common.CONFIG)
    )
    ref = NetworkXReference(g, time_limit_s=time_limit_s)
    mine: Plan = solver.solve(c.snapshot, request)
    times: list[float] = []
    plan: Plan | None = None
    capped, done = False, 0
    replicas = sum(r.replicas for r in request.roles)
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        try:
            plan = ref.place(c.snapshot, request)
        except ReferenceTimeout as stop:
            capped, done = True, stop.replicas_done
            times.append(stop.elapsed)
            break
        times.append(time.perf_counter() - start)
        done = replicas
    reference_valid = None
    graph_matches = None
    reference_cost = None
    if plan is not None and not capped:
        reference_valid = not common.plan_problems(c.snapshot, request, plan)
        reference_cost = plan.cost.to_json()
        if plan.feasible:
            # The graph sums distances in another order: equal up to float rounding.
            g_intra, g_traffic = ref.graph_cost
            graph_matches = g_intra == plan.cost.intra and math.isclose(
                g_traffic, plan.cost.traffic, rel_tol=1e-9, abs_tol=1e-6
            )
    return ReferenceRun(
        size=c.size,
        nodes=c.node_count,
        request=common.describe(request),
        graph_build_s=graph_s,
        shorthop_p50_s=shorthop_p50,
        reference_s=statistics.median(times) if not capped else times[-1],
        runs=len(times),
        capped=capped,
        time_limit_s=time_limit_s,
        replicas_done=done,
        replicas=replicas,
        shorthop_valid=not common.plan_problems(c.snapshot, request, mine),
        reference_valid=reference_valid,
        shorthop_cost=mine.cost.to_json(),
        reference_cost=reference_cost,
        graph_cost_matches=graph_matches,
        dijkstra_runs=ref.dijkstra_runs,
        pair_queries=ref.pair_queries,
    )


def run(
    sizes: tuple[int, ...],
    seeds: tuple[int, ...],
    *,
    solves: int,
    reference_sizes: tuple[int, ...],
    reference_runs: Callable[[int], int],
    reference_limit_s: float,
    log: Log = print,
) -> PlacementResult:
    latency, reference = [], []
    for size in sizes:
        clusters = [common.cluster(size, seed) for seed in seeds]
        request, shrunk = _request_for(clusters)
        result = LatencySize(size, common.describe(request), shrunk)
        for c in clusters:
            result.runs.append(_time_one(c, request, solves))
        latency.append(result)
        log(
            f"placement {size}: p50 {result.p50 * 1e3:.1f} ms, p99 {result.p99 * 1e3:.1f} ms "
            f"({len(result.times)} solves){' [shrunk]' if shrunk else ''}"
        )
        if size in reference_sizes:
            first = clusters[0]
            p50 = common.percentile(result.runs[0].times_s, 50)
            ref = _reference(
                first,
                request,
                p50,
                runs=reference_runs(size),
                time_limit_s=reference_limit_s,
            )
            reference.append(ref)
            bound = ">= " if ref.capped else ""
            log(
                f"networkx reference {size}: {ref.reference_s:.2f} s vs {p50 * 1e3:.1f} ms "
                f"= {bound}{ref.ratio:.0f}x"
            )
        del clusters
        gc.collect()
    return PlacementResult(latency, reference)

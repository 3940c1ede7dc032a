"""Placement quality (issue C): how good shorthop's plans are, not how fast.

(a) **Exact optimum.** Random small instances (at most 4 nodes of up to 8 GPUs, mixed HGX /
    NVL72-tray / PCIe nodes in two racks and blocks, some GPUs already taken; at most 4 pods of
    1, 2 or 4 GPUs in prefill and decode roles, traffic weight 0.5, 1 or 2), generated with a
    seeded ``random.Random`` following ``tests/builders.py``'s strategies. ``placement.exact``
    (branch and bound) and ``solver.solve`` plan each; the (intra, traffic) cost keys must be
    equal, and both must agree on feasibility. Instances the exact solver refuses
    (``ExactTooLarge``) or cannot finish within a time limit are counted, not compared.

(b) **Baselines.** Every placer of ``placers.all_placers()`` (shorthop, first-fit, spread, tas,
    random) plans the benchmark deployment on the same 1,000- and 10,000-node snapshots:
    intra-replica cost, traffic cost, prefill<->decode GPU pairs per tier, the share of those
    pairs on NVLink tiers (``same-node-nvlink`` + ``nvlink-domain``), and planning time (one call
    each, after the static state is built).

(c) **Stranding.** A stream of deployments of realistic shapes (``STREAM_SHAPES``), placed one
    after another with each strategy on the same 1,000-node snapshot; each placed pod is added to
    the pod list with shorthop's GPU annotation (``shorthop.io/gpus``) and the next snapshot is
    built from it. Reported: deployments placed before the first failure, deployments placed in
    all (failures are skipped), and stranded GPUs (defined in :func:`stranded`).
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

import numpy as np
from shorthop.placement import exact, placers, solver
from shorthop.placement import snapshot as snapshots
from shorthop.placement.plan import Plan
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.topology.index import IndexBuilder

from bench import common
from bench.placement import build_static
from tests import builders

Log = Callable[[str], None]
NVLINK_TIERS = ("same-node-nvlink", "nvlink-domain")
LARGEST_POD = 4  # GPUs
LARGEST_REPLICA = 16  # GPUs: 4 pods x 4 GPUs


# -- (a) exact optimum ---------------------------------------------------------------------------


def small_instance(
    seed: int, *, max_nodes: int = 4, max_gpus: int = 8, max_pods: int = 4
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Request]:
    """Nodes, pods and a request; ``builders.small_clusters`` / ``small_requests`` drawn from a
    seeded ``random.Random`` (at most half of each node's GPUs taken, so most instances fit)."""
    rng = random.Random(seed)
    nodes, pods = [], []
    for i in range(rng.randint(1, max_nodes)):
        kind = rng.choice(["hgx", "tray", "pcie"])
        gpus = rng.randint(1, 4 if kind == "tray" else max_gpus)
        clique = rng.choice([None, "k1", "k2"]) if kind == "tray" else None
        rack, block = rng.choice(["r1", "r2"]), rng.choice(["b1", "b2"])
        nodes.append(
            builders.node_object(f"n{i}", kind, gpus, clique=clique, rack=rack, block=block)
        )
        taken = sorted(rng.sample(range(gpus), rng.randint(0, gpus // 2)))
        if taken:
            pods.append(builders.gpu_pod(f"bg{i}", f"n{i}", taken))
    while True:
        roles, budget = [], max_pods
        for name in ("prefill", "decode"):
            pods_per_replica = rng.randint(1, 2)
            replicas = rng.randint(0, max(0, budget // pods_per_replica))
            budget -= replicas * pods_per_replica
            roles.append(RoleRequest(name, replicas, pods_per_replica, rng.choice([1, 2, 4])))
        if sum(r.replicas for r in roles) > 0:
            break
    weight = rng.choice([1.0, 0.5, 2.0])
    return nodes, pods, Request(roles=tuple(roles), traffic=(TrafficEdge(0, 1, weight),))


class _TimeLimit(Exception):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the body after ``seconds`` (SIGALRM; main thread only)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _TimeLimit

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class ExactResult:
    instances: int = 0
    compared: int = 0  # both feasible: costs compared
    equal: int = 0
    both_infeasible: int = 0
    gaps: list[tuple[int, str, str]] = field(default_factory=list)  # seed, shorthop, exact
    feasibility_mismatch: list[int] = field(default_factory=list)
    too_large: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    exact_s: float = 0.0
    shorthop_s: float = 0.0
    time_limit_s: float = 0.0
    slowest_exact_s: float = 0.0


def run_exact(target: int, *, time_limit_s: float, log: Log = print) -> ExactResult:
    """Instances from seed 0 up until ``target`` of them had a feasible optimum to compare."""
    out = ExactResult(time_limit_s=time_limit_s)
    seed = 0
    while out.compared < target and seed < 20 * target:
        nodes, pods, request = small_instance(seed)
        snap = snapshots.build(nodes, pods, common.CONFIG)
        out.instances += 1
        start = time.perf_counter()
        try:
            with _time_limit(time_limit_s):
                best = exact.solve(snap, request)
        except exact.ExactTooLarge:
            out.too_large.append(seed)
            seed += 1
            continue
        except _TimeLimit:
            out.timed_out.append(seed)
            seed += 1
            continue
        took = time.perf_counter() - start
        out.exact_s += took
        out.slowest_exact_s = max(out.slowest_exact_s, took)
        took, plan = common.timed(partial(solver.solve, snap, request))
        out.shorthop_s += took
        if plan.feasible != best.feasible:
            out.feasibility_mismatch.append(seed)
        elif not best.feasible:
            out.both_infeasible += 1
        else:
            out.compared += 1
            if plan.cost.key() == best.cost.key():
                out.equal += 1
            else:
                out.gaps.append((seed, str(plan.cost.key()), str(best.cost.key())))
        seed += 1
    log(
        f"exact: {out.equal}/{out.compared} equal, {len(out.gaps)} gaps, "
        f"{len(out.feasibility_mismatch)} feasibility mismatches, {out.instances} instances"
    )
    return out


# -- (b) baselines -------------------------------------------------------------------------------


@dataclass
class BaselineRow:
    strategy: str
    feasible: bool
    valid: bool
    reason: str
    intra: int
    traffic: float
    tiers: dict[str, int]
    seconds: float

    @property
    def pairs(self) -> int:
        return sum(self.tiers.values())

    @property
    def nvlink_share(self) -> float:
        return sum(self.tiers.get(t, 0) for t in NVLINK_TIERS) / self.pairs if self.pairs else 0.0


@dataclass
class BaselineSize:
    size: int
    nodes: int
    gpus: int
    free_gpus: int
    occupancy: float
    request: str
    tiers: tuple[str, ...]
    rows: list[BaselineRow]


def run_baselines(sizes: tuple[int, ...], seed: int, *, log: Log = print) -> list[BaselineSize]:
    out = []
    request = common.deployment()
    for size in sizes:
        c = common.cluster(size, seed)
        build_static(c)
        rows = []
        for placer in placers.all_placers(seed=0):
            took, plan = common.timed(partial(placer.place, c.snapshot, request))
            problems = common.plan_problems(c.snapshot, request, plan) if plan.feasible else []
            rows.append(
                BaselineRow(
                    strategy=placer.name,
                    feasible=plan.feasible,
                    valid=plan.feasible and not problems,
                    reason="; ".join(r.message() for r in plan.reasons) or "; ".join(problems),
                    intra=plan.cost.intra,
                    traffic=plan.cost.traffic,
                    tiers=dict(plan.tiers),
                    seconds=took,
                )
            )
        out.append(
            BaselineSize(
                size=size,
                nodes=c.node_count,
                gpus=c.gpus,
                free_gpus=c.free_gpus,
                occupancy=c.occupancy,
                request=common.describe(request),
                tiers=c.snapshot.index.tiers,
                rows=rows,
            )
        )
        log(f"baselines {size}: " + ", ".join(f"{r.strategy} {r.seconds:.2f}s" for r in rows))
    return out


# -- (c) stranding -------------------------------------------------------------------------------

# (name, prefill (pods per replica, GPUs per pod), decode (pods, GPUs), replicas per role (lo, hi))
STREAM_SHAPES: tuple[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]], ...] = (
    ("8B, TP1", (1, 1), (1, 1), (4, 16)),
    ("70B, TP4", (1, 4), (1, 4), (2, 8)),
    ("70B, TP4 prefill / TP8 decode", (1, 4), (2, 4), (2, 8)),
    ("405B, TP8 prefill / TP16 decode", (2, 4), (4, 4), (1, 4)),
    ("DeepSeek-V3, TP16", (4, 4), (4, 4), (1, 4)),
)


def stream(count: int, seed: int) -> list[tuple[str, Request]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name, (pp, pq), (dp, dq), (lo, hi) = rng.choice(STREAM_SHAPES)
        request = Request(
            roles=(
                RoleRequest("prefill", rng.randint(lo, hi), pp, pq),
                RoleRequest("decode", rng.randint(lo, hi), dp, dq),
            ),
            traffic=(TrafficEdge(0, 1, 1.0),),
            name=f"d{i:02d}",
        )
        out.append((name, request))
    return out


@dataclass
class Stranded:
    """Free GPUs at one moment, and how many of them the largest replica can still use."""

    free: int
    usable: int  # by 4-GPU pods of 16-GPU replicas confined to one rack
    slots: int  # how many such replicas still fit (rack by rack)

    @property
    def stranded(self) -> int:
        return self.free - self.usable


def stranded(snap: snapshots.ClusterSnapshot) -> Stranded:
    """Free GPUs a 16-GPU replica (4 pods x 4 GPUs) confined to one rack can still use.

    A node offers ``4 * floor(free / 4)`` GPUs to 4-GPU pods; a rack (the finest network domain:
    one NVL72 rack = one NVLink domain, or one HGX scalable unit) can host such a replica when the
    sum of its nodes' offers is at least 16. A free GPU is *stranded* when it is not part of an
    offer of a rack that can host one: a remainder (< 4 free on its node) or a rack whose offers sum
    to less than 16.
    """
    idx = snap.index
    counts = snap.free_counts
    offer = (counts // LARGEST_POD) * LARGEST_POD
    racks: dict[int, int] = {}
    for row in np.flatnonzero(idx.alive & snap.schedulable).tolist():
        rack = int(idx.dom[row, -1])
        racks[rack] = racks.get(rack, 0) + int(offer[row])
    usable = sum(v for v in racks.values() if v >= LARGEST_REPLICA)
    slots = sum(v // LARGEST_REPLICA for v in racks.values())
    return Stranded(int(counts.sum()), usable, slots)


@dataclass
class StreamRow:
    strategy: str
    placed_before_failure: int
    placed: int
    failed: list[int]  # deployment numbers that did not fit
    gpus_placed: int
    nvlink_share: float
    at_first_failure: Stranded | None
    at_end: Stranded
    seconds: float


@dataclass
class StreamResult:
    size: int
    nodes: int
    occupancy: float
    deployments: int
    gpus_requested: int
    shapes: dict[str, int]
    start: Stranded
    rows: list[StreamRow]


def _pods_of(plan: Plan, namespace: str) -> list[dict[str, Any]]:
    out = []
    for a in plan.assignments:
        pod = builders.gpu_pod(
            f"{namespace}-{a.key.role}-{a.key.replica}-{a.key.pod}", a.node, list(a.gpus)
        )
        pod["metadata"]["namespace"] = namespace
        out.append(pod)
    return out


def run_stream(
    size: int, seed: int, count: int, occupancy: float, *, log: Log = print
) -> StreamResult:
    base = common.cluster(size, seed, occupancy)
    deployments = stream(count, seed)
    rows = []
    for placer in placers.all_placers(seed=0):
        start = time.perf_counter()
        builder = IndexBuilder(common.CONFIG)
        pods = list(base.pods)
        snap = snapshots.build(base.nodes, pods, common.CONFIG, builder=builder)
        failed: list[int] = []
        first_failure: Stranded | None = None
        gpus = pairs = nvlink = 0
        for i, (_, request) in enumerate(deployments):
            plan = placer.place(snap, request)
            if not plan.feasible:
                failed.append(i)
                if first_failure is None:
                    first_failure = stranded(snap)
                continue
            problems = common.plan_problems(snap, request, plan)
            assert not problems, (placer.name, i, problems)
            gpus += sum(len(a.gpus) for a in plan.assignments)
            pairs += sum(plan.tiers.values())
            nvlink += sum(plan.tiers.get(t, 0) for t in NVLINK_TIERS)
            pods += _pods_of(plan, f"{placer.name}-{request.name}")
            snap = snapshots.build(base.nodes, pods, common.CONFIG, builder=builder)
        rows.append(
            StreamRow(
                strategy=placer.name,
                placed_before_failure=failed[0] if failed else count,
                placed=count - len(failed),
                failed=failed,
                gpus_placed=gpus,
                nvlink_share=nvlink / pairs if pairs else 0.0,
                at_first_failure=first_failure,
                at_end=stranded(snap),
                seconds=time.perf_counter() - start,
            )
        )
        log(
            f"stream ({occupancy:.0%} background) {placer.name}: "
            f"{rows[-1].placed_before_failure} placed before the first failure"
        )
    shapes: dict[str, int] = {}
    for name, _ in deployments:
        shapes[name] = shapes.get(name, 0) + 1
    return StreamResult(
        size=size,
        nodes=base.node_count,
        occupancy=base.occupancy,
        deployments=count,
        gpus_requested=sum(
            r.replicas * r.gpus_per_replica for _, req in deployments for r in req.roles
        ),
        shapes=shapes,
        start=stranded(base.snapshot),
        rows=rows,
    )


@dataclass
class QualityResult:
    exact: ExactResult
    baselines: list[BaselineSize]
    streams: list[StreamResult]


def run(
    *,
    exact_target: int,
    exact_limit_s: float,
    baseline_sizes: tuple[int, ...],
    baseline_seed: int,
    stream_size: int,
    streams: tuple[tuple[float, int], ...],
    log: Log = print,
) -> QualityResult:
    """``streams``: (background occupancy, deployments) per stranding scenario."""
    return QualityResult(
        exact=run_exact(exact_target, time_limit_s=exact_limit_s, log=log),
        baselines=run_baselines(baseline_sizes, baseline_seed, log=log),
        streams=[
            run_stream(stream_size, 0, count, occupancy, log=log) for occupancy, count in streams
        ],
    )

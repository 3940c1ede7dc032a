"""Placement quality (issue K): how good shorthop's plans are, not how fast.

(a) **Exact optimum.** Random small instances of every family of ``tests.families.FAMILIES``
    (mixed node kinds: HGX NVSwitch nodes, GB200-style trays in one or two NVLink cliques, PCIe
    nodes with or without NUMA, DGX-1 V100 nodes and nodes carrying real or random nvidia-smi
    matrices; background occupancy; 1/2/3/4/8-GPU replicas of one or several
    pods; two or three roles joined by one to three traffic edges; replica and deployment
    scopes), each under both traffic patterns (``all-to-all`` and ``paired``). Instance
    ``(family, pattern, seed)`` is ``families.quality_instance(random.Random(
    f"{family}/{pattern}/{seed}"), family, pattern)`` (:func:`exact_instance`). ``placement.exact``
    (branch and bound, written independently of the solver) and ``solver.solve`` plan each; the
    (intra, traffic) cost keys must be equal and both must agree on feasibility. Instances the
    exact solver refuses (``ExactTooLarge``) or cannot finish within a time limit are counted,
    not compared. Instances are drawn per (family, pattern) until ``target`` were feasible.

(a') **Beyond the exact solver**: ``bench.count_optimum`` (a count-based optimum of clusters whose
    nodes' GPUs are alike, one-pod replicas, up to 32 pods).

(b) **Baselines.** Every placer of ``placers.all_placers()`` (shorthop, first-fit, best-fit,
    spread, tas, random) plans the benchmark deployment (``all-to-all``) on the same 1,000- and
    10,000-node snapshots: intra-replica cost, traffic cost, prefill<->decode GPU pairs per tier
    (every prefill GPU with every decode GPU), the share of those pairs on NVLink tiers
    (``same-node-nvlink`` + ``nvlink-domain``), and planning time (one call each, after the static
    state is built).

(c) **Streams with departures**: ``bench.stream``.

(d) **KV on NVLink where an NVLink-domain placement exists** (:func:`run_nvlink`): deployments of
    several shapes on 10,000-node snapshots, both patterns. *A placement inside one NVLink domain
    exists* when the solver finds one for the same request with ``required: nvlink-domain`` (a
    plan checked by ``common.plan_problems``; a witness, so existence is never claimed wrongly);
    the rolled-up capacity (whole pods of each role's size that the NVLink domains hold) is also
    reported, an upper bound. Where one exists, shorthop's plan for the unscoped request must put
    at least 95% of the KV GPU pairs on NVLink tiers.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

import numpy as np
from shorthop.placement import exact, placers, solver
from shorthop.placement import snapshot as snapshots
from shorthop.placement.plan import Plan
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge

from bench import common, count_optimum, stream
from bench.placement import build_static
from tests import families

Log = Callable[[str], None]
NVLINK_TIERS = ("same-node-nvlink", "nvlink-domain")


# -- (a) exact optimum ---------------------------------------------------------------------------

PATTERNS = (Pattern.ALL_TO_ALL, Pattern.PAIRED)


def exact_instance(
    family: str, pattern: Pattern, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Request]:
    """Nodes, background pods and request of one instance (reproducible from its name)."""
    rng = random.Random(f"{family}/{pattern.value}/{seed}")
    nodes, pods, request = families.quality_instance(rng, family, pattern)
    return nodes, pods, request


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


@dataclass(frozen=True)
class Outcome:
    """One instance: ``kind`` is equal, gap, mismatch, infeasible, too-large or timeout."""

    seed: int
    kind: str
    shorthop: str = ""
    exact: str = ""
    exact_s: float = 0.0
    shorthop_s: float = 0.0


def compare_one(family: str, pattern: Pattern, seed: int, time_limit_s: float) -> Outcome:
    """Plan one instance with both solvers and compare (a picklable unit of work)."""
    nodes, pods, request = exact_instance(family, pattern, seed)
    snap = snapshots.build(nodes, pods, common.CONFIG)
    start = time.perf_counter()
    try:
        with _time_limit(time_limit_s):
            best = exact.solve(snap, request)
    except exact.ExactTooLarge:
        return Outcome(seed, "too-large")
    except _TimeLimit:
        return Outcome(seed, "timeout")
    exact_s = time.perf_counter() - start
    shorthop_s, plan = common.timed(partial(solver.solve, snap, request))
    if plan.feasible and common.plan_problems(snap, request, plan):
        kind = "mismatch"  # an invalid plan is as wrong as a wrong verdict
    elif plan.feasible != best.feasible:
        kind = "mismatch"
    elif not best.feasible:
        kind = "infeasible"
    else:
        kind = "equal" if plan.cost.key() == best.cost.key() else "gap"
    return Outcome(
        seed,
        kind,
        str(plan.cost.key()) if plan.feasible else "infeasible",
        str(best.cost.key()) if best.feasible else "infeasible",
        exact_s,
        shorthop_s,
    )


@dataclass
class ShapeExact:
    family: str
    pattern: str
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    def seeds(self, *kinds: str) -> list[int]:
        return [o.seed for o in self.outcomes if o.kind in kinds]

    @property
    def compared(self) -> int:
        return self.count("equal") + self.count("gap")

    @property
    def ok(self) -> bool:
        return self.compared > 0 and not self.count("gap") and not self.count("mismatch")


@dataclass
class ExactResult:
    target: int
    time_limit_s: float
    shapes: list[ShapeExact] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, kind: str) -> int:
        return sum(s.count(kind) for s in self.shapes)

    @property
    def compared(self) -> int:
        return sum(s.compared for s in self.shapes)

    @property
    def equal(self) -> int:
        return self.total("equal")

    @property
    def gaps(self) -> list[tuple[str, str, int, str, str]]:
        return [
            (s.family, s.pattern, o.seed, o.shorthop, o.exact)
            for s in self.shapes
            for o in s.outcomes
            if o.kind in ("gap", "mismatch")
        ]

    @property
    def ok(self) -> bool:
        return bool(self.shapes) and all(s.ok for s in self.shapes)


def run_exact(
    target: int, *, time_limit_s: float, workers: int | None = None, log: Log = print
) -> ExactResult:
    """Per (family, pattern), seeds 0, 1, ... until ``target`` instances had a feasible
    optimum to compare (at most ``8 x target`` seeds), ``workers`` processes at a time."""
    started = time.perf_counter()
    out = ExactResult(target, time_limit_s)
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        for family in families.FAMILIES:
            for pattern in PATTERNS:
                shape = ShapeExact(family, pattern.value)
                seed = 0
                while shape.compared < target and seed < 8 * target:
                    batch = range(seed, seed + max(8, (target - shape.compared) * 3 // 2))
                    work = partial(compare_one, family, pattern, time_limit_s=time_limit_s)
                    for outcome in pool.map(work, batch, chunksize=8):
                        if shape.compared < target:
                            shape.outcomes.append(outcome)
                    seed = batch.stop
                out.shapes.append(shape)
                log(
                    f"exact {family} / {pattern.value}: {shape.count('equal')}/{shape.compared}"
                    f" equal, {shape.count('gap')} gaps, {shape.count('mismatch')} mismatches"
                )
    out.seconds = time.perf_counter() - started
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


# -- (d) KV on NVLink where an NVLink-domain placement exists ------------------------------------

# (name, prefill (pods per replica, GPUs per pod), decode (pods, GPUs), prefill and decode replicas)
NVLINK_SHAPES: tuple[tuple[str, tuple[int, int], tuple[int, int], int, int], ...] = (
    ("8B, TP1", (1, 1), (1, 1), 16, 16),
    ("70B, TP4", (1, 4), (1, 4), 4, 4),
    ("70B, TP4 prefill / TP8 decode", (1, 4), (2, 4), 4, 2),
    ("405B, TP8 prefill / TP16 decode", (2, 4), (4, 4), 1, 1),
    ("DeepSeek-V3, TP16", (4, 4), (4, 4), 2, 2),
    ("benchmark deployment", (1, 4), (2, 4), 16, 16),
)
SHARE_TARGET = 0.95


def nvlink_share(plan: Plan) -> float:
    pairs = sum(plan.tiers.values())
    return sum(plan.tiers.get(t, 0) for t in NVLINK_TIERS) / pairs if pairs else 0.0


def domain_room(snap: snapshots.ClusterSnapshot, request: Request) -> int:
    """How many NVLink domains (cliques; NVSwitch nodes outside any) pass the rolled-up check:
    enough free GPUs for the deployment and, per pod size ``q``, enough whole ``q``-GPU slots for
    every pod of ``q`` GPUs or more (a necessary condition, so an upper bound on the domains that
    can hold it)."""
    idx = snap.index
    rows = np.flatnonzero(idx.alive & snap.schedulable)
    free = snap.free_counts[rows]
    clique = idx.clique_of[rows]
    groups = [rows[clique == c] for c in np.unique(clique[clique >= 0]).tolist()]
    groups += [np.array([r]) for r in rows[clique < 0].tolist() if idx.node_class(r).nvlink.all()]
    counts = dict(zip(rows.tolist(), free.tolist(), strict=True))
    need = sum(r.replicas * r.gpus_per_replica for r in request.roles)
    sizes = sorted({r.pod_gpus for r in request.roles if r.pod_gpus > 0})
    ok = 0
    for g in groups:
        f = np.array([counts[r] for r in g.tolist()])
        # Pods of q GPUs or more each take q-GPU slots (sizes are powers of two).
        if f.sum() >= need and all(
            (f // q).sum() >= sum(r.replicas * r.pods_per_replica * (r.pod_gpus // q) for r in big)
            for q in sizes
            for big in [[r for r in request.roles if r.pod_gpus >= q]]
        ):
            ok += 1
    return ok


@dataclass
class NvlinkRow:
    nodes: int
    occupancy: float
    shape: str
    pattern: str
    gpus: int
    witness: bool  # the solver found a plan inside one NVLink domain (validated)
    room: int  # NVLink domains passing the rolled-up check
    share: float  # shorthop's KV pairs on NVLink, unscoped request
    valid: bool

    @property
    def ok(self) -> bool | None:
        return self.share >= SHARE_TARGET if self.witness else None


def run_nvlink(
    size: int, occupancies: tuple[float, ...], seed: int, *, log: Log = print
) -> list[NvlinkRow]:
    out = []
    for occupancy in occupancies:
        c = common.cluster(size, seed, occupancy)
        scope = c.snapshot.index.tiers.index("nvlink-domain")
        for name, (pp, pq), (dp, dq), n_p, n_d in NVLINK_SHAPES:
            for pattern in PATTERNS:
                request = Request(
                    roles=(RoleRequest("prefill", n_p, pp, pq), RoleRequest("decode", n_d, dp, dq)),
                    traffic=(TrafficEdge(0, 1, 1.0, pattern),),
                    name=name,
                )
                scoped = dataclasses.replace(request, required_scope=scope)
                inside = solver.solve(c.snapshot, scoped)
                witness = inside.feasible and not common.plan_problems(c.snapshot, scoped, inside)
                plan = solver.solve(c.snapshot, request)
                out.append(
                    NvlinkRow(
                        nodes=c.node_count,
                        occupancy=c.occupancy,
                        shape=name,
                        pattern=pattern.value,
                        gpus=sum(r.replicas * r.gpus_per_replica for r in request.roles),
                        witness=witness,
                        room=domain_room(c.snapshot, request),
                        share=nvlink_share(plan) if plan.feasible else 0.0,
                        valid=plan.feasible and not common.plan_problems(c.snapshot, request, plan),
                    )
                )
        log(f"nvlink share {size} nodes, {occupancy:.0%} busy: done")
        del c
    return out


SURVEY_STRATEGIES = ("shorthop", "first-fit", "best-fit", "tas")


@dataclass
class QualityResult:
    exact: ExactResult
    baselines: list[BaselineSize]
    streams: list[stream.StreamResult]
    nvlink: list[NvlinkRow]
    stream_lifetime: tuple[int, int] = (0, 0)
    survey: list[stream.StreamResult] = field(default_factory=list)
    counted: count_optimum.Result = field(default_factory=count_optimum.Result)


def run(
    *,
    exact_target: int,
    exact_limit_s: float,
    baseline_sizes: tuple[int, ...],
    baseline_seed: int,
    stream_size: int,
    streams: tuple[tuple[int, int], ...],
    stream_count: int,
    stream_lifetime: tuple[int, int],
    nvlink_size: int,
    nvlink_occupancies: tuple[float, ...],
    survey: tuple[tuple[int, int], ...] = (),
    count_seeds: int = 0,
    log: Log = print,
) -> QualityResult:
    """``streams``: (cluster mix, seed) per stream of ``bench.stream``; ``survey``: more
    streams with shorthop and the baselines of :data:`SURVEY_STRATEGIES` only;
    ``count_seeds``: instances of ``bench.count_optimum``."""
    return QualityResult(
        exact=run_exact(exact_target, time_limit_s=exact_limit_s, log=log),
        baselines=run_baselines(baseline_sizes, baseline_seed, log=log),
        streams=stream.run(stream_size, streams, stream_count, stream_lifetime, log=log),
        nvlink=run_nvlink(nvlink_size, nvlink_occupancies, baseline_seed, log=log),
        stream_lifetime=stream_lifetime,
        survey=stream.run(
            stream_size,
            survey,
            stream_count,
            stream_lifetime,
            log=log,
            strategies=SURVEY_STRATEGIES,
        ),
        counted=count_optimum.run(count_seeds, log=log),
    )

"""Streams of deployments that arrive and depart (issue K, item 4): what each strategy leaves
free for large replicas over time.

A stream is a sequence of events on one cluster: at every step one deployment arrives (a shape
drawn from :data:`SHAPES`, replicas per role drawn from the shape's range, traffic prefill ->
decode, ``all-to-all``) and is placed by the strategy; it departs after a lifetime drawn when it
arrives (a departure frees its pods before the next arrival). Every strategy sees the same
events; a deployment that does not fit is counted and skipped (it never departs). The cluster
state is one :class:`~shorthop.placement.snapshot.SnapshotBuilder` fed pod events, as the
operator's is.

Measured after every event, per strategy (definitions written out here, independent of the
solver's own):

- **slots for the largest replica shape** of the stream (4 pods x 4 GPUs = 16 GPUs): how many
  such replicas fit, each inside one NVLink domain (an NVL72-style clique: the sum over its
  nodes of whole 4-GPU pods free, divided by 4; a node outside any clique: its own whole pods,
  divided by 4);
- **whole NVLink domains free**: cliques with every GPU free, plus nodes outside cliques with
  every GPU free (an HGX node is an NVLink domain of its own); **whole nodes free**;
- **GPUs stranded** (expected, FGD-style, ATC'23): for each shape of the stream, weighted by how
  often it is drawn, the free GPUs on nodes with fewer free GPUs than that shape's largest pod;
- **deployments placed**, and the **KV-on-NVLink share**: over every deployment placed, the
  share of its traffic GPU pairs (all-to-all: every prefill GPU with every decode GPU) on
  ``same-node-nvlink`` or ``nvlink-domain``;
- **GPU-events served**: over every deployment placed, its GPUs times the events it stays
  (up to the stream's end). On a full cluster a strategy that places one large deployment may
  then fail two small ones: the count of deployments placed and the GPU capacity served can
  rank strategies differently.

**What shorthop's whole NVLink domains bought** (:class:`Beyond`): at every arrival shorthop
places, each baseline of :data:`RIVALS` also plans the same arrival on shorthop's cluster state
(a counterfactual, not applied). When shorthop's plan puts pods into more whole NVLink domains
than the baseline's, the extra domains are put down to what shorthop's plan bought with them:
a lower intra-replica cost (the baseline's plan splits a replica over slower links), an equal
intra and a lower traffic cost (more KV on fast links), or *nothing* (a tie-break that gave a
domain away). An arrival where the baseline's plan costs less than shorthop's (intra, then
traffic) is counted apart: the solver missed a plan a baseline found. Its time is not counted
in shorthop's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shorthop.placement import placers
from shorthop.placement import snapshot as snapshots
from shorthop.placement.plan import Cost, Plan
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.topology import fake

from bench import common
from tests import builders

Log = Callable[[str], None]
NVLINK_TIERS = ("same-node-nvlink", "nvlink-domain")
LARGEST = (4, 4)  # pods, GPUs per pod: the largest replica of the stream
RIVALS = ("first-fit", "best-fit", "tas")  # the baselines shorthop's plans are set against
REASONS = ("intra", "traffic", "nothing")  # what extra whole domains bought (see Beyond)

# (name, prefill (pods per replica, GPUs per pod), decode (pods, GPUs), replicas per role (lo, hi))
SHAPES: tuple[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]], ...] = (
    ("8B, TP1", (1, 1), (1, 1), (4, 16)),
    ("70B, TP4", (1, 4), (1, 4), (2, 8)),
    ("70B, TP4 prefill / TP8 decode", (1, 4), (2, 4), (2, 8)),
    ("405B, TP8 prefill / TP16 decode", (2, 4), (4, 4), (1, 4)),
    ("DeepSeek-V3, TP16", (4, 4), (4, 4), (1, 4)),
)

# Cluster mixes: (name, NVL72 racks, HGX units x nodes per unit, L40S nodes) per 1,000 nodes.
MIXES: tuple[tuple[str, int, int, int, int], ...] = (
    ("half NVL72, half HGX", 28, 16, 31, 0),
    ("mostly NVL72", 44, 6, 34, 0),
    ("HGX with PCIe nodes", 14, 22, 30, 88),
)


@dataclass(frozen=True)
class Event:
    arrival: int  # step
    departure: int  # step before which it leaves
    shape: str
    request: Request


def events(count: int, seed: int, lifetime: tuple[int, int]) -> list[Event]:
    """``count`` arrivals, one per step, each leaving after a lifetime drawn from ``lifetime``."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name, (pp, pq), (dp, dq), (lo, hi) = rng.choice(SHAPES)
        request = Request(
            roles=(
                RoleRequest("prefill", rng.randint(lo, hi), pp, pq),
                RoleRequest("decode", rng.randint(lo, hi), dp, dq),
            ),
            traffic=(TrafficEdge(0, 1, 1.0),),
            name=f"d{i:03d}",
        )
        out.append(Event(i, i + rng.randint(*lifetime), name, request))
    return out


def cluster(size: int, mix: int, seed: int) -> list[dict[str, Any]]:
    """Nodes of one of :data:`MIXES`, scaled to about ``size`` nodes."""
    _, racks, units, per_unit, l40s = MIXES[mix]
    scale = size / 1000
    shape = fake.ClusterShape(
        nvl72_racks=max(1, round(racks * scale)),
        hgx_units=max(1, round(units * scale)),
        nodes_per_unit=per_unit,
        l40s_nodes=round(l40s * scale),
    )
    return fake.nodes(shape, common.CONFIG, seed=seed)


@dataclass
class Measure:
    """The cluster after one event."""

    slots: int
    whole_domains: int
    whole_nodes: int
    stranded: float
    free: int


def measure(snap: snapshots.ClusterSnapshot, weights: dict[int, float]) -> Measure:
    """See the module docstring; ``weights``: largest pod size -> share of the stream's shapes."""
    index = snap.index
    rows = np.flatnonzero(index.alive & snap.schedulable)
    free = snap.free_counts[rows]
    total = np.array([index.gpus(int(r)) for r in rows], dtype=np.int64)
    clique = index.clique_of[rows]
    pods, q = LARGEST
    whole_pods = free // q
    slots = int((whole_pods[clique < 0] // pods).sum())
    whole_domains = int(((free == total) & (clique < 0)).sum())
    for c in np.unique(clique[clique >= 0]).tolist():
        inside = clique == c
        slots += int(whole_pods[inside].sum()) // pods
        whole_domains += int((free[inside] == total[inside]).all())
    stranded = sum(w * float(free[free < size].sum()) for size, w in weights.items())
    return Measure(slots, whole_domains, int((free == total).sum()), stranded, int(free.sum()))


def domains_taken(snap: snapshots.ClusterSnapshot, plan: Plan) -> int:
    """Whole NVLink domains (as :func:`measure` counts them) that ``plan`` puts a pod in."""
    index = snap.index
    taken = 0
    cliques = set()
    for row in {a.row for a in plan.assignments}:
        clique = int(index.clique_of[row])
        if clique >= 0:
            cliques.add(clique)
        elif int(snap.free_counts[row]) == index.gpus(row):
            taken += 1
    usable = index.alive & snap.schedulable
    for clique in cliques:
        rows = np.flatnonzero((index.clique_of == clique) & usable).tolist()
        taken += all(int(snap.free_counts[r]) == index.gpus(r) for r in rows)
    return taken


def bought(mine: Cost, theirs: Cost) -> str:
    """What a plan costing ``mine`` has over one costing ``theirs`` (one of :data:`REASONS`)."""
    if mine.intra < theirs.intra:
        return "intra"
    if mine.intra == theirs.intra and round(mine.traffic, 6) < round(theirs.traffic, 6):
        return "traffic"
    return "nothing"


@dataclass
class Beyond:
    """shorthop's plans against one baseline's plans of the same arrivals on the same state."""

    arrivals: int = 0  # arrivals both placed
    more: int = 0  # ... where shorthop's plan took more whole NVLink domains
    extra: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    fewer: int = 0  # ... where the baseline's took more
    saved: int = 0  # the whole domains the baseline's plans took beyond shorthop's
    cheaper: int = 0  # arrivals where the baseline's plan costs less (intra, traffic): a defect

    def add(self, mine: int, theirs: int, reason: str, *, cheaper: bool = False) -> None:
        """One arrival: whole domains shorthop's plan and the baseline's took, what shorthop's
        plan bought (:func:`bought`), and whether the baseline's plan costs less."""
        self.arrivals += 1
        self.cheaper += cheaper
        if mine > theirs:
            self.more += 1
            self.extra[reason] += mine - theirs
        elif theirs > mine:
            self.fewer += 1
            self.saved += theirs - mine

    def absorb(self, other: Beyond) -> None:
        """Add ``other``'s counts (another stream's, against the same baseline)."""
        self.arrivals += other.arrivals
        self.more += other.more
        self.fewer += other.fewer
        self.saved += other.saved
        self.cheaper += other.cheaper
        for reason, n in other.extra.items():
            self.extra[reason] += n


@dataclass
class StrategyRun:
    strategy: str
    placed: int = 0
    failed: list[int] = field(default_factory=list)
    pairs: int = 0
    nvlink_pairs: int = 0
    series: list[Measure] = field(default_factory=list)
    seconds: float = 0.0
    invalid: list[str] = field(default_factory=list)
    gpu_events: int = 0  # GPUs x events stayed, over the deployments placed
    beyond: dict[str, Beyond] = field(default_factory=dict)  # shorthop's only, per rival

    @property
    def nvlink_share(self) -> float:
        return self.nvlink_pairs / self.pairs if self.pairs else 0.0

    def mean(self, attr: str) -> float:
        values = [getattr(m, attr) for m in self.series]
        return float(np.mean(values)) if values else 0.0

    def low(self, attr: str) -> float:
        values = [getattr(m, attr) for m in self.series]
        return float(min(values)) if values else 0.0


@dataclass
class StreamResult:
    mix: str
    seed: int
    nodes: int
    gpus: int
    deployments: int
    lifetime: tuple[int, int]
    shapes: dict[str, int]
    runs: list[StrategyRun]


def _pods(plan: Plan, namespace: str) -> list[dict[str, Any]]:
    out = []
    for a in plan.assignments:
        pod = builders.gpu_pod(
            f"{namespace}-{a.key.role}-{a.key.replica}-{a.key.pod}", a.node, list(a.gpus)
        )
        pod["metadata"]["namespace"] = namespace
        out.append(pod)
    return out


def run_stream(
    size: int,
    mix: int,
    seed: int,
    count: int,
    lifetime: tuple[int, int],
    *,
    log: Log = print,
    strategies: tuple[str, ...] | None = None,
) -> StreamResult:
    """One stream, every strategy of ``placers.all_placers()`` (or those named)."""
    nodes = cluster(size, mix, seed)
    stream = events(count, seed, lifetime)
    counts: dict[str, int] = {}
    weights: dict[int, float] = {}
    for e in stream:
        counts[e.shape] = counts.get(e.shape, 0) + 1
        largest = max(r.pod_gpus for r in e.request.roles)
        weights[largest] = weights.get(largest, 0.0) + 1 / len(stream)
    runs = []
    chosen = [
        p for p in placers.all_placers(seed=seed) if strategies is None or p.name in strategies
    ]
    # built here, not through all_placers (which bench.stream_table times by replacing it)
    rivals: list[placers.Placer] = [placers.FirstFit(), placers.BestFit(), placers.TasLike()]
    assert tuple(p.name for p in rivals) == RIVALS
    for placer in chosen:
        started = time.perf_counter()
        aside = 0.0  # the counterfactual plans' time, not shorthop's
        builder = snapshots.SnapshotBuilder(common.CONFIG)
        for node in nodes:
            builder.apply_node(None, node)
        run = StrategyRun(placer.name)
        alive: dict[int, list[dict[str, Any]]] = {}
        for step, e in enumerate(stream):
            for i in [i for i in alive if stream[i].departure <= step]:
                for pod in alive.pop(i):
                    builder.apply_pod("DELETED", pod)
            snap = builder.freeze()
            plan = placer.place(snap, e.request)
            if plan.feasible:
                problems = common.plan_problems(snap, e.request, plan)
                if problems:
                    run.invalid.append(f"{e.request.name}: {problems[0]}")
                run.placed += 1
                run.pairs += sum(plan.tiers.values())
                run.nvlink_pairs += sum(plan.tiers.get(t, 0) for t in NVLINK_TIERS)
                gpus = sum(r.replicas * r.gpus_per_replica for r in e.request.roles)
                run.gpu_events += gpus * (min(e.departure, count) - step)
                if placer.name == "shorthop":
                    aside += _set_against(run, rivals, snap, e.request, plan)
                pods = _pods(plan, f"{placer.name}-{e.request.name}")
                for pod in pods:
                    builder.apply_pod("ADDED", pod)
                alive[step] = pods
            else:
                run.failed.append(step)
            run.series.append(measure(builder.freeze(), weights))
        run.seconds = time.perf_counter() - started - aside
        runs.append(run)
        log(
            f"stream {MIXES[mix][0]} seed {seed} {placer.name}: {run.placed}/{count} placed, "
            f"mean slots {run.mean('slots'):.1f}, NVLink {run.nvlink_share:.0%}"
        )
    return StreamResult(
        mix=MIXES[mix][0],
        seed=seed,
        nodes=len(nodes),
        gpus=sum(int(n["status"]["allocatable"]["nvidia.com/gpu"]) for n in nodes),
        deployments=count,
        lifetime=lifetime,
        shapes=counts,
        runs=runs,
    )


def _set_against(
    run: StrategyRun,
    rivals: list[placers.Placer],
    snap: snapshots.ClusterSnapshot,
    request: Request,
    plan: Plan,
) -> float:
    """Plan ``request`` with each rival on ``snap`` and add the comparison with shorthop's
    ``plan`` to ``run.beyond``; returns the seconds it took."""
    started = time.perf_counter()
    mine = domains_taken(snap, plan)
    for rival in rivals:
        other = rival.place(snap, request)
        if other.feasible:
            beyond = run.beyond.setdefault(rival.name, Beyond())
            beyond.add(
                mine,
                domains_taken(snap, other),
                bought(plan.cost, other.cost),
                cheaper=other.cost.key() < plan.cost.key(),
            )
    return time.perf_counter() - started


def run(
    size: int,
    streams: tuple[tuple[int, int], ...],
    count: int,
    lifetime: tuple[int, int],
    *,
    log: Log = print,
    strategies: tuple[str, ...] | None = None,
) -> list[StreamResult]:
    """``streams``: (cluster mix, seed) pairs; ``strategies``: names to run (default all)."""
    return [
        run_stream(size, mix, seed, count, lifetime, log=log, strategies=strategies)
        for mix, seed in streams
    ]

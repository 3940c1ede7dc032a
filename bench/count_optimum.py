"""Placement quality beyond the exact solver's reach (issue K): a count-based optimum.

``placement.exact`` enumerates GPU sets pod by pod, so it refuses instances of more than a few
pods on several nodes. When every GPU of a node is alike to the objective (*twins*: HGX
NVSwitch nodes, trays of an NVLink domain) and every replica is one pod, a plan is fixed, up to
cost, by how many pods of each role each node holds. Here:

- :func:`instance` draws such a cluster (3-6 nodes, HGX or trays in one or two NVLink domains,
  network labels and background occupancy drawn as ``tests.families`` draws them) and a request
  of two roles (1-16 replicas each, from half to all the GPUs that are free, pods of 1, 2 or 4
  GPUs, one ``all-to-all`` edge, weight 1 or 2): up to 32 pods, many of them too many for the
  exact solver;
- :func:`optimum` finds the least (intra, traffic) cost by enumeration: every spread of the
  source role's pods over the nodes, then the target role's pods on the nodes cheapest to the
  source pods (with the source fixed the traffic is linear in the target counts, so filling the
  cheapest nodes first is optimal; the target's intra cost per pod depends only on its node, so
  nodes are filled by (intra per pod, traffic per pod): lexicographic, as the objective);
- :func:`run` compares ``solver.solve`` with it over many seeds, per size class (small enough
  for the solver's exhaustive search, or not).

Written apart from the solver: distances come from ``TopologyIndex.distance`` pair by pair.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shorthop.placement import exact, solver
from shorthop.placement import snapshot as snapshots
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge

from bench import common
from bench.fmt import dur, status, table
from tests import builders, families

Log = Callable[[str], None]
Key = tuple[int, float]  # (intra, traffic rounded to 6 places)
SHAPES = ((1, 1), (1, 1), (1, 1), (2, 1), (1, 2), (4, 1), (1, 4), (2, 2), (4, 4), (2, 4))
SMALL_PODS = 14  # the solver's exhaustive search takes instances up to this many pods


def instance(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Request]:
    """Nodes, background pods and request of instance ``seed`` (reproducible)."""
    rng = random.Random(f"count-optimum/{seed}")
    cliques = rng.choice([["k1"], ["k1", "k2"]])
    nodes = []
    for i in range(rng.randint(3, 6)):
        kind = rng.choice(["hgx", "tray", "tray"])
        nodes.append(families._small_node(rng, i, kind, 8 if kind == "hgx" else 4, cliques))
    busy = rng.choice([0.0, 0.25, 0.5])
    pods, free = [], 0
    for node in nodes:
        name = node["metadata"]["name"]
        gpus = int(node["status"]["allocatable"]["nvidia.com/gpu"])
        taken = [g for g in range(gpus) if rng.random() < busy]
        free += gpus - len(taken)
        if taken:
            pods.append(builders.gpu_pod(f"bg-{name}", name, taken))
    (qa, qb), weight = rng.choice(SHAPES), rng.choice([1.0, 2.0])
    # replica counts that fit the free GPUs in total, or miss by one target pod (some do not
    # fit: the verdicts are compared too)
    most = max(1, min(16, free // qa))
    source = rng.randint((most + 1) // 2, most)
    most = max(1, min(16, (free - source * qa) // qb + 1))
    target = rng.randint((most + 1) // 2, most)
    request = Request(
        roles=(RoleRequest("prefill", source, 1, qa), RoleRequest("decode", target, 1, qb)),
        traffic=(TrafficEdge(0, 1, weight, Pattern.ALL_TO_ALL),),
        name=f"count-optimum-{seed}",
    )
    return nodes, pods, request


def _spreads(total: int, caps: list[int]) -> Iterator[tuple[int, ...]]:
    """Every way to put ``total`` pods on nodes holding at most ``caps[i]`` each."""
    if not caps:
        if total == 0:
            yield ()
        return
    for here in range(min(total, caps[0]) + 1):
        for rest in _spreads(total - here, caps[1:]):
            yield (here, *rest)


def optimum(snap: snapshots.ClusterSnapshot, request: Request) -> Key | None:
    """The least (intra, traffic) of ``request`` (two roles of one-pod replicas, one
    ``all-to-all`` edge) on ``snap`` (every node's GPUs twins); None when nothing fits."""
    index = snap.index
    rows = [r for r in range(len(snap.free)) if int(snap.free[r])]
    for r in rows:
        if len(set(exact.twins(index, r))) != 1:
            raise ValueError(f"node {index.names[r]}: its GPUs are not alike (twins)")
    free = [int(snap.free[r]).bit_count() for r in rows]
    # GPUs 0 and 1 stand for any two GPUs of a node, GPU 0 for any one (all twins)
    dist = [[index.distance(a, 0, b, 1 if a == b else 0) for b in rows] for a in rows]
    source, target = request.roles
    qa, qb = source.pod_gpus, target.pod_gpus
    inside = [dist[i][i] if index.gpus(r) > 1 else 0 for i, r in enumerate(rows)]
    pod_intra_a = [qa * (qa - 1) // 2 * d for d in inside]
    pod_intra_b = [qb * (qb - 1) // 2 * d for d in inside]
    edge = request.traffic[0]
    scale = edge.weight * qa * qb / (source.replicas * target.replicas)
    best: Key | None = None
    for spread in _spreads(source.replicas, [f // qa for f in free]):
        per_pod = [sum(n * dist[i][j] for i, n in enumerate(spread)) for j in range(len(rows))]
        room = [(free[j] - spread[j] * qa) // qb for j in range(len(rows))]
        left, intra, pairs = target.replicas, 0, 0
        # both sums are linear in the target's counts: fill the nodes cheapest inside a pod
        # first (intra comes first), of those the nearest to the source pods
        for j in sorted(range(len(rows)), key=lambda j: (pod_intra_b[j], per_pod[j])):
            take = min(left, room[j])
            intra += take * pod_intra_b[j]
            pairs += take * per_pod[j]
            left -= take
        if left:
            continue
        intra += sum(n * pod_intra_a[i] for i, n in enumerate(spread))
        key = (intra, round(scale * pairs, 6))
        if best is None or key < best:
            best = key
    return best


@dataclass(frozen=True)
class Outcome:
    """One instance: ``kind`` is equal, gap, mismatch (feasibility or an invalid plan) or
    infeasible (both)."""

    seed: int
    pods: int
    kind: str
    shorthop: Key | None = None
    optimum: Key | None = None
    shorthop_s: float = 0.0

    @property
    def excess(self) -> float:
        """How much costlier shorthop's traffic is than the optimum's (0 unless a gap)."""
        if self.kind != "gap" or self.shorthop is None or self.optimum is None:
            return 0.0
        return self.shorthop[1] / self.optimum[1] - 1 if self.optimum[1] else float("inf")


def compare_one(seed: int) -> Outcome:
    nodes, pods, request = instance(seed)
    snap = snapshots.build(nodes, pods, common.CONFIG)
    best = optimum(snap, request)
    shorthop_s, plan = common.timed(lambda: solver.solve(snap, request))
    count = sum(r.replicas for r in request.roles)
    got = (plan.cost.intra, round(plan.cost.traffic, 6)) if plan.feasible else None
    invalid = plan.feasible and bool(common.plan_problems(snap, request, plan))
    if invalid or (got is None) != (best is None):
        kind = "mismatch"  # an invalid plan is as wrong as a wrong verdict
    elif got is None:
        kind = "infeasible"
    else:
        kind = "equal" if got == best else "gap"
    return Outcome(seed, count, kind, got, best, shorthop_s)


@dataclass
class Result:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self, small: bool) -> list[Outcome]:
        return [o for o in self.outcomes if (o.pods <= SMALL_PODS) == small]

    @property
    def gaps(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind in ("gap", "mismatch")]


def run(seeds: int, *, log: Log = print) -> Result:
    """Instances ``0 .. seeds - 1`` compared (one process: each takes milliseconds)."""
    start = time.perf_counter()
    result = Result([compare_one(seed) for seed in range(seeds)])
    result.seconds = time.perf_counter() - start
    log(
        f"count-based optimum: {len(result.outcomes)} instances, {len(result.gaps)} gaps "
        f"({result.seconds:.1f} s)"
    )
    return result


def tables(result: Result) -> str:
    """The report's tables: per size class, then the gaps."""
    rows = []
    for small, name in ((True, f"up to {SMALL_PODS} pods (exhaustive search)"), (False, "more")):
        got = result.rows(small)
        compared = [o for o in got if o.kind != "infeasible"]
        rows.append(
            (
                name,
                len(got),
                len(compared),
                sum(o.kind == "equal" for o in got),
                sum(o.kind == "gap" for o in got),
                sum(o.kind == "mismatch" for o in got),
                len(got) - len(compared),
                f"{max((o.excess for o in compared), default=0.0):.1%}",
                dur(sum(o.shorthop_s for o in got)),
            )
        )
    out = table(
        (
            "instances",
            "drawn",
            "compared",
            "equal",
            "gaps",
            "feasibility disagreements or invalid plans",
            "both infeasible",
            "worst gap (traffic above the optimum)",
            "shorthop time, total",
        ),
        rows,
        "lrrrrrrrr",
    )
    if result.gaps:
        out += "\n\nGaps (`bench.count_optimum.instance(seed)`):\n\n" + table(
            ("seed", "pods", "shorthop (intra, traffic)", "optimum (intra, traffic)"),
            [(o.seed, o.pods, str(o.shorthop), str(o.optimum)) for o in result.gaps],
            "rrll",
        )
    return out


def summary_rows(result: Result) -> list[tuple[str, str, str]]:
    """The row of the report's summary table (none when nothing was compared)."""
    compared = [o for o in result.outcomes if o.kind != "infeasible"]
    if not compared:
        return []
    gaps = result.gaps
    worst = max((o.excess for o in gaps), default=0.0)
    return [
        (
            "Cost equal to a count-based optimum beyond the exact solver's reach "
            "(alike GPUs, one-pod replicas, up to 32 pods)",
            f"{len(compared) - len(gaps):,} of {len(compared):,} equal; {len(gaps)} gaps or "
            "feasibility disagreements"
            + (f" (traffic at most {worst:.1%} above the optimum)" if gaps else ""),
            status(not gaps),
        )
    ]

"""Turns one run's results into ``benchmarks.md`` and PNG plots (matplotlib, Agg backend).

Everything written here is derived from the :class:`Results` of the run; the prose explains the
method and the targets, the numbers come from the measurements. Plots go to ``<out>/bench/``
and are linked relatively from ``<out>/benchmarks.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench import common, report_quality, report_throughput
from bench.fmt import dur, num, save, status, table, times
from bench.placement import PlacementResult
from bench.quality import QualityResult
from bench.settings import Settings
from bench.throughput import Throughput
from bench.topology import TopologyResult

P50_TARGET_S = 0.020
P99_TARGET_S = 0.050
RATIO_TARGET = 100.0
INDEX_TARGET_S = 2.0


@dataclass
class Results:
    settings: Settings
    topology: list[TopologyResult]
    placement: PlacementResult
    quality: QualityResult
    machine: dict[str, str]
    command: str
    elapsed_s: float
    load_at_end: str
    throughput: Throughput | None = None


# -- formatting ----------------------------------------------------------------------------------


# -- plots ---------------------------------------------------------------------------------------


def _log_axes(ax: Axes, nodes: Sequence[int]) -> None:
    """Log-log axes with plain numbers: one x tick per measured size."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(nodes), [f"{n:,}" for n in nodes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(min(nodes) / 1.6, max(nodes) * 1.6)


def plot_latency(r: Results, path: Path) -> None:
    sizes = r.placement.latency
    nodes = [s.nodes for s in sizes]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(nodes, [s.p50 * 1e3 for s in sizes], "o-", color="#2166ac", lw=2, label="p50")
    ax.plot(nodes, [s.p99 * 1e3 for s in sizes], "s-", color="#b2182b", lw=2, label="p99")
    first = [max(run.first_call_s for run in s.runs) * 1e3 for s in sizes]
    ax.plot(nodes, first, "^:", color="#777777", label="first call, cold static state (max)")
    ax.axhline(P50_TARGET_S * 1e3, color="#2166ac", ls="--", lw=1, label="p50 target (20 ms)")
    ax.axhline(P99_TARGET_S * 1e3, color="#b2182b", ls="--", lw=1, label="p99 target (50 ms)")
    for s in sizes:
        ax.annotate(
            f"{s.p50 * 1e3:.1f} / {s.p99 * 1e3:.1f} ms",
            (s.nodes, s.p50 * 1e3),
            textcoords="offset points",
            xytext=(0, -16),
            ha="center",
            fontsize=8,
        )
    _log_axes(ax, nodes)
    ax.set_xlabel("cluster size (nodes, log scale)")
    ax.set_ylabel("planning time per solve (ms, log scale)")
    ax.set_title("shorthop: plan a P/D deployment (solver.solve)")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(y=0.2)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    save(fig, path)


def plot_networkx(r: Results, path: Path) -> None:
    refs = r.placement.reference
    fig, ax = plt.subplots(figsize=(7, 4.5))
    nodes = [x.nodes for x in refs]
    ax.plot(
        nodes, [x.shorthop_p50_s for x in refs], "o-", color="#2166ac", lw=2, label="shorthop p50"
    )
    ax.plot(
        nodes,
        [x.reference_s for x in refs],
        "s-",
        color="#b2182b",
        lw=2,
        label="NetworkX reference",
    )
    for x in refs:
        label = ("≥ " if x.capped else "") + times(x.ratio)
        ax.annotate(
            label,
            (x.nodes, x.reference_s),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=9,
        )
    _log_axes(ax, nodes)
    ax.set_xlabel("cluster size (nodes, log scale)")
    ax.set_ylabel("time per plan (s, log scale)")
    ax.set_title("Same request, same snapshot: shorthop vs NetworkX shortest paths")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9, loc="upper left")
    ax.margins(y=0.25)
    save(fig, path)


# -- markdown ------------------------------------------------------------------------------------


def _summary(r: Results) -> str:
    target = r.settings.target_size
    rows: list[tuple[object, ...]] = []
    topo = {t.size: t for t in r.topology}
    t = topo.get(target)
    rows.append(
        (
            f"Index build at {target:,} nodes < 2 s",
            (
                f"{dur(t.index_s)} (label parsing {dur(t.parse_s)} more)"
                if t
                else "not measured at this size"
            ),
            status(t.index_s < INDEX_TARGET_S if t else None),
        )
    )
    lat = {s.size: s for s in r.placement.latency}
    s = lat.get(target)
    rows.append(
        (
            f"Plan p50 ≤ 20 ms at {target:,} nodes",
            dur(s.p50) if s else "not measured at this size",
            status(s.p50 <= P50_TARGET_S if s else None),
        )
    )
    rows.append(
        (
            f"Plan p99 ≤ 50 ms at {target:,} nodes",
            dur(s.p99) if s else "not measured at this size",
            status(s.p99 <= P99_TARGET_S if s else None),
        )
    )
    for ref in r.placement.reference:
        if ref.size < 1000 and not r.settings.quick:
            continue
        bound = "≥ " if ref.capped else ""
        rows.append(
            (
                f"≥ 100× faster than the NetworkX reference ({ref.nodes:,} nodes)",
                f"{bound}{times(ref.ratio)} ({dur(ref.reference_s)} vs {dur(ref.shorthop_p50_s)})"
                + (", lower bound: reference stopped" if ref.capped else ""),
                status(ref.ratio >= RATIO_TARGET),
            )
        )
    rows += report_quality.summary_rows(r.quality)
    tp = r.throughput
    rows.append(
        (
            "E2E: shorthop pods bound/s ≥ 1.0× kube-scheduler's (real API server)",
            (
                f"{tp.ratio:.2f}× ({tp.shorthop_rate:.0f} vs {tp.scheduler_rate:.0f} pods/s, "
                f"{tp.pods} pods on {tp.nodes:,} nodes)"
                if tp
                else "not measured (run without --no-cluster)"
            ),
            status(tp.ratio >= 1.0 if tp else None),
        )
    )
    out = table(("Target (ARCHITECTURE.md §7)", "Measured", "Status"), rows, "llc")
    if r.settings.quick:
        out = (
            "> **Quick run** (`--quick`): tiny sizes for the smoke test. These figures say "
            "nothing about the targets, which are for 10,000 nodes; run `make bench`.\n\n" + out
        )
    return out


def _topology(r: Results) -> str:
    parts = []
    rows = [
        (
            f"{t.nodes:,}",
            f"{t.gpus:,}",
            dur(t.parse_s),
            dur(t.index_s),
            dur(t.labels_to_index_s),
            dur(t.graph_s),
            f"{t.graph_vertices:,} / {t.graph_edges:,}",
            times(t.graph_s / t.index_s),
        )
        for t in r.topology
    ]
    parts.append(
        table(
            (
                "nodes",
                "GPUs",
                "label parsing",
                "index build",
                "labels → index",
                "NetworkX graph build",
                "graph vertices / edges",
                "graph / index",
            ),
            rows,
        )
    )
    parts.append(
        "\n\n**Incremental updates** (`IndexBuilder`, mean per operation on the largest "
        "cluster; the builder already holds every node):\n\n"
    )
    largest = r.topology[-1]
    cold = largest.updates["cold build (all nodes, for comparison)"]
    parts.append(
        table(
            ("operation", f"time at {largest.nodes:,} nodes", "vs cold build"),
            [
                (op, dur(sec), "1×" if sec == cold else f"{cold / sec:,.0f}× faster")
                for op, sec in largest.updates.items()
            ],
            "lrr",
        )
    )
    parts.append(
        "\n\n**Distance lookups** (one GPU pair per call). *uniform*: both GPUs drawn uniformly "
        "from the whole cluster (mostly different zones); *same rack*: the second GPU from the "
        "first one's rack. NetworkX: `nx.shortest_path_length(G, u, v, weight='weight')` "
        "(Dijkstra from `u`, stops at `v`), on fewer pairs because it is slow; every method "
        "returned the same distances on the pairs it was timed on (*agree*).\n\n"
    )
    rows = []
    for t in r.topology:
        for lk in t.lookups:
            rows.append(
                (
                    f"{t.nodes:,}",
                    lk.mix,
                    f"{lk.scalar_per_s:,.0f}",
                    f"{lk.vector_per_s:,.0f}",
                    f"{lk.networkx_per_s:,.1f} ({lk.networkx_pairs} pairs)",
                    times(lk.ratio),
                    times(lk.vector_per_s / lk.networkx_per_s),
                    "yes" if lk.agree else "**NO**",
                )
            )
    parts.append(
        table(
            (
                "nodes",
                "pairs",
                "index.distance /s",
                "vectorised /s",
                "NetworkX /s",
                "scalar vs NetworkX",
                "vectorised vs NetworkX",
                "agree",
            ),
            rows,
            "llrrrrrc",
        )
    )
    return "".join(parts)


def _latency(r: Results) -> str:
    parts = []
    rows: list[tuple[object, ...]] = []
    for s in r.placement.latency:
        rows.append(
            (
                f"{s.nodes:,}",
                f"{s.gpus:,}",
                s.request + (" **(shrunk: the full one does not fit)**" if s.shrunk else ""),
                len(s.times),
                dur(s.fastest),
                dur(s.p50),
                dur(s.p99),
                dur(max(s.times)),
                dur(max(run.static_build_s for run in s.runs)),
                dur(max(run.first_call_s for run in s.runs)),
                "yes" if s.valid else "**NO**",
            )
        )
    parts.append(
        table(
            (
                "nodes",
                "GPUs",
                "deployment",
                "solves",
                "min",
                "p50",
                "p99",
                "max",
                "static-state build (max)",
                "first call, cold (max)",
                "valid",
            ),
            rows,
            "lrlrrrrrrrc",
        )
    )
    parts.append(
        "\n\nPer snapshot (each seed is a different background occupancy). *snapshot.build*: "
        "Node and Pod objects to a snapshot with a new `IndexBuilder`; *warm builder*: the same "
        "again with a long-lived builder that already holds every node (nothing changed), i.e. "
        "what a planning cycle pays to refresh its snapshot. Neither is part of p50/p99.\n\n"
    )
    rows = []
    for s in r.placement.latency:
        for run in s.runs:
            rows.append(
                (
                    f"{run.nodes:,}",
                    run.seed,
                    f"{run.occupancy:.0%}",
                    f"{run.free_gpus:,}",
                    dur(run.snapshot_build_s),
                    dur(run.snapshot_warm_s),
                    dur(run.static_build_s),
                    dur(run.first_call_s),
                    dur(common.percentile(run.times_s, 50)),
                    dur(common.percentile(run.times_s, 99)),
                    num(run.cost["intraReplica"]),
                    num(run.cost["traffic"]),
                    ", ".join(f"{k} {v}" for k, v in run.tiers.items()),
                    "; ".join(run.problems) or "yes",
                )
            )
    parts.append(
        table(
            (
                "nodes",
                "seed",
                "busy",
                "free GPUs",
                "snapshot.build",
                "snapshot.build, warm builder",
                "static state",
                "first call",
                "p50",
                "p99",
                "intra cost",
                "traffic cost",
                "KV pairs per tier",
                "valid",
            ),
            rows,
            "lrrrrrrrrrrrlc",
        )
    )
    return "".join(parts)


def _reference(r: Results) -> str:
    rows: list[tuple[object, ...]] = []
    for x in r.placement.reference:
        ref_cost = (
            f"{num(x.reference_cost['intraReplica'])} / {num(x.reference_cost['traffic'])}"
            if x.reference_cost
            else "—"
        )
        ref_time = dur(x.reference_s) + (
            f" (stopped at its {x.time_limit_s:.0f} s limit, {x.replicas_done}/{x.replicas} "
            "replicas placed)"
            if x.capped
            else f" (median of {x.runs})"
        )
        rows.append(
            (
                f"{x.nodes:,}",
                x.request,
                dur(x.graph_build_s),
                ref_time,
                dur(x.shorthop_p50_s),
                ("≥ " if x.capped else "") + times(x.ratio),
                f"{x.dijkstra_runs:,} / {x.pair_queries:,}",
                f"{num(x.shorthop_cost['intraReplica'])} / {num(x.shorthop_cost['traffic'])}",
                ref_cost,
                "yes" if x.shorthop_valid else "**NO**",
                "—" if x.reference_valid is None else ("yes" if x.reference_valid else "**NO**"),
                "—"
                if x.graph_cost_matches is None
                else ("yes" if x.graph_cost_matches else "**NO**"),
            )
        )
    return table(
        (
            "nodes",
            "deployment",
            "graph build (once)",
            "reference plan",
            "shorthop p50",
            "speed-up",
            "Dijkstra runs / pair queries",
            "shorthop cost (intra / traffic)",
            "reference cost",
            "shorthop valid",
            "reference valid",
            "graph cost = index cost",
        ),
        rows,
        "llrrrrrrrccc",
    )


def render(r: Results, plots: dict[str, str]) -> str:
    m = r.machine
    st = r.settings
    target = st.target_size
    return f"""# shorthop benchmarks

<!-- Generated by `python -m bench` (bench/report.py). Do not edit by hand: run `make bench`. -->

Pure-Python benchmarks of shorthop's core (no Kubernetes): how fast node labels become distances,
how fast a deployment is planned, how that compares with the same objective computed through
NetworkX shortest paths, and how good the plans are. Every figure below was measured by the run
described under *Machine*; nothing is copied in by hand.

## How to reproduce

```
make bench            # = .venv/bin/python -m bench; writes docs/benchmarks.md and docs/bench/*.png
python -m bench --quick --out /tmp/bench   # tiny sizes, seconds (the smoke test)
```

This file was written by: `{r.command}` (total run time {dur(r.elapsed_s)}).

## Machine

{
        table(
            ("", ""),
            [
                ("CPU", m["cpu"]),
                ("cores", m["cores"]),
                ("Python", m["python"]),
                ("numpy", m["numpy"]),
                ("networkx", m["networkx"]),
                ("platform", m["platform"]),
                ("date", m["date"]),
                ("load average (1/5/15 min) at start", m["load"]),
                ("load average at the end", r.load_at_end),
                ("commit", m["commit"]),
            ],
            "ll",
        )
    }

## What is measured

1. **Topology** (`bench/topology.py`): label parsing (`labels.parse_node` on every Node), distance
   index build (`index.build_index`), NetworkX graph build (`graph.build_graph`), incremental
   index updates (`IndexBuilder.upsert` / `remove` / `freeze`) against a cold build, and distance
   lookups per second (`TopologyIndex.distance`, a numpy-vectorised variant defined in the bench,
   and `networkx.shortest_path_length`). Clusters: about half GB200 NVL72 compute trays (4 GPUs,
   18 per rack, one NVLink domain per rack) and half HGX H100 nodes (8 GPUs) in scalable units,
   from `shorthop.topology.fake` with the `plain` preset (zone / block / rack).
2. **Placement latency** (`bench/placement.py`): `solver.solve(snapshot, request)` for the
   benchmark deployment on clusters of {", ".join(f"{s:,}" for s in st.latency_sizes)} nodes with
   background pods (`fake.background_pods`) occupying
   {
        ", ".join(f"{common.occupancy_of(seed):.0%} (seed {seed})" for seed in st.seeds)
    } of the GPUs. Per snapshot: the static state (domain tree, subset tables;
   cached per index generation) is built and timed on its own, then the caches are cleared and
   the first solve runs cold (*first call*), then {st.solves} solves are timed one by one;
   p50/p99 are over all seeds of a size.
3. **NetworkX reference** (`bench/networkx_reference.py`): the same greedy objective (per
   replica, every node with room is a candidate; GPU subset, intra-replica cost and traffic cost
   to placed peers all from `nx.shortest_path_length` / `nx.single_source_dijkstra_path_length`,
   cached within one plan only), timed on the same snapshot and request as shorthop; the ratio
   divides its time by shorthop's p50 on that snapshot. It stops at a time limit
   ({st.reference_limit_s:.0f} s); a stopped run gives a lower bound on the ratio.
4. **Quality** (`bench/quality.py`, `bench/stream.py`): (a) cost against the exact optimum
   (`placement.exact`) on random small instances of every shape, both traffic patterns; (b) cost,
   tier mix and planning time against every baseline of `placers.all_placers()`; (c) streams of
   deployments arriving and departing, what each strategy leaves free for large replicas; (d) the
   share of KV pairs on NVLink at scale where a one-NVLink-domain placement exists.

## Summary: targets vs measured

{_summary(r)}

## 1. Topology (issue B)

{_topology(r)}

## 2. Placement latency (issue C)

![latency vs cluster size]({plots["latency"]})

Benchmark deployment: {common.describe(common.deployment())}. *Static-state build*: domain tree and
per-node-class GPU subset tables, built once per index generation and shared by every plan of that
generation (not part of p50/p99). *First call*: the first solve after clearing those caches
(static state + plan). The targets are for {target:,} nodes. *min* is the fastest solve, the
figure least disturbed by other work on the machine (see the load average under *Machine*);
the solver is deterministic, so the spread between min and p99 on one snapshot is noise.

{_latency(r)}

## 3. Speed vs the NetworkX reference

![shorthop vs NetworkX]({plots["networkx"]})

Same snapshot (seed {st.seeds[0]}) and request for both. The graph is built once per size and not
counted in the reference's plan time (as shorthop's index and static state are not counted in its
p50). *Dijkstra runs*: single-source runs from placed peer GPUs (the traffic term); *pair
queries*: single-pair `shortest_path_length` calls (GPU subsets inside a node). The reference is
a simpler heuristic than the solver (no multi-node domain fill, no refinement), so its cost can be
higher; a NetworkX implementation of the solver's full search would be slower still, so the ratio
is conservative. *graph cost = index cost*: the (intra, traffic) cost the reference summed from
graph distances equals the objective's cost computed from the index.

{_reference(r)}

{report_quality.section(r.quality, st, plots)}
## 5. End-to-end throughput vs kube-scheduler (issue E)

{report_throughput.section(r.throughput)}
"""


def write(out: Path, results: Results) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    images = out / "bench"
    images.mkdir(exist_ok=True)
    plots = {
        "latency": plot_latency,
        "networkx": plot_networkx,
    }
    links = {}
    for name, draw in plots.items():
        draw(results, images / f"{name}.png")
        links[name] = f"bench/{name}.png"
    for name, draw_quality in report_quality.PLOTS.items():
        draw_quality(results.quality, images / f"{name}.png")
        links[name] = f"bench/{name}.png"
    path = out / "benchmarks.md"
    path.write_text(render(results, links))
    return path

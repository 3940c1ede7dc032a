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
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from bench import common, quality
from bench.placement import PlacementResult
from bench.quality import QualityResult
from bench.settings import Settings
from bench.throughput import Throughput
from bench.topology import TopologyResult

P50_TARGET_S = 0.020
P99_TARGET_S = 0.050
RATIO_TARGET = 100.0
INDEX_TARGET_S = 2.0
TIER_COLORS = {
    "same-node-nvlink": "#1b7837",
    "same-node-pcie": "#7fbf7b",
    "nvlink-domain": "#5aae61",
    "rack": "#fdb863",
    "block": "#e08214",
    "zone": "#b35806",
    "cluster": "#7f3b08",
}


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


def dur(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def times(x: float) -> str:
    return f"{x:,.2f}×" if x < 10 else f"{x:,.0f}×"


def num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**PASS**" if ok else "**MISS**")


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


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    _save(fig, path)


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
    _save(fig, path)


def plot_tiers(r: Results, path: Path) -> None:
    sizes = r.quality.baselines
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.8), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        rows = [row for row in size.rows if row.feasible]
        labels = [row.strategy for row in rows]
        bottom = [0.0] * len(rows)
        for tier in size.tiers:
            share = [100 * row.tiers.get(tier, 0) / row.pairs if row.pairs else 0.0 for row in rows]
            if not any(share):
                continue
            ax.bar(
                labels,
                share,
                bottom=bottom,
                color=TIER_COLORS.get(tier, "#999999"),
                label=tier,
                edgecolor="white",
                lw=0.5,
            )
            bottom = [b + s for b, s in zip(bottom, share, strict=True)]
        ax.set_title(f"{size.nodes:,} nodes, {size.occupancy:.0%} GPUs busy")
        ax.set_ylabel("prefill↔decode GPU pairs (%)")
        ax.set_ylim(0, 100)
        ax.tick_params(axis="x", labelrotation=20)
        infeasible = [row.strategy for row in size.rows if not row.feasible]
        if infeasible:
            ax.set_xlabel("infeasible: " + ", ".join(infeasible))
    handles, names = [], []
    for ax in axes[0]:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    order = [t for t in TIER_COLORS if t in names] + [n for n in names if n not in TIER_COLORS]
    fig.legend(
        [handles[names.index(n)] for n in order],
        order,
        loc="center right",
        fontsize=9,
        title="tier (closest first)",
    )
    fig.suptitle("Tier of each KV-transfer GPU pair, per strategy (green = NVLink)")
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_stream(r: Results, path: Path) -> None:
    streams = r.quality.streams
    fig, axes = plt.subplots(1, len(streams), figsize=(5.5 * len(streams), 4.5), squeeze=False)
    for ax, s in zip(axes[0], streams, strict=True):
        names = [row.strategy for row in s.rows]
        placed = [row.placed_before_failure for row in s.rows]
        stuck = [(row.at_first_failure or row.at_end).stranded for row in s.rows]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], placed, width=0.4, color="#2166ac", label="deployments placed")
        ax.set_ylabel("deployments placed before the first failure", color="#2166ac")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xticks(list(x), names, rotation=20)
        ax2 = ax.twinx()
        ax2.bar([i + 0.2 for i in x], stuck, width=0.4, color="#d6604d", label="stranded GPUs")
        ax2.set_ylabel("stranded GPUs at that point", color="#d6604d")
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(
            f"{s.nodes:,} nodes, {s.occupancy:.0%} background, {s.deployments} deployments"
        )
    fig.suptitle("Deployment stream: how long each strategy lasts, and what it strands")
    _save(fig, path)


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
    e = r.quality.exact
    ok = e.compared > 0 and e.equal == e.compared and not e.feasibility_mismatch
    rows.append(
        (
            "Cost equal to the exact optimum on every small instance",
            f"{e.equal} of {e.compared} equal; {len(e.feasibility_mismatch)} feasibility "
            f"disagreements; {len(e.timed_out) + len(e.too_large)} not finished by exact",
            status(ok),
        )
    )
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


def _exact(r: Results) -> str:
    e = r.quality.exact
    rows = [
        ("instances generated", e.instances),
        ("both feasible, costs compared", e.compared),
        ("… shorthop cost equal to the optimum", e.equal),
        ("… shorthop worse (gap)", len(e.gaps)),
        ("both infeasible (agree)", e.both_infeasible),
        ("feasibility disagreements", len(e.feasibility_mismatch)),
        ("refused by exact (search space too large)", len(e.too_large)),
        (f"exact did not finish within {e.time_limit_s:.0f} s", len(e.timed_out)),
        ("exact solver time, total / slowest", f"{dur(e.exact_s)} / {dur(e.slowest_exact_s)}"),
        ("shorthop time, total", dur(e.shorthop_s)),
    ]
    out = table(("", "count"), rows, "lr")
    if e.gaps:
        out += "\n\nGaps (instance seed for `bench.quality.small_instance(seed)`):\n\n" + table(
            ("seed", "shorthop (intra, traffic)", "exact (intra, traffic)"), e.gaps, "lll"
        )
    if e.feasibility_mismatch:
        out += "\n\nFeasibility disagreements (seeds): " + ", ".join(
            map(str, e.feasibility_mismatch)
        )
    skipped = e.too_large + e.timed_out
    if skipped:
        out += "\n\nNot compared (exact refused or too slow), seeds: " + ", ".join(
            map(str, skipped)
        )
    return out


def _baselines(r: Results) -> str:
    parts = []
    for size in r.quality.baselines:
        tiers = [t for t in size.tiers if any(row.tiers.get(t) for row in size.rows)]
        parts.append(
            f"\n\n**{size.nodes:,} nodes** ({size.gpus:,} GPUs, {size.occupancy:.0%} busy, "
            f"{size.free_gpus:,} free), deployment: {size.request}.\n\n"
        )
        shorthop = next((row for row in size.rows if row.strategy == "shorthop"), None)
        rows: list[tuple[object, ...]] = []
        for row in size.rows:
            if not row.feasible:
                rows.append(
                    (row.strategy, "infeasible", "", "", *[""] * len(tiers), "", dur(row.seconds))
                )
                continue
            vs = (
                times((row.intra + row.traffic) / (shorthop.intra + shorthop.traffic))
                if shorthop and shorthop.feasible and shorthop.intra + shorthop.traffic
                else "—"
            )
            rows.append(
                (
                    row.strategy + ("" if row.valid else " **(INVALID)**"),
                    num(row.intra),
                    num(row.traffic),
                    vs,
                    *[f"{row.tiers.get(t, 0):,}" for t in tiers],
                    f"{row.nvlink_share:.0%}",
                    dur(row.seconds),
                )
            )
        parts.append(
            table(
                (
                    "strategy",
                    "intra cost",
                    "traffic cost",
                    "intra + traffic vs shorthop",
                    *[f"{t} pairs" for t in tiers],
                    "KV pairs on NVLink",
                    "planning time",
                ),
                rows,
            )
        )
    return "".join(parts)


def _streams(r: Results) -> str:
    parts = [
        "Shapes (per deployment, one shape drawn at random, replicas per role drawn from "
        "the range; traffic prefill → decode):\n\n",
        table(
            ("shape", "prefill replica", "decode replica", "replicas per role"),
            [
                (name, common.shape(*p), common.shape(*d), f"{lo}–{hi}")
                for name, p, d, (lo, hi) in quality.STREAM_SHAPES
            ],
            "llll",
        ),
        "\n\n**Stranded GPUs** (precise definition): the largest replica of the stream is 16 "
        "GPUs (4 pods × 4 GPUs). A node offers 4 × ⌊free/4⌋ of its free GPUs to 4-GPU pods; a "
        "rack (the finest network domain: one NVL72 rack, which is also one NVLink domain, or "
        "one HGX scalable unit) can host such a replica inside it when its nodes' offers add up "
        "to at least 16. A free GPU is *stranded* when it is not part of an offer of such a "
        "rack, i.e. the largest replica could not use it without leaving its rack. "
        "*16-GPU slots*: how many such replicas still fit, rack by rack.\n",
    ]
    for s in r.quality.streams:
        parts.append(
            f"\n\n**{s.nodes:,} nodes, {s.occupancy:.0%} background occupancy**, "
            f"{s.deployments} deployments asking for {s.gpus_requested:,} GPUs in all "
            f"({', '.join(f'{n} {k}' for k, n in sorted(s.shapes.items()))}). At the start: "
            f"{s.start.free:,} free GPUs, {s.start.stranded:,} stranded, "
            f"{s.start.slots} 16-GPU slots.\n\n"
        )
        rows: list[tuple[object, ...]] = []
        for row in s.rows:
            first = row.at_first_failure
            rows.append(
                (
                    row.strategy,
                    row.placed_before_failure,
                    f"{row.placed} / {s.deployments}",
                    f"{row.gpus_placed:,}",
                    f"{first.free:,}" if first else "no failure",
                    f"{first.stranded:,}" if first else "—",
                    f"{first.slots}" if first else "—",
                    f"{row.at_end.free:,} / {row.at_end.stranded:,}",
                    f"{row.nvlink_share:.0%}",
                    dur(row.seconds),
                )
            )
        parts.append(
            table(
                (
                    "strategy",
                    "placed before first failure",
                    "placed in all",
                    "GPUs placed",
                    "free GPUs at first failure",
                    "stranded at first failure",
                    "16-GPU slots at first failure",
                    "free / stranded at the end",
                    "KV pairs on NVLink",
                    "time (plans + snapshots)",
                ),
                rows,
            )
        )
    return "".join(parts)


def _throughput(r: Results) -> str:
    tp = r.throughput
    if tp is None:
        return "Not measured in this run (`--quick` or `--no-cluster`)."
    rows = [
        (
            "kube-scheduler (plain pods)",
            tp.pods,
            dur(tp.scheduler_seconds),
            f"{tp.scheduler_rate:.1f}",
        ),
        (
            f"shorthop, device plugin ({tp.deployments} InferenceDeployments of 8 pods)",
            tp.pods,
            dur(tp.shorthop_seconds),
            f"{tp.shorthop_rate:.1f}",
        ),
    ]
    dra = ""
    if tp.dra_seconds and tp.dra_rate and tp.dra_running_seconds:
        rows.append(
            (
                f"shorthop, DRA ({tp.deployments} InferenceDeployments of 8 pods)",
                tp.pods,
                dur(tp.dra_seconds),
                f"{tp.dra_rate:.1f}",
            )
        )
        dra = (
            " *shorthop, DRA*: the same nodes with their GPUs published in ResourceSlices as the "
            "NVIDIA DRA driver publishes them; per pod the operator also creates a ResourceClaim, "
            "writes its allocation (the planned devices) and reads every claim once before the "
            f"bind; every pod was Running {dur(tp.dra_running_seconds)} after the first create "
            "and every claim allocated."
        )
    return (
        "A private local control plane (kube-apiserver, etcd, kube-scheduler, "
        f"kube-controller-manager and kwok, built from source) with {tp.nodes:,} fake GPU nodes "
        "(half GB200 NVL72 trays, half HGX H100). *kube-scheduler*: a client creates the pods (16 "
        "threads) and the clock stops when every pod has a node. *shorthop*: a client creates the "
        "InferenceDeployments (16 threads) and the clock stops when every pod is bound; the "
        "operator creates and binds every pod itself (`pods/binding`), writes status and events "
        "and one headless Service per role. Completion is seen by a pod watch in a process of its "
        "own, the same for both phases. Both phases start from the same empty nodes; every "
        f"shorthop pod was Running {dur(tp.shorthop_running_seconds)} after the first create. The "
        "operator is one Python process; the API server, etcd, kwok, the controllers and the "
        "operator share the machine's cores."
        + dra
        + "\n\n"
        + table(("who binds", "pods", "time to all bound", "pods/s"), rows, "lrrr")
        + f"\n\nRatio shorthop (device plugin) / kube-scheduler: **{tp.ratio:.2f}×**."
        + ("" if tp.ratio >= 1.0 else "\n\n" + THROUGHPUT_GAP)
    )


THROUGHPUT_GAP = """**Why the target is missed here.** Both phases saturate the two cores, so the
rate follows the CPU every process spends per pod. Beyond the create and the bind that both phases
make, each shorthop deployment costs the API server a custom-resource create and status
patches, two Service creates (after which kube-controller-manager writes the Endpoints and
EndpointSlices), and larger pods (environment, annotations, owner reference) to store and send
to every watcher; the operator itself is a Python process on the same cores, a quarter of whose
time is the serialised planning. Counted with the API server's `apiserver_request_total` and
`/proc` CPU times while developing: about 6.6 CPU-seconds for kube-scheduler's 512 pods against
about 10 for shorthop's (not part of this run's figures)."""


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
4. **Quality** (`bench/quality.py`): (a) cost against the exact optimum (`placement.exact`) on
   random small instances; (b) cost, tier mix and planning time against every baseline of
   `placers.all_placers()`; (c) a stream of deployments placed one after another with each
   strategy, counting how long each lasts and how many free GPUs it strands.

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

## 4. Quality

### (a) Cost vs the exact optimum

Instances from `bench.quality.small_instance(seed)` for seeds 0, 1, 2, … (at most 4 nodes of up
to 8 GPUs of mixed kinds, up to half of each node's GPUs already taken; at most 4 pods of 1, 2 or 4
GPUs), generated until {
        st.exact_target
    } instances had a feasible optimum. Compared: the lexicographic
(intra-replica, traffic) cost key; fragmentation only breaks ties and is not compared.

{_exact(r)}

### (b) Against the baselines

Every strategy plans the same request on the same snapshot (seed {st.baseline_seed}); costs from
`placement.objective`. *KV pairs on NVLink*: share of prefill↔decode GPU pairs on
`same-node-nvlink` or `nvlink-domain`. Planning time is one call, with the static state already
built.

![tier mix per strategy]({plots["tiers"]})
{_baselines(r)}

### (c) Stranded GPUs over a stream of deployments

![deployment stream]({plots["stream"]})

Each strategy starts from the same snapshot and places the same deployments in the same order;
every placed pod is added to the pod list with its `shorthop.io/gpus` annotation and the next
snapshot is built from that list. A deployment that does not fit is skipped and the stream goes
on.

{_streams(r)}

## 5. End-to-end throughput vs kube-scheduler (issue E)

{_throughput(r)}
"""


def write(out: Path, results: Results) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    images = out / "bench"
    images.mkdir(exist_ok=True)
    plots = {
        "latency": plot_latency,
        "networkx": plot_networkx,
        "tiers": plot_tiers,
        "stream": plot_stream,
    }
    links = {}
    for name, draw in plots.items():
        draw(results, images / f"{name}.png")
        links[name] = f"bench/{name}.png"
    path = out / "benchmarks.md"
    path.write_text(render(results, links))
    return path

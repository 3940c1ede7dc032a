"""Section 4 of ``benchmarks.md`` (placement quality) and its plots, from a ``QualityResult``.

:func:`section` renders the whole section; :func:`write_section` replaces only that section in an
existing ``benchmarks.md`` (``python -m bench --only quality``), stamping it with the machine,
load and commit of the run that measured it, since the file's *Machine* table describes the run
that wrote the other sections.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from bench import common, count_optimum, stream
from bench.fmt import TIER_COLORS, dur, num, save, status, table, times, yes
from bench.quality import SHARE_TARGET, QualityResult
from bench.settings import Settings

HEADING = "## 4. Quality"
SERIES = ("slots", "whole_domains", "stranded")


# -- plots ---------------------------------------------------------------------------------------


def plot_tiers(q: QualityResult, path: Path) -> None:
    sizes = q.baselines
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.8), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        rows = [row for row in size.rows if row.feasible]
        bottom = [0.0] * len(rows)
        for tier in size.tiers:
            share = [100 * row.tiers.get(tier, 0) / row.pairs if row.pairs else 0.0 for row in rows]
            if any(share):
                ax.bar(
                    [row.strategy for row in rows],
                    share,
                    bottom=bottom,
                    color=TIER_COLORS.get(tier, "#999999"),
                    label=tier,
                    edgecolor="white",
                    lw=0.5,
                )
                bottom = [b + s for b, s in zip(bottom, share, strict=True)]
        ax.set_title(f"{size.nodes:,} nodes, {size.occupancy:.0%} GPUs busy")
        ax.set_ylabel("prefill↔decode GPU pairs, all-to-all (%)")
        ax.set_ylim(0, 100)
        ax.tick_params(axis="x", labelrotation=20)
    handles, names = [], []
    for ax in axes[0]:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    order = [t for t in TIER_COLORS if t in names] + [n for n in names if n not in TIER_COLORS]
    fig.legend([handles[names.index(n)] for n in order], order, loc="center right", fontsize=9)
    fig.suptitle("Tier of each KV-transfer GPU pair, per strategy (green = NVLink)")
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_stream(q: QualityResult, path: Path) -> None:
    """Per stream: slots for the largest replica over time, one line per strategy."""
    streams = q.streams
    cols = min(3, len(streams))
    rows = (len(streams) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, s in zip(axes.flat, streams, strict=False):
        for run in s.runs:
            ax.plot([m.slots for m in run.series], label=run.strategy, lw=1.2)
        ax.set_title(f"{s.mix}, seed {s.seed} ({s.nodes} nodes)", fontsize=10)
        ax.set_xlabel("event (one arrival, with the departures due)")
        ax.set_ylabel("slots for a 4 × 4-GPU replica")
    for ax in list(axes.flat)[len(streams) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Streams with departures: room left for the largest replica, per strategy")
    save(fig, path)


PLOTS = {"tiers": plot_tiers, "stream": plot_stream}


# -- markdown ------------------------------------------------------------------------------------


def summary_rows(q: QualityResult) -> list[tuple[str, str, str]]:
    """Rows of the report's *Summary: targets vs measured* table for this section."""
    e = q.exact
    rows = [
        (
            "Cost equal to the exact optimum on every small instance (both patterns)",
            f"{e.equal:,} of {e.compared:,} equal over {len(e.shapes)} shape/pattern pairs; "
            f"{len(e.gaps)} gaps or feasibility disagreements",
            status(e.ok),
        )
    ]
    rows += count_optimum.summary_rows(q.counted)
    checked = [r for r in q.nvlink if r.witness]
    if checked:
        low = min(r.share for r in checked)
        rows.append(
            (
                f"KV pairs on NVLink ≥ {SHARE_TARGET:.0%} where a one-domain placement exists",
                f"lowest {low:.1%} over {len(checked)} deployments",
                status(low >= SHARE_TARGET),
            )
        )
    every = q.streams + q.survey
    if every:
        kept = sum(_keeps_more(s) for s in every)
        rows.append(
            (
                "Streams with departures: shorthop keeps more whole NVLink domains free "
                "than first-fit, best-fit and TAS",
                f"in {kept} of {len(every)} streams (mean over events); {_bought(every)}",
                status(kept == len(every)),
            )
        )
        more, same, fewer, gap = _placed_tally(every)
        served = [_served_ratio(s) for s in every]
        rows.append(
            (
                "Streams with departures: shorthop places ≥ first-fit and best-fit",
                f"more in {more}, as many in {same}, fewer in {fewer} of {len(every)} streams"
                + (f" (by at most {gap})" if fewer else "")
                + f"; GPU-events served {min(served):.3f}–{max(served):.3f}× first-fit's",
                status(fewer == 0),
            )
        )
    return rows


def _run(s: stream.StreamResult, strategy: str) -> stream.StrategyRun:
    return next(r for r in s.runs if r.strategy == strategy)


def _placed(s: stream.StreamResult, strategy: str) -> int:
    return _run(s, strategy).placed


def _rival(s: stream.StreamResult) -> int:
    """The most deployments first-fit or best-fit placed in the stream."""
    return max(r.placed for r in s.runs if r.strategy in ("first-fit", "best-fit"))


def _placed_tally(streams: list[stream.StreamResult]) -> tuple[int, int, int, int]:
    """Streams where shorthop placed more, as many, fewer deployments than the better of
    first-fit and best-fit, and the largest shortfall."""
    diffs = [_placed(s, "shorthop") - _rival(s) for s in streams]
    fewer = [d for d in diffs if d < 0]
    return (
        sum(d > 0 for d in diffs),
        sum(d == 0 for d in diffs),
        len(fewer),
        -min(fewer, default=0),
    )


def _keeps_more(s: stream.StreamResult) -> bool:
    """Whether shorthop's mean whole NVLink domains free beats every rival's in the stream."""
    rivals = [r.mean("whole_domains") for r in s.runs if r.strategy in stream.RIVALS]
    return _run(s, "shorthop").mean("whole_domains") > max(rivals, default=0.0)


def _beyond(streams: list[stream.StreamResult], rival: str) -> stream.Beyond:
    """shorthop's :class:`~bench.stream.Beyond` against ``rival``, summed over ``streams``."""
    total = stream.Beyond()
    for s in streams:
        b = _run(s, "shorthop").beyond.get(rival)
        if b is not None:
            total.absorb(b)
    return total


def _bought(streams: list[stream.StreamResult]) -> str:
    """One line: what the whole domains shorthop took beyond first-fit's plans bought."""
    b = _beyond(streams, "first-fit")
    extra = sum(b.extra.values())
    if not extra:
        return "its plans never took more whole domains than first-fit's on the same state"
    share = {k: n / extra for k, n in b.extra.items()}
    return (
        f"of the {extra:,} whole domains its plans took beyond first-fit's on the same state, "
        f"{share['intra']:.0%} bought a lower intra-replica cost, {share['traffic']:.0%} a "
        f"lower KV traffic cost, {share['nothing']:.0%} nothing"
    )


def _served_ratio(s: stream.StreamResult, baseline: str = "first-fit") -> float:
    """shorthop's GPU-events served divided by ``baseline``'s."""
    return _run(s, "shorthop").gpu_events / max(_run(s, baseline).gpu_events, 1)


def _exact(q: QualityResult) -> str:
    e = q.exact
    rows = []
    for s in e.shapes:
        exact_s = sum(o.exact_s for o in s.outcomes)
        slowest = max((o.exact_s for o in s.outcomes), default=0.0)
        rows.append(
            (
                s.family,
                s.pattern,
                len(s.outcomes),
                s.compared,
                s.count("equal"),
                s.count("gap"),
                s.count("mismatch"),
                s.count("infeasible"),
                s.count("too-large") + s.count("timeout"),
                f"{dur(exact_s)} / {dur(slowest)}",
                dur(sum(o.shorthop_s for o in s.outcomes)),
                yes(s.ok),
            )
        )
    out = table(
        (
            "shape (family)",
            "pattern",
            "instances",
            "compared (both feasible)",
            "equal",
            "gaps",
            "feasibility disagreements or invalid plans",
            "both infeasible",
            "not finished by exact",
            "exact time, total / slowest",
            "shorthop time, total",
            "0 gaps",
        ),
        rows,
        "llrrrrrrrrrc",
    )
    if e.gaps:
        out += "\n\nGaps (`bench.quality.exact_instance(family, pattern, seed)`):\n\n" + table(
            ("family", "pattern", "seed", "shorthop (intra, traffic)", "exact (intra, traffic)"),
            e.gaps,
            "llrll",
        )
    return out


def _baselines(q: QualityResult) -> str:
    parts = []
    for size in q.baselines:
        tiers = [t for t in size.tiers if any(row.tiers.get(t) for row in size.rows)]
        parts.append(
            f"\n\n**{size.nodes:,} nodes** ({size.gpus:,} GPUs, {size.occupancy:.0%} busy, "
            f"{size.free_gpus:,} free), deployment: {size.request}.\n\n"
        )
        shorthop = next((row for row in size.rows if row.strategy == "shorthop"), None)
        rows: list[tuple[object, ...]] = []
        for row in size.rows:
            if not row.feasible:
                rows.append((row.strategy, "infeasible", "", "", *[""] * len(tiers), "", ""))
                continue
            base = shorthop.intra + shorthop.traffic if shorthop and shorthop.feasible else 0
            rows.append(
                (
                    row.strategy + ("" if row.valid else " **(INVALID)**"),
                    num(row.intra),
                    num(row.traffic),
                    times((row.intra + row.traffic) / base) if base else "—",
                    *[f"{row.tiers.get(t, 0):,}" for t in tiers],
                    f"{row.nvlink_share:.0%}",
                    dur(row.seconds),
                )
            )
        header = ("strategy", "intra cost", "traffic cost", "intra + traffic vs shorthop")
        parts.append(
            table(
                (*header, *[f"{t} pairs" for t in tiers], "KV pairs on NVLink", "planning time"),
                rows,
            )
        )
    return "".join(parts)


def _streams(q: QualityResult) -> str:
    parts = [
        table(
            ("shape", "prefill replica", "decode replica", "replicas per role"),
            [
                (name, common.shape(*p), common.shape(*d), f"{lo}–{hi}")
                for name, p, d, (lo, hi) in stream.SHAPES
            ],
            "llll",
        )
    ]
    for s in q.streams:
        parts.append(
            f"\n\n**{s.mix}, seed {s.seed}**: {s.nodes:,} nodes, {s.gpus:,} GPUs; "
            f"{s.deployments} arrivals, each staying {s.lifetime[0]}–{s.lifetime[1]} events "
            f"({', '.join(f'{n} {k}' for k, n in sorted(s.shapes.items()))}).\n\n"
        )
        rows = [
            (
                r.strategy,
                f"{r.placed} / {s.deployments}",
                f"{r.mean('slots'):.1f} / {r.low('slots'):.0f}",
                f"{r.mean('whole_domains'):.1f}",
                f"{r.mean('whole_nodes'):.1f}",
                f"{r.mean('stranded'):.1f}",
                f"{r.nvlink_share:.0%}",
                f"{r.gpu_events:,}",
                yes(not r.invalid),
                dur(r.seconds),
            )
            for r in s.runs
        ]
        parts.append(
            table(
                (
                    "strategy",
                    "deployments placed",
                    "slots for the largest replica, mean / lowest",
                    "whole NVLink domains free, mean",
                    "whole nodes free, mean",
                    "GPUs stranded (expected), mean",
                    "KV pairs on NVLink",
                    "GPU-events served",
                    "every plan valid",
                    "time",
                ),
                rows,
            )
        )
    every = q.streams + q.survey
    if every:
        parts.append(_survey(len(q.streams), every))
        parts.append(_beyond_table(every))
    return "".join(parts)


def _survey(detailed: int, every: list[stream.StreamResult]) -> str:
    """One row per stream (the ones above and the survey's): shorthop against first-fit,
    best-fit and the TAS-like baseline."""
    more, same, fewer, gap = _placed_tally(every)
    served = [_served_ratio(s) for s in every]
    rows = []
    for s in every:
        sh, ff, bf, tas = (_run(s, n) for n in ("shorthop", "first-fit", "best-fit", "tas"))
        rows.append(
            (
                f"{s.mix}, seed {s.seed}",
                f"{sh.placed} / {ff.placed} / {bf.placed} / {tas.placed}",
                f"{_served_ratio(s):.3f} / {_served_ratio(s, 'best-fit'):.3f}",
                f"{sh.nvlink_share:.0%} / {ff.nvlink_share:.0%} / {bf.nvlink_share:.0%}",
                f"{sh.mean('whole_domains'):.1f} / {ff.mean('whole_domains'):.1f} / "
                f"{bf.mean('whole_domains'):.1f}",
                yes(not any(r.invalid for r in (sh, ff, bf, tas))),
            )
        )
    verdict = (
        f"\n\n**All {len(every)} streams** (the {detailed} above and {len(every) - detailed} "
        "more, with shorthop, first-fit, best-fit and the TAS-like baseline only): shorthop "
        f"placed more deployments than the better of first-fit and best-fit in {more}, as many "
        f"in {same} and fewer in {fewer}"
        + (f" (by at most {gap})" if fewer else "")
        + f"; its GPU-events served were {min(served):.3f}–{max(served):.3f}× first-fit's.\n\n"
    )
    return verdict + table(
        (
            "stream",
            "placed: shorthop / first-fit / best-fit / tas",
            "GPU-events served, shorthop ÷ first-fit / ÷ best-fit",
            "KV pairs on NVLink: shorthop / first-fit / best-fit",
            "whole NVLink domains free, mean: shorthop / first-fit / best-fit",
            "every plan valid",
        ),
        rows,
        "lllllr",
    )


def _beyond_table(every: list[stream.StreamResult]) -> str:
    """Per rival, over every stream: the whole NVLink domains shorthop's plans took beyond its
    plans of the same arrivals on the same state, and what they bought."""
    rows = []
    for rival in stream.RIVALS:
        b = _beyond(every, rival)
        rows.append(
            (
                rival,
                f"{b.arrivals:,}",
                f"{b.more:,}",
                f"{b.extra['intra']:,}",
                f"{b.extra['traffic']:,}",
                f"{b.extra['nothing']:,}",
                f"{b.fewer:,} / {b.saved:,}",
                f"{b.cheaper:,}",
            )
        )
    intro = (
        f"\n\n**What shorthop's whole NVLink domains bought** (all {len(every)} streams): at every "
        "arrival shorthop placed, each baseline also planned it on shorthop's cluster state (not "
        "applied). Where shorthop's plan put pods into more whole NVLink domains than the "
        "baseline's, the extra domains are counted by what shorthop's plan had over the "
        "baseline's: a lower intra-replica cost (the baseline splits a replica over slower "
        "links), an equal intra and a lower KV traffic cost, or nothing (a domain given away by a "
        "tie-break, or a plan no cheaper than the baseline's: a defect). The last column counts "
        "the arrivals where the baseline's plan cost less than shorthop's (intra, then traffic): "
        "plans the solver missed.\n\n"
    )
    return intro + table(
        (
            "baseline",
            "arrivals both placed",
            "shorthop took more whole domains",
            "extra domains: lower intra cost",
            "extra domains: lower traffic cost",
            "extra domains: nothing",
            "baseline took more: arrivals / domains",
            "baseline's plan cheaper: arrivals",
        ),
        rows,
        "lrrrrrrr",
    )


def _nvlink(q: QualityResult) -> str:
    rows = [
        (
            f"{r.nodes:,}",
            f"{r.occupancy:.0%}",
            r.shape,
            r.pattern,
            r.gpus,
            r.room,
            "yes" if r.witness else "no",
            f"{r.share:.1%}" if r.valid else "**NO** (invalid)",
            "—" if r.ok is None else yes(r.ok),
        )
        for r in q.nvlink
    ]
    return table(
        (
            "nodes",
            "GPUs busy",
            "deployment",
            "pattern",
            "GPUs",
            "NVLink domains passing the rolled-up check",
            "one-domain placement found",
            "shorthop: KV pairs on NVLink",
            f"≥ {SHARE_TARGET:.0%}",
        ),
        rows,
        "rrllrrcrc",
    )


def section(q: QualityResult, st: Settings, plots: dict[str, str], stamp: str = "") -> str:
    """The whole quality section, from its heading to the end of subsection (d)."""
    return f"""{HEADING}
{stamp}
The objective (`placement/objective.py`, docs/design.md): intra-replica cost first, then traffic
cost (`all-to-all`: weight × the mean over every (source replica, target replica) pair of the sum
of GPU-pair distances; `paired`: the sum over peer pairs), then preferred node affinity, then
fragmentation. *KV pairs on NVLink*: the share of an edge's GPU pairs (all-to-all: every source
GPU with every target GPU) on `same-node-nvlink` or `nvlink-domain`.

### (a) Cost vs the exact optimum

Per shape (`tests.families.FAMILIES`: mixed HGX / NVL72-tray / PCIe nodes, background occupancy,
1/2/4/8-GPU replicas of one or several pods, two or three roles, scopes; *uneven-nodes*: DGX-1
V100 nodes, the real `nvidia-smi topo -m` captures of tests/fixtures and random nvidia-smi
matrices as node annotations, 3-GPU pods; *crossed*: every node kind at once, traffic edges either
way between two or three roles with weights 0.25-10, the pattern on the first edge and either
pattern on the others, up to 11 pods) and traffic pattern,
instances `bench.quality.exact_instance(family, pattern, seed)` for seeds 0, 1, 2, … until
{st.exact_target:,} had a feasible optimum. `placement.exact` (branch and bound, distances GPU pair
by GPU pair, written apart from the solver) against `solver.solve`: the (intra, traffic) key must
be equal and both must agree on feasibility; exact's time limit {st.exact_limit_s:.0f} s.
Run time {dur(q.exact.seconds)}.

{_exact(q)}

**Beyond the exact solver** (`bench/count_optimum.py`): clusters of 3-6 nodes whose GPUs are all
alike to the objective (HGX nodes, trays of one or two NVLink domains; labels and background as
above), two roles of one-pod replicas (1-16 each, pods of 1, 2 or 4 GPUs, from half to all the
free GPUs), one all-to-all edge: up to 32 pods, many too many for `placement.exact`. There a plan
is, up to cost, how many pods of each role each node holds, and the optimum is found by
enumerating the source role's spreads (the target role's pods then fill the nodes cheapest to
them). Instances `bench.count_optimum.instance(seed)`, seeds 0 to
{max(len(q.counted.outcomes) - 1, 0):,}; run time {dur(q.counted.seconds)}.

{count_optimum.tables(q.counted)}

### (b) Against the baselines

Every strategy plans the same request (all-to-all) on the same snapshot (seed {st.baseline_seed});
costs from `placement.objective`. Planning time is one call, with the static state already built.

![tier mix per strategy]({plots["tiers"]})
{_baselines(q)}

### (c) Streams with departures

![streams]({plots["stream"]})

`bench/stream.py`: one arrival per event (a shape drawn from the table, replicas per role drawn
from its range, all-to-all prefill → decode), placed by each strategy on its own copy of the
cluster (`SnapshotBuilder` fed the pod events); a deployment leaves after its drawn lifetime, one
that does not fit is counted and dropped. After every event: *slots for the largest replica*
(4 pods × 4 GPUs inside one NVLink domain: an NVL72 clique's whole 4-GPU pods ÷ 4, or a node's
own); *whole NVLink domains free* (cliques and nodes outside cliques with every GPU free);
*whole nodes free*; *GPUs stranded* (FGD, ATC'23: per shape, weighted by how often it is drawn,
the free GPUs on nodes with fewer free than that shape's largest pod). Means are over the events.
*GPU-events served*: over the deployments placed, GPUs × events stayed (to the stream's end). The
clusters run full most of the time, so the count of deployments placed turns on which arrivals
happened to fit: a strategy that places one large deployment may then fail two small ones,
serving as many GPUs; both figures are given.

{_streams(q)}

### (d) KV on NVLink where an NVLink-domain placement exists

A one-domain placement *exists* when the solver finds a valid plan of the same request with
`placement.required: nvlink-domain` (a witness); *rolled-up check*: NVLink domains with enough
free GPUs and enough whole pods of each role's size (necessary, an upper bound). Where one
exists, shorthop's plan of the unscoped request must put ≥ {SHARE_TARGET:.0%} of the KV GPU pairs on
NVLink.

{_nvlink(q)}
"""


FIRST_ROW = "| Cost equal to the exact optimum"  # the first summary row of this section
AFTER_ROWS = "| E2E:"  # the summary row that follows this section's rows


def replace_summary_rows(text: str, q: QualityResult) -> str:
    """``text`` (a whole ``benchmarks.md``) with its summary rows from this section, from
    :data:`FIRST_ROW` up to :data:`AFTER_ROWS`, made again from ``q``; unchanged when the
    summary does not have them in that order."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.startswith(FIRST_ROW)), None)
    if first is None:
        return text
    end = next((i for i in range(first, len(lines)) if lines[i].startswith(AFTER_ROWS)), None)
    if end is None:
        return text
    rows = table(("", "", ""), summary_rows(q), "llc").split("\n")[2:]
    return "\n".join(lines[:first] + rows + lines[end:])


def write_section(path: Path, q: QualityResult, st: Settings, stamp: str) -> Path:
    """Replace the quality section of ``path`` (an existing ``benchmarks.md``), its rows of the
    summary table and its plots."""
    text = replace_summary_rows(path.read_text(), q)
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    images = path.parent / "bench"
    images.mkdir(exist_ok=True)
    links = {}
    for name, draw in PLOTS.items():
        draw(q, images / f"{name}.png")
        links[name] = f"bench/{name}.png"
    body = section(q, st, links, stamp)
    path.write_text(text[:start] + body + (text[end:] if end >= 0 else ""))
    return path

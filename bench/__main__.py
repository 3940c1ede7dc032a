"""``python -m bench [--quick] [--out DIR] [--only PARTS]``: run the benchmarks, write the report.

Without ``--out`` the report goes to ``docs/benchmarks.md`` and the plots to ``docs/bench/``;
``make bench`` runs this. ``--quick`` uses tiny sizes (seconds; the smoke test uses it) and should
never be committed: its figures say nothing about the targets. ``--only footprint`` runs only the
named scale parts (``footprint``, ``scale-throughput``: ``bench/report_scale.py``) and
regenerates only their sections of the report.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from bench import (
    common,
    footprint,
    placement,
    quality,
    report,
    report_scale,
    throughput,
    throughput_baselines,
    topology,
)
from bench.footprint import Log
from bench.settings import FULL, QUICK

SCALE_PARTS = ("footprint", "scale-throughput")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds (smoke test)")
    parser.add_argument(
        "--out",
        type=Path,
        default=common.REPO / "docs",
        help="directory for benchmarks.md and bench/*.png (default: docs/)",
    )
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the end-to-end throughput run (it starts a local control plane)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: [p for p in text.split(",") if p],
        help=f"run only these parts, comma-separated ({', '.join(SCALE_PARTS)}), and regenerate "
        "only their sections of the report",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    argv_used = sys.argv[1:] if argv is None else argv
    command = "python -m bench" + (" " + shlex.join(argv_used) if argv_used else "")
    if os.environ.get("MAKELEVEL") and not argv_used:
        command = "make bench  # runs .venv/bin/python -m bench"
    if args.only is not None:
        unknown = sorted(set(args.only) - set(SCALE_PARTS))
        if unknown or not args.only:
            parser.error(f"--only takes {', '.join(SCALE_PARTS)} (got {','.join(args.only)!r})")
        path = report_scale.write(args.out, _scale(args.only, args.quick, command, log))
        log(f"wrote {path}")
        return 0

    log(f"machine: {common.machine()['cpu']}, {common.machine()['cores']} cores")
    topo = topology.run(settings.topology_sizes, quick=settings.quick, log=log)
    place = placement.run(
        settings.latency_sizes,
        settings.seeds,
        solves=settings.solves,
        reference_sizes=settings.reference_sizes,
        reference_runs=settings.reference_runs,
        reference_limit_s=settings.reference_limit_s,
        log=log,
    )
    qual = quality.run(
        exact_target=settings.exact_target,
        exact_limit_s=settings.exact_limit_s,
        baseline_sizes=settings.baseline_sizes,
        baseline_seed=settings.baseline_seed,
        stream_size=settings.stream_size,
        streams=settings.streams,
        log=log,
    )
    e2e = None
    if not (args.quick or args.no_cluster):
        e2e = throughput.run(settings.throughput_nodes, settings.throughput_pods, log=log)
    path = report.write(
        args.out,
        report.Results(
            settings=settings,
            topology=topo,
            placement=place,
            quality=qual,
            machine=common.machine(),
            command=command,
            elapsed_s=time.perf_counter() - started,
            load_at_end=common.load(),
            throughput=e2e,
        ),
    )
    if not args.quick:
        parts = [p for p in SCALE_PARTS if not (args.no_cluster and p == "scale-throughput")]
        report_scale.write(args.out, _scale(parts, args.quick, command, log))
    log(f"wrote {path}")
    return 0


def _scale(
    parts: list[str] | tuple[str, ...], quick: bool, command: str, log: Log
) -> dict[str, str]:
    """The scale parts' sections (name -> markdown), each run now."""
    sections = {}
    if "footprint" in parts:
        before = common.load()
        found = footprint.run(footprint.QUICK if quick else footprint.FootprintSettings(), log=log)
        sections["footprint"] = report_scale.footprint(found, command, before)
    if "scale-throughput" in parts:
        before = common.load()
        nodes, pods = (60, 32) if quick else (FULL.throughput_nodes, FULL.throughput_pods)
        side = throughput_baselines.run(nodes, pods, log=log)
        sections["scale-throughput"] = report_scale.side_by_side(side, command, before)
    return sections


if __name__ == "__main__":
    sys.exit(main())

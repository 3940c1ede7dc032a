"""Per-strategy table of ``bench.stream`` streams, without the rest of the benchmark.

``python -m bench.stream_table [--seeds 1,2,3] [--mixes 0,1,2] [--strategies ...]`` runs one
stream per (cluster mix, seed) with the sizes of the full benchmark (``bench.settings.FULL``) and
prints, per stream and strategy: deployments placed, whole NVLink domains free, whole nodes free,
slots for the largest replica (means over the events), GPUs stranded, KV pairs on NVLink,
GPU-events served and the CPU time the strategy took, and what the whole NVLink domains
shorthop's plans took beyond each baseline's bought (``stream.Beyond``). A last table says per
stream whether
shorthop keeps more whole NVLink domains and nodes free than each baseline and places at least as
many deployments.
"""

from __future__ import annotations

import argparse
import time

from shorthop.placement import placers
from shorthop.placement.plan import Plan
from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot

from bench import settings, stream

BASELINES = ("first-fit", "best-fit", "tas")


def _strategies(names: list[str]) -> list[placers.Placer]:
    chosen = [p for p in placers.all_placers() if p.name in names]
    missing = set(names) - {p.name for p in chosen}
    if missing:
        raise SystemExit(f"--strategies: unknown {sorted(missing)}; known: shorthop, {BASELINES}")
    return chosen


class _Timed:
    """A placer that adds the CPU time of its ``place`` calls to ``seconds``."""

    def __init__(self, inner: placers.Placer) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        started = time.process_time()
        try:
            return self.inner.place(snapshot, request)
        finally:
            self.seconds += time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2", help="comma-separated stream seeds")
    parser.add_argument("--mixes", default="0,1,2", help="indices of bench.stream.MIXES")
    parser.add_argument("--strategies", default=",".join(("shorthop", *BASELINES)))
    args = parser.parse_args()
    full = settings.FULL
    timed = [_Timed(p) for p in _strategies(args.strategies.split(","))]
    verdicts = []
    for mix in [int(m) for m in args.mixes.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for t in timed:
                t.seconds = 0.0
            original = placers.all_placers
            placers.all_placers = lambda seed=0: list(timed)  # type: ignore[assignment,misc]
            try:
                result = stream.run_stream(
                    full.stream_size,
                    mix,
                    seed,
                    full.stream_count,
                    full.stream_lifetime,
                    log=lambda _: None,
                )
            finally:
                placers.all_placers = original  # type: ignore[assignment]
            print(f"\n{result.mix}, seed {seed}: {result.nodes} nodes, {result.gpus} GPUs")
            print(
                f"{'strategy':10} {'placed':>7} {'domains':>8} {'nodes':>7} {'slots':>6} "
                f"{'strand':>7} {'NVLink':>7} {'served':>8} {'cpu s':>7} valid"
            )
            by = {}
            for run, t in zip(result.runs, timed, strict=True):
                by[run.strategy] = run
                print(
                    f"{run.strategy:10} {run.placed:>7} {run.mean('whole_domains'):>8.1f} "
                    f"{run.mean('whole_nodes'):>7.1f} {run.mean('slots'):>6.1f} "
                    f"{run.mean('stranded'):>7.1f} {run.nvlink_share:>7.0%} {run.gpu_events:>8} "
                    f"{t.seconds:>7.2f} "
                    f"{'yes' if not run.invalid else run.invalid[0]}"
                )
            if "shorthop" in by:
                s = by["shorthop"]
                for name, b in s.beyond.items():
                    print(
                        f"shorthop's plans took more whole NVLink domains than {name}'s on the "
                        f"same state at {b.more} of {b.arrivals} arrivals, buying "
                        + ", ".join(f"{k} {n}" for k, n in b.extra.items())
                        + f"; {name}'s took more at {b.fewer} ({b.saved} domains)"
                    )
                for b in BASELINES:
                    if b in by:
                        o = by[b]
                        verdicts.append(
                            (
                                f"{result.mix}, seed {seed} vs {b}",
                                s.placed >= o.placed,
                                s.mean("whole_domains") > o.mean("whole_domains"),
                                s.mean("whole_nodes") > o.mean("whole_nodes"),
                            )
                        )
    if verdicts:
        print("\nshorthop vs baseline: placed >=, whole domains >, whole nodes >")
        for name, placed, domains, nodes in verdicts:
            print(f"{name:45} {placed!s:6} {domains!s:6} {nodes!s:6}")
        print(f"all: {all(all(v[1:]) for v in verdicts)}")


if __name__ == "__main__":
    main()

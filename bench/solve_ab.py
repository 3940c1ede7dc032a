"""Solve time of two checkouts side by side, interleaved solve by solve (for speed changes).

The machines this project is measured on drift: the same 10,000-node solve took 36 ms and 60 ms
an hour apart, and single solves spike 2-3x. Two ``make bench`` runs, or two processes one after
the other, then show a difference that is the machine's. Here one worker process per checkout
(``--worker``, with that checkout first on ``PYTHONPATH``) builds the same ``common.cluster``
snapshots, and the driver asks them for one solve each in turn (A, B, A, B ...), so a slow
spell falls on both. Per (size, seed) it prints both sides' CPU time per solve (min, median)
and the median of the pairwise A/B ratios, then the ratio of the summed medians::

    python -m bench.solve_ab CHECKOUT_A CHECKOUT_B [--rounds 15] [--sizes 1000,10000]

Plans are not compared: ``bench.plan_identity`` does that. The worker is this file run as a
script, so checkout B needs only ``bench.common`` and the solver (any earlier commit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def _worker(lines: IO[str], out: IO[str]) -> None:
    """Answer each ``size seed`` line with the CPU seconds of one solve of the benchmark
    deployment on that snapshot (built once and solved twice first, untimed)."""
    # from this worker's checkout (PYTHONPATH), not the driver's
    from shorthop.placement import solver

    from bench import common

    request = common.deployment()
    built: dict[tuple[int, int], common.Cluster] = {}
    for line in lines:
        size, seed = (int(x) for x in line.split())
        if (size, seed) not in built:
            built.clear()  # one snapshot at a time: 10,000 nodes hold a lot of memory
            c = built[(size, seed)] = common.cluster(size, seed)
            solver.solve(c.snapshot, request)
            solver.solve(c.snapshot, request)
        snap = built[(size, seed)].snapshot
        started = time.process_time()
        solver.solve(snap, request)
        out.write(f"{time.process_time() - started}\n")
        out.flush()


class _Side:
    """One worker process, planning with one checkout's code."""

    def __init__(self, checkout: Path) -> None:
        path = os.pathsep.join([str(checkout / "operator"), str(checkout)])
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=checkout,
            env={**os.environ, "PYTHONPATH": path},
        )

    def solve(self, size: int, seed: int) -> float:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{size} {seed}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"the worker of {self.process.args} stopped (see its error above)")
        return float(answer)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def compare(
    a: Path, b: Path, sizes: list[int], seeds: list[int], rounds: int
) -> list[tuple[int, int, list[float], list[float]]]:
    """Per (size, seed): A's and B's CPU seconds per solve, taken in turn."""
    sides = _Side(a), _Side(b)
    out = []
    try:
        for size in sizes:
            for seed in seeds:
                times: tuple[list[float], list[float]] = ([], [])
                for _ in range(rounds):
                    for side, kept in zip(sides, times, strict=True):
                        kept.append(side.solve(size, seed))
                out.append((size, seed, *times))
    finally:
        for side in sides:
            side.close()
    return out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.solve_ab")
    parser.add_argument("a", type=Path, help="checkout A (the change)")
    parser.add_argument("b", type=Path, help="checkout B (the baseline)")
    parser.add_argument("--rounds", type=int, default=15, help="solves per side and snapshot")
    parser.add_argument("--sizes", type=_ints, default=[1_000, 10_000], help="e.g. 1000,10000")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="e.g. 0,1,2")
    args = parser.parse_args(argv)
    for checkout in (args.a, args.b):
        if not (checkout / "bench" / "common.py").is_file():
            parser.error(f"{checkout} is not a shorthop checkout (no bench/common.py)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes takes one or more node counts of at least 1, e.g. 1000,10000")
    if not args.seeds or min(args.seeds) < 0:
        parser.error("--seeds takes one or more seeds of at least 0, e.g. 0,1,2")
    sums = [0.0, 0.0]
    for size, seed, a, b in compare(args.a, args.b, args.sizes, args.seeds, args.rounds):
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        sums[0] += statistics.median(a)
        sums[1] += statistics.median(b)
        print(
            f"{size} nodes, seed {seed}: "
            f"A min {min(a) * 1e3:.1f} median {statistics.median(a) * 1e3:.1f} ms | "
            f"B min {min(b) * 1e3:.1f} median {statistics.median(b) * 1e3:.1f} ms | "
            f"A/B pairwise median {ratio:.3f}"
        )
    print(f"A/B of the summed medians: {sums[0] / sums[1]:.3f}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
            sys.path.pop(0)  # run as a script: its folder must not shadow the checkout's modules
        _worker(sys.stdin, sys.stdout)
        sys.exit(0)
    sys.exit(main())

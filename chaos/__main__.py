"""``make chaos``: every chaos check at full size, then ``docs/reliability.md`` from the figures.

    python -m chaos [--scale small|full] [--results DIR] [--report PATH] [pytest args...]

The checks record their figures as JSON (one file per section) in ``--results`` while they run;
the report is written from those files even when a check failed (the failure is in the report).
At full scale the fuzzing draws fresh inputs (the ``fuzz`` hypothesis profile, as ``make fuzz``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

from chaos import RESULTS_ENV, SCALE_ENV
from chaos.record import load
from chaos.report import render
from tests import hypothesis_profiles

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--scale", choices=("small", "full"), default="full")
    parser.add_argument("--results", type=Path, default=ROOT / "out" / "chaos")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "reliability.md")
    args, pytest_args = parser.parse_known_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    for old in args.results.glob("*.json"):
        old.unlink()
    env = {**os.environ, SCALE_ENV: args.scale, RESULTS_ENV: str(args.results)}
    if args.scale == "full":  # fresh random inputs for the fuzzing, as `make fuzz` draws them
        env.setdefault(hypothesis_profiles.PROFILE_ENV, hypothesis_profiles.FUZZ)
    command = [sys.executable, "-m", "pytest", "chaos", "-p", "no:cacheprovider", "-s", "-q"]
    started = datetime.datetime.now(datetime.UTC)
    code = subprocess.call([*command, *pytest_args], cwd=ROOT, env=env)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    text = render(
        load(args.results),
        command=f"make chaos  (python -m chaos --scale {args.scale})",
        when=started.strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine,
        passed=code == 0,
    )
    args.report.write_text(text)
    print(f"chaos: pytest exited {code}; report written to {args.report}")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench.solve_ab`` runs two workers end to end and reports their solve times."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^100 nodes, seed 0: A min [\d.]+ median [\d.]+ ms \| B min [\d.]+ median [\d.]+ ms \| "
    r"A/B pairwise median [\d.]+$"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.solve_ab", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_interleaves_two_checkouts_and_prints_one_line_per_snapshot() -> None:
    done = _run(str(REPO), str(REPO), "--sizes", "100", "--seeds", "0", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout
    assert LINE.match(lines[0]), lines[0]
    assert lines[1].startswith("A/B of the summed medians: ")


def test_a_folder_that_is_not_a_checkout_is_named(tmp_path: Path) -> None:
    done = _run(str(REPO), str(tmp_path), "--sizes", "100", "--seeds", "0", "--rounds", "1")
    assert done.returncode == 2
    assert f"{tmp_path} is not a shorthop checkout" in done.stderr
    assert "Traceback" not in done.stderr


def test_empty_or_impossible_sizes_and_seeds_are_named() -> None:
    for flag, value in (("--sizes", ""), ("--sizes", "0"), ("--seeds", ""), ("--seeds", "-1")):
        done = _run(str(REPO), str(REPO), flag, value, "--rounds", "1")
        assert done.returncode == 2, (flag, value, done.stderr)
        assert f"{flag} takes one or more" in done.stderr
        assert "Traceback" not in done.stderr

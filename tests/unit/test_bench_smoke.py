"""``python -m bench --quick`` runs end to end and writes the report and its plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTIONS = (
    "# shorthop benchmarks",
    "## How to reproduce",
    "## Machine",
    "## Summary: targets vs measured",
    "## 1. Topology (issue B)",
    "## 2. Placement latency (issue C)",
    "## 3. Speed vs the NetworkX reference",
    "## 4. Quality",
    "### (a) Cost vs the exact optimum",
    "### (b) Against the baselines",
    "### (c) Streams with departures",
    "### (d) KV on NVLink where an NVLink-domain placement exists",
)
PLOTS = ("latency", "networkx", "tiers", "stream")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_bench_writes_markdown_and_plots(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "benchmarks.md").read_text()
    for section in SECTIONS:
        assert section in text, section
    assert "python -m bench --quick --out" in text
    assert "Quick run" in text
    # Every plan valid, every distance method agrees, no gap to the exact optimum and no
    # feasibility disagreement on any shape (report_quality marks each with **NO**).
    assert "**NO**" not in text
    assert "| gaps |" not in text or "Gaps (" not in text
    for name in PLOTS:
        assert f"(bench/{name}.png)" in text
        png = tmp_path / "bench" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, png
        assert png.stat().st_size > 10_000, png

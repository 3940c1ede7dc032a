"""``python -m bench --only footprint --quick`` runs the footprint benchmark end to end (the real
operator against the loopback list/watch server) and splices its section into the report,
leaving the rest of the file as it was."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_footprint_writes_its_section_only(tmp_path: Path) -> None:
    before = "# shorthop benchmarks\n\n## 5. Something else\n\nkept as it is\n"
    (tmp_path / "benchmarks.md").write_text(before)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "footprint", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.startswith(before)
    assert "<!-- section footprint: begin -->" in text
    assert "## 6. The operator at 300 nodes: footprint" in text
    assert "**Quick run**" in text
    synced = re.search(r"\| RSS after the first sync \| ([0-9,]+) MiB", text)
    assert synced is not None
    assert int(synced.group(1).replace(",", "")) > 0
    # 6 deployments were placed and their latencies measured.
    assert re.search(r"\| CR create -> all pods bound, p99 \| [0-9.]+ (ms|s) \|", text), text
    assert "POST pods/binding 48" in text


def test_only_rejects_an_unknown_part(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nothing", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--only takes quality, footprint, scale-throughput" in done.stderr
    assert not (tmp_path / "benchmarks.md").exists()

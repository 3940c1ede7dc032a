"""``python -m bench --only scale-throughput --quick`` places the same pods three ways on a real
local control plane (bare pods, StatefulSets, shorthop) and splices its section into the report,
leaving the rest of the file as it was."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.throughput_baselines import request_counts, stateful_sets

REPO = Path(__file__).resolve().parents[2]


def test_quick_side_by_side_writes_its_section_only(tmp_path: Path) -> None:
    before = "# shorthop benchmarks\n\n## 5. Something else\n\nkept as it is\n"
    (tmp_path / "benchmarks.md").write_text(before)
    done = subprocess.run(
        [
            sys.executable, "-m", "bench", "--only", "scale-throughput", "--quick",
            "--out", str(tmp_path),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.startswith(before)
    assert "<!-- section scale-throughput: begin -->" in text
    assert "**Quick run**" in text
    for mode in ("bare pods", "StatefulSets", "shorthop (device plugin)", "shorthop (DRA)"):
        row = re.search(rf"^\| {re.escape(mode)} \| ([0-9.]+) \|", text, flags=re.M)
        assert row is not None, mode
        assert float(row.group(1)) > 0
    assert re.search(r"^- `shorthop / StatefulSets: [0-9]+\.[0-9]{2}×` \(goal", text, flags=re.M)
    assert re.search(r"`operator / kube-scheduler CPU per pod: [0-9]+\.[0-9]{2}×`", text)
    # Every shorthop pod was bound through pods/binding, one request each (32 pods).
    assert "POST pods/binding 1.00" in text


def test_stateful_sets_are_parallel_with_a_headless_service_per_role() -> None:
    objects = stateful_sets(3)
    services = [o for o in objects if o["kind"] == "Service"]
    sets = [o for o in objects if o["kind"] == "StatefulSet"]
    assert [s["spec"]["clusterIP"] for s in services] == ["None", "None"]
    assert sum(s["spec"]["replicas"] for s in sets) == 8
    for s in sets:
        assert s["spec"]["podManagementPolicy"] == "Parallel"
        assert s["spec"]["serviceName"] in {svc["metadata"]["name"] for svc in services}
        labels = s["spec"]["template"]["metadata"]["labels"]
        assert s["spec"]["selector"]["matchLabels"] == labels


def test_request_counts_sum_codes_and_keep_subresources_apart() -> None:
    metrics = (
        "# HELP apiserver_request_total x\n"
        'apiserver_request_total{code="201",resource="pods",subresource="",verb="POST"} 5\n'
        'apiserver_request_total{code="409",resource="pods",subresource="",verb="POST"} 2\n'
        'apiserver_request_total{code="201",resource="pods",subresource="binding",verb="POST"} 4\n'
        'apiserver_requested_deprecated_apis{resource="pods",verb="POST"} 9\n'
    )
    assert request_counts(metrics) == {("POST", "pods"): 7.0, ("POST", "pods/binding"): 4.0}


def test_a_mode_that_did_not_converge_is_reported_with_why_and_the_rest_stands() -> None:
    from bench import report_scale, report_throughput
    from bench.throughput import Throughput
    from bench.throughput_baselines import Mode, SideBySide

    cpu = {"kube-scheduler": 1.0}
    side = SideBySide(nodes=10, pods=8, modes=[Mode("bare pods", 8, 1.0, 2.0, cpu, {})])
    side.failed["dra"] = "timed out waiting for kwok to mark the DRA nodes Ready"
    text = report_scale.side_by_side(side, "python -m bench", "0.1 / 0.1 / 0.1")
    assert "`shorthop (dra)`: not measured in this run: timed out waiting for kwok" in text
    assert re.search(r"^\| bare pods \| 8\.0 \|", text, flags=re.M)
    tp = Throughput(10, 8, 1, 1.0, 2.0, 3.0, dra_failure="timed out waiting for x")
    five = report_throughput.section(tp)
    assert "*shorthop, DRA*: not measured in this run: timed out waiting for x." in five
    assert "shorthop, DRA (" not in five  # no row for it

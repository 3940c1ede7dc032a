"""``shorthop fake-cluster`` and ``shorthop topology`` run in-process through ``cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from shorthop import cli

FAKE = ["fake-cluster", "--nvl72-racks", "2", "--hgx-units", "2", "--nodes-per-unit", "8"]


@pytest.fixture
def snapshot_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "cluster.yaml"
    assert cli.main([*FAKE, "--l40s-nodes", "4", "--occupancy", "0.4", "-o", str(path)]) == 0
    err = capsys.readouterr().err
    assert err == f"wrote 56 nodes (288 GPUs) and 71 pods to {path}\n"
    return path


def test_fake_cluster_prints_a_kubectl_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*FAKE, "--hgx-product", "h200", "--seed", "3"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["kind"] == "List"
    kinds = [item["kind"] for item in doc["items"]]
    assert kinds == ["Node"] * (36 + 16)  # no pods without --occupancy
    products = {i["metadata"]["labels"]["nvidia.com/gpu.product"] for i in doc["items"]}
    assert products == {"NVIDIA-GB200", "NVIDIA-H200"}


def test_fake_cluster_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for _ in range(2):
        assert cli.main([*FAKE, "--occupancy", "0.5", "--seed", "9"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]


def test_fake_cluster_preset_picks_the_labels(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fake-cluster", "--hgx-units", "1", "--preset", "topograph"]) == 0
    first = yaml.safe_load(capsys.readouterr().out)["items"][0]
    assert "fabric.topograph.run/tier-0" in first["metadata"]["labels"]


def test_topology_reads_back_what_fake_cluster_wrote(
    snapshot_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["topology", "--cluster", str(snapshot_file)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("cluster: 56 GPU nodes, 288 GPUs:")
    assert "nvlink-domain: 2 domains" in out
    assert "zone-0/block-1/unit-4" in out
    assert err == ""


def test_topology_json(snapshot_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["topology", "--cluster", str(snapshot_file), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {
        "preset",
        "networkLevels",
        "totals",
        "levels",
        "excluded",
        "unavailable",
        "degraded",
    }
    assert data["preset"] == "plain"
    assert data["totals"]["gpus"] == 288
    assert [lv["name"] for lv in data["levels"]] == ["nvlink-domain", "zone", "block", "rack"]


def test_topology_with_another_preset_sees_no_network_labels(
    snapshot_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["topology", "--cluster", str(snapshot_file), "--preset", "gke"]) == 0
    data_line = capsys.readouterr().out
    assert "(no block)" in data_line


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_topology_render(
    snapshot_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    picture = tmp_path / f"topo{suffix}"
    assert cli.main(["topology", "--cluster", str(snapshot_file), "--render", str(picture)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"wrote {picture} (")
    assert picture.stat().st_size > 10_000


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.yaml"
    assert cli.main(["topology", "--cluster", str(path)]) == 1
    line = error_line(capsys)
    assert line.startswith(f"shorthop topology: error: {path}: no such file")


def test_invalid_yaml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: List\nitems:\n  - {kind: Node, metadata: {name: [x}\n")
    assert cli.main(["topology", "--cluster", str(path), "--format", "json"]) == 1
    line = error_line(capsys)
    assert str(path) in line
    assert "not valid YAML at line 3" in line


def test_not_kubernetes_objects_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("replicas: 3\nimage: nginx\n")
    assert cli.main(["topology", "--cluster", str(path)]) == 1
    assert "no `kind`" in error_line(capsys)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--occupancy", "1.5"], "--occupancy: must be between 0 and 1, got 1.5"),
        (["--occupancy", "-0.1"], "--occupancy: must be between 0 and 1"),
        (["--nvl72-racks", "-1"], "--nvl72-racks: must be 0 or more, got -1"),
        (["--l40s-nodes", "-4"], "--l40s-nodes: must be 0 or more"),
        (["--hgx-units", "1", "--nodes-per-unit", "0"], "--nodes-per-unit: must be 1 or more"),
        (["--nvl72-racks", "1", "--trays-per-rack", "0"], "--trays-per-rack: must be 1 or more"),
        ([], "--nvl72-racks/--hgx-units/--l40s-nodes: the cluster would have no nodes"),
    ],
    ids=["occupancy-high", "occupancy-low", "racks", "l40s", "nodes-per-unit", "trays", "empty"],
)
def test_fake_cluster_bad_flags(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["fake-cluster", *args]) == 1
    assert error_line(capsys).startswith(f"shorthop fake-cluster: error: {flag}")


def test_fake_cluster_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no" / "such" / "dir.yaml"
    assert cli.main([*FAKE, "--output", str(target)]) == 1
    assert error_line(capsys).startswith("shorthop fake-cluster: error: --output: cannot write")


def test_render_unknown_extension(snapshot_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["topology", "--cluster", str(snapshot_file), "--render", "topo.gif"]
    assert cli.main(args) == 1
    assert error_line(capsys).startswith("shorthop topology: error: --render: 'topo.gif'")


def test_render_unwritable(
    snapshot_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "topo.svg"
    args = ["topology", "--cluster", str(snapshot_file), "--render", str(target)]
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    assert out.startswith("cluster:")  # the summary still printed before the picture failed
    assert err.splitlines() == [
        f"shorthop topology: error: --render: cannot write {target} (No such file or directory)"
    ]

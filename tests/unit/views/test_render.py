"""Topology pictures: SVG and PNG files, one mark per GPU, bars for big clusters, placements."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from shorthop.errors import ShorthopError, SpecError
from shorthop.placement import snapshot
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.topology import fake
from shorthop.topology.levels import preset
from shorthop.views import drawing, layout, render, summary

SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = fake.ClusterShape(nvl72_racks=2, hgx_units=2, nodes_per_unit=8, l40s_nodes=4)
LARGE = fake.ClusterShape(nvl72_racks=20, hgx_units=18, nodes_per_unit=32, l40s_nodes=64)
PLACEMENT = {
    "nvl72-r0-t00": {0: "prefill-0", 1: "prefill-0", 2: "prefill-0", 3: "prefill-0"},
    "nvl72-r0-t01": {0: "decode-0", 1: "decode-0"},
    "h100-su0-n00": dict.fromkeys(range(8), "decode-1"),
}


def build(shape: fake.ClusterShape, occupancy: float = 0.4) -> ClusterSnapshot:
    nodes = fake.nodes(shape, seed=2)
    nodes[-1]["spec"]["unschedulable"] = True
    pods = fake.background_pods(nodes, occupancy, seed=2)
    return snapshot.build(nodes, pods, preset("plain"))


@pytest.fixture(scope="module")
def small() -> ClusterSnapshot:
    return build(SMALL)


@pytest.fixture(scope="module")
def large() -> ClusterSnapshot:
    return build(LARGE)


def gpu_rects(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return [e for e in root.iter(f"{SVG}rect") if "gpu" in (e.get("class") or "").split()]


def test_svg_has_one_mark_per_gpu_coloured_by_state(small: ClusterSnapshot, tmp_path: Path) -> None:
    path = tmp_path / "small.svg"
    picture = render.render(small, str(path))
    totals = summary.summarize(small).totals
    marks = gpu_rects(path)
    assert len(marks) == totals.gpus == picture.gpu_marks() == 2 * 72 + 16 * 8 + 4 * 4
    states = [(e.get("class") or "").split()[1] for e in marks]
    assert states.count("free") == totals.free
    assert states.count("used") == totals.used
    assert states.count("unavailable") == totals.unavailable == 4
    assert not picture.aggregated


def test_svg_names_every_node_and_domain(small: ClusterSnapshot, tmp_path: Path) -> None:
    path = tmp_path / "small.svg"
    render.render(small, str(path))
    texts = {e.text for e in ET.parse(path).getroot().iter(f"{SVG}text")}
    names = small.index.names
    assert {names[r] for r in small.index.rows().tolist()} <= texts
    assert {"zone-0", "block-0", "block-1", "rack unit-2"} <= texts
    assert any(t and t.startswith("rack unit-0 · NVLink ") for t in texts)
    assert "Nodes that offer no GPUs now (red dashed boxes): 1" in texts


def test_png_is_a_real_picture(small: ClusterSnapshot, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "small.png"
    picture = render.render(small, str(path))
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000
    with Image.open(path) as image:
        assert image.size == (2 * picture.width, 2 * picture.height)
        colours = {c for _, c in image.getcolors(maxcolors=1 << 20) or []}
    for hex_colour in (drawing.FREE, drawing.USED, drawing.UNAVAILABLE, drawing.NVLINK_FILL):
        assert tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)) in colours


def test_large_clusters_are_aggregated_into_bars(large: ClusterSnapshot, tmp_path: Path) -> None:
    assert len(large.index.rows()) == 1000 > layout.AGGREGATE_ABOVE
    path = tmp_path / "large.svg"
    picture = render.render(large, str(path))
    assert picture.aggregated
    assert gpu_rects(path) == []
    root = ET.parse(path).getroot()
    bars = [e for e in root.iter(f"{SVG}rect") if e.get("class") == "bar"]
    assert len(bars) == 20 + 18 + 8  # one per finest domain (NVL72 rack, HGX unit, L40S rack)
    texts = [e.text or "" for e in root.iter(f"{SVG}text")]
    assert "18 nodes · 72 GPUs · GB200" in texts
    png = tmp_path / "large.png"
    render.render(large, str(png))
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert png.stat().st_size > 20_000


def test_aggregation_can_be_forced_either_way(small: ClusterSnapshot) -> None:
    assert layout.layout(small, aggregate=True).gpu_marks() == 0
    assert layout.layout(small, aggregate=True).aggregated
    assert layout.layout(small).gpu_marks() == 288


def test_placement_colours_gpus_by_role_and_lists_labels(
    small: ClusterSnapshot, tmp_path: Path
) -> None:
    path = tmp_path / "plan.svg"
    render.render(small, str(path), placement=PLACEMENT)
    placed = [e for e in gpu_rects(path) if "placed" in (e.get("class") or "")]
    assert len(placed) == 4 + 2 + 8
    fills = {(e.findtext(f"{SVG}title") or "").split(": ")[1]: e.get("fill") for e in placed}
    assert fills["decode-0"] == fills["decode-1"] != fills["prefill-0"]
    texts = {e.text for e in ET.parse(path).getroot().iter(f"{SVG}text")}
    assert {"decode: decode-0, decode-1", "prefill: prefill-0"} <= texts


def test_placement_in_aggregated_bars(small: ClusterSnapshot) -> None:
    picture = layout.layout(small, placement=PLACEMENT, aggregate=True)
    texts = [s.text for s in picture.shapes if isinstance(s, drawing.Text)]
    assert "decode 2 · prefill 4" in texts
    assert "decode 8" in texts


@pytest.mark.parametrize(
    ("placement", "field"),
    [
        ({"no-such-node": {0: "prefill-0"}}, "placement"),
        ({"nvl72-r0-t00": {4: "prefill-0"}}, "placement[nvl72-r0-t00]"),
    ],
    ids=["unknown-node", "gpu-out-of-range"],
)
def test_bad_placement_names_the_problem(
    small: ClusterSnapshot, placement: dict[str, dict[int, str]], field: str
) -> None:
    with pytest.raises(SpecError) as caught:
        layout.layout(small, placement=placement)
    assert caught.value.field == field


def test_output_is_deterministic(small: ClusterSnapshot, tmp_path: Path) -> None:
    for suffix in (".svg", ".png"):
        a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        render.render(small, str(a), placement=PLACEMENT)
        render.render(build(SMALL), str(b), placement=PLACEMENT)
        assert a.read_bytes() == b.read_bytes()


def test_unknown_extension(small: ClusterSnapshot, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"must end in \.svg or \.png"):
        render.render(small, str(tmp_path / "x.gif"))


def test_png_without_pillow_says_how_to_install(
    small: ClusterSnapshot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ShorthopError, match=r"pip install 'shorthop\[render\]'"):
        render.render(small, str(tmp_path / "x.png"))


def test_cluster_without_gpu_nodes(tmp_path: Path) -> None:
    cpu = {"kind": "Node", "metadata": {"name": "cpu-0"}, "status": {"allocatable": {}}}
    path = tmp_path / "empty.svg"
    picture = render.render(snapshot.build([cpu], [], preset("plain")), str(path))
    assert picture.gpu_marks() == 0
    assert "this snapshot has no GPU nodes" in path.read_text()

"""Every label in a topology picture fits the box it sits in, measured with the font the PNG is
painted with (Pillow's bundled default), and the size reported for a PNG is its real pixel size.
Found in the demo: "NVLink 6513270e…0" and "70B prefill-…" were cut, and a 1864x1402 file was
reported as 932x701."""

from __future__ import annotations

from pathlib import Path

import pytest
from shorthop.placement import snapshot
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.topology import fake
from shorthop.topology.levels import preset
from shorthop.views import drawing, layout, render

ImageFont = pytest.importorskip("PIL.ImageFont")
Image = pytest.importorskip("PIL.Image")
DEMO = fake.ClusterShape(nvl72_racks=2, hgx_units=2, nodes_per_unit=8, l40s_nodes=4)


def _snap(shape: fake.ClusterShape) -> ClusterSnapshot:
    nodes = fake.nodes(shape, seed=7)
    return snapshot.build(nodes, fake.background_pods(nodes, 0.3, seed=11), preset("plain"))


def _placement(snap: ClusterSnapshot) -> dict[str, dict[int, str]]:
    """The demo's kind of labels: two replicas of 4 GPUs on one 8-GPU node, and long names."""
    names = snap.index.names
    hgx = [n for n in names if n.startswith("h100")]
    trays = [n for n in names if n.startswith("nvl72")]
    return {
        hgx[0]: {
            **dict.fromkeys(range(4), "70B prefill-0"),
            **dict.fromkeys(range(4, 8), "70B prefill-1"),
        },
        hgx[1]: dict.fromkeys(range(8), "70B decode-0"),
        trays[0]: dict.fromkeys(range(4), "R1 decode-0"),
        trays[1]: {0: "R1 prefill-12", 1: "R1 prefill-13", 2: "R1 prefill-14", 3: "R1 prefill-15"},
    }


def _measure(size: int, scale: int) -> object:
    return ImageFont.load_default(size=size * scale)


def _overflows(picture: drawing.Drawing, scale: int) -> list[str]:
    """Texts whose painted width runs past the innermost box around their start point."""
    boxes = [
        s for s in picture.shapes if isinstance(s, drawing.Rect) and "gpu" not in (s.cls or "")
    ]
    fonts: dict[int, object] = {}
    bad = []
    for text in (s for s in picture.shapes if isinstance(s, drawing.Text)):
        around = [b for b in boxes if b.x <= text.x < b.x + b.w and b.y <= text.y < b.y + b.h]
        assert around, text
        box = min(around, key=lambda b: b.w * b.h)
        font = fonts.setdefault(text.size, _measure(text.size, scale))
        width = font.getlength(text.text) / scale  # type: ignore[attr-defined]
        if text.x + width > box.x + box.w:
            bad.append(
                f"{text.text!r} ({width:.0f}px from x={text.x}) in a box ending at {box.x + box.w}"
            )
    return bad


@pytest.mark.parametrize("aggregate", [False, True], ids=["every-node", "bars"])
def test_every_label_fits_its_box(aggregate: bool) -> None:
    snap = _snap(DEMO)
    picture = layout.layout(snap, placement=_placement(snap), aggregate=aggregate)
    texts = [s.text for s in picture.shapes if isinstance(s, drawing.Text)]
    assert not [t for t in texts if "…" in t], "a label was cut"
    assert _overflows(picture, render.png_scale(picture)) == []
    if not aggregate:
        # The whole NVLink domain name and every replica label are there.
        # Every NVLink domain's whole name is in a box title.
        for clique in snap.index.clique_names:
            assert any(f"NVLink {clique}" in t for t in texts), clique
        for label in ("70B prefill-0", "70B prefill-1", "R1 prefill-15"):
            assert label in texts


def test_the_check_has_teeth() -> None:
    """A label longer than its box is reported."""
    box = drawing.Rect(0, 0, 40, 20, drawing.WHITE)
    picture = drawing.Drawing(
        40, 20, (box, drawing.Text(2, 2, "70B prefill-0, 70B prefill-1", 8)), False
    )
    assert _overflows(picture, 2)


def test_the_reported_size_is_the_pngs_pixel_size(tmp_path: Path) -> None:
    snap = _snap(DEMO)
    path = tmp_path / "demo.png"
    picture = render.render(snap, str(path), placement=_placement(snap))
    with Image.open(path) as image:
        assert render.pixel_size(picture, str(path)) == image.size
    assert image.size == (2 * picture.width, 2 * picture.height)
    svg = tmp_path / "demo.svg"
    picture = render.render(snap, str(svg))
    assert render.pixel_size(picture, str(svg)) == (picture.width, picture.height)

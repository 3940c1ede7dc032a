"""Write a cluster's topology picture to a file: SVG by hand, PNG through Pillow.

:func:`render` lays the picture out (``layout``) and writes it; :func:`to_svg` and
:func:`write_png` turn a ``drawing.Drawing`` into a document. Pillow is imported here only, and
only when a PNG is asked for (the ``render`` extra). Callers: ``shorthop topology --render`` and
the demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from shorthop.errors import ShorthopError, SpecError
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.views import layout
from shorthop.views.drawing import FONT_FAMILY, WHITE, Drawing, Rect

if TYPE_CHECKING:  # Pillow is optional at run time (the ``render`` extra)
    from PIL import ImageDraw

__all__ = ["FORMATS", "pixel_size", "png_scale", "render", "to_svg", "write_png"]

FORMATS = (".svg", ".png")


def render(
    snapshot: ClusterSnapshot,
    path: str,
    *,
    placement: layout.Placement | None = None,
    aggregate: bool | None = None,
) -> Drawing:
    """Draw the cluster and write it to ``path`` (``.svg`` or ``.png``).

    Parameters
    ----------
    snapshot : ClusterSnapshot
    path : str
        Where to write; the suffix picks the format.
    placement, aggregate
        As in ``layout.layout``.

    Returns
    -------
    Drawing
        What was written.

    Raises
    ------
    SpecError
        The suffix is neither ``.svg`` nor ``.png``, or ``placement`` is inconsistent.
    ShorthopError
        PNG was asked for and Pillow is not installed.
    OSError
        The file cannot be written.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SpecError("render", f"{path!r} must end in .svg or .png")
    picture = layout.layout(snapshot, placement=placement, aggregate=aggregate)
    if suffix == ".svg":
        Path(path).write_text(to_svg(picture), encoding="utf-8")
    else:
        write_png(picture, path)
    return picture


def png_scale(drawing: Drawing) -> int:
    """How many pixels a PNG paints per layout unit: 2 for sharp text, 1 for a huge picture."""
    return 2 if max(drawing.width, drawing.height) * 2 <= 12000 else 1


def pixel_size(drawing: Drawing, path: str) -> tuple[int, int]:
    """The size of the file ``render`` wrote to ``path``: a PNG's pixels (``png_scale`` times
    the layout's size), an SVG's width and height."""
    scale = png_scale(drawing) if Path(path).suffix.lower() == ".png" else 1
    return drawing.width * scale, drawing.height * scale


def to_svg(drawing: Drawing) -> str:
    """The drawing as an SVG document (deterministic text)."""
    w, h = drawing.width, drawing.height
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family={quoteattr(FONT_FAMILY)}>',
    ]
    for s in drawing.shapes:
        if isinstance(s, Rect):
            attrs = f'x="{s.x}" y="{s.y}" width="{s.w}" height="{s.h}" fill="{s.fill}"'
            if s.stroke:
                attrs += f' stroke="{s.stroke}" stroke-width="{s.width}"'
            if s.dashed:
                attrs += ' stroke-dasharray="4 2"'
            if s.radius:
                attrs += f' rx="{s.radius}"'
            if s.cls:
                attrs += f" class={quoteattr(s.cls)}"
            if s.title:
                parts.append(f"<rect {attrs}><title>{escape(s.title)}</title></rect>")
            else:
                parts.append(f"<rect {attrs}/>")
        else:
            baseline = s.y + round(s.size * 0.85)
            attrs = f'x="{s.x}" y="{baseline}" font-size="{s.size}" fill="{s.fill}"'
            if s.anchor != "start":
                attrs += f' text-anchor="{s.anchor}"'
            if s.bold:
                attrs += ' font-weight="bold"'
            parts.append(f"<text {attrs}>{escape(s.text)}</text>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_png(drawing: Drawing, path: str) -> None:
    """Paint the drawing with Pillow at twice the layout's size (sharp text), or 1x when huge.

    Raises
    ------
    ShorthopError
        Pillow is not installed.
    """
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ShorthopError(
            "writing PNG needs Pillow: pip install 'shorthop[render]' (or Pillow), "
            "or render to a .svg file instead"
        ) from None
    scale = png_scale(drawing)
    image = Image.new("RGB", (drawing.width * scale, drawing.height * scale), WHITE)
    draw = ImageDraw.Draw(image)
    fonts: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}

    def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        if size not in fonts:
            fonts[size] = ImageFont.load_default(size=size * scale)
        return fonts[size]

    anchors = {"start": "la", "middle": "ma", "end": "ra"}
    for s in drawing.shapes:
        if isinstance(s, Rect):
            box = (s.x * scale, s.y * scale, (s.x + s.w) * scale - 1, (s.y + s.h) * scale - 1)
            outline = None if s.dashed else s.stroke
            width = s.width * scale if s.stroke else 0
            if s.radius:
                draw.rounded_rectangle(
                    box, radius=s.radius * scale, fill=s.fill, outline=outline, width=width
                )
            else:
                draw.rectangle(box, fill=s.fill, outline=outline, width=width)
            if s.dashed and s.stroke:
                _dashed(draw, box, s.stroke, width=width, dash=4 * scale, gap=2 * scale)
        else:
            draw.text(
                (s.x * scale, s.y * scale),
                s.text,
                fill=s.fill,
                font=font(s.size),
                anchor=anchors[s.anchor],
                stroke_width=scale // 2 if s.bold else 0,
                stroke_fill=s.fill,
            )
    image.save(path, format="PNG")


def _dashed(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    colour: str,
    *,
    width: int,
    dash: int,
    gap: int,
) -> None:
    """Pillow draws no dashed outlines: paint the dashes as small rectangles."""
    x0, y0, x1, y1 = box
    for a, b, horizontal, fixed in (
        (x0, x1, True, y0),
        (x0, x1, True, y1 - width + 1),
        (y0, y1, False, x0),
        (y0, y1, False, x1 - width + 1),
    ):
        pos = a
        while pos <= b:
            end = min(pos + dash - 1, b)
            if horizontal:
                draw.rectangle((pos, fixed, end, fixed + width - 1), fill=colour)
            else:
                draw.rectangle((fixed, pos, fixed + width - 1, end), fill=colour)
            pos += dash + gap

"""The pieces pictures are made of: shapes, the palette and sizes, and boxes that lay items out.

A :class:`Drawing` is a list of :class:`Rect` and :class:`Text` in pixel coordinates, painted in
order; ``render`` writes it as SVG or PNG. An :class:`Item` has a size and emits shapes at a
position: :class:`Grid` (equal items in rows), :class:`Flow` (items left to right, wrapping) and
:class:`Swatch` (a legend entry) are the generic ones; ``layout`` adds nodes, bars and domain
boxes. Pure: no I/O. Callers: ``layout``, ``render``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["Drawing", "Flow", "Grid", "Item", "Rect", "Shape", "Swatch", "Text", "text_width"]

# -- palette: GPU states, replica roles, boxes ------------------------------------------------
FREE, USED, UNAVAILABLE = "#34a853", "#9aa0a6", "#f4a7a1"
ROLE_COLOURS = (
    "#1a73e8",  # blue
    "#f29900",  # orange
    "#9334e6",  # purple
    "#00a3bf",  # cyan
    "#d01884",  # magenta
    "#795548",  # brown
    "#3f51b5",  # indigo
    "#afb42b",  # olive
)
INK, MUTED, WHITE = "#202124", "#5f6368", "#ffffff"
NODE_STROKE, DOWN_STROKE = "#80868b", "#c5221f"
NETWORK_FILLS = ("#eef2f8", "#e2e9f3", "#d6e0ee", "#cad7e9", "#bfcfe4")
NETWORK_STROKE = "#7b8ba3"
NVLINK_FILL, NVLINK_STROKE = "#fff4d1", "#c99a06"

# -- geometry (pixels at 1x) ------------------------------------------------------------------
MARGIN = 16
PAD = 6  # inside a domain box
GAP = 6  # between items in a box
TITLE_SIZE, BOX_TITLE, NODE_TEXT, NOTE_SIZE = 16, 10, 9, 10
BOX_HEAD = 16  # height of a domain box's title line
GPU, GPU_GAP = 10, 3
NODE_PAD = 4
NAME_CHARS = 16
BAR_W, BAR_H = 200, 12
MIN_W, MAX_W = 900, 2400  # wrap width of the top level, chosen for a landscape picture
ASPECT = 1.6  # width : height the top-level wrap width aims for
NOTE_LINES = 12
FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle; ``cls`` and ``title`` become SVG ``class`` and a tooltip."""

    x: int
    y: int
    w: int
    h: int
    fill: str
    stroke: str | None = None
    width: int = 1
    dashed: bool = False
    radius: int = 0
    cls: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """One line of text; ``y`` is the top of the line."""

    x: int
    y: int
    text: str
    size: int
    fill: str = INK
    anchor: Literal["start", "middle", "end"] = "start"
    bold: bool = False


Shape = Rect | Text


@dataclass(frozen=True, slots=True)
class Drawing:
    """A finished picture: its size and shapes, painted in order."""

    width: int
    height: int
    shapes: tuple[Shape, ...]
    aggregated: bool

    def gpu_marks(self) -> int:
        """How many GPU squares the drawing has (0 when aggregated)."""
        return sum(1 for s in self.shapes if isinstance(s, Rect) and "gpu" in (s.cls or "").split())


def text_width(text: str, size: int) -> int:
    """A generous estimate of a text's width (the layout must not depend on installed fonts)."""
    return math.ceil(len(text) * size * 0.6)


class Item(Protocol):
    @property
    def w(self) -> int: ...

    @property
    def h(self) -> int: ...

    def emit(self, x: int, y: int, out: list[Shape]) -> None: ...


@dataclass(slots=True)
class Grid:
    """Items of equal size in rows of ``cols``."""

    items: list[Item]
    cols: int
    w: int = 0
    h: int = 0

    def __post_init__(self) -> None:
        first = self.items[0]
        rows = math.ceil(len(self.items) / self.cols)
        self.w = self.cols * (first.w + GAP) - GAP
        self.h = rows * (first.h + GAP) - GAP

    def emit(self, x: int, y: int, out: list[Shape]) -> None:
        for i, item in enumerate(self.items):
            col, row = i % self.cols, i // self.cols
            item.emit(x + col * (item.w + GAP), y + row * (item.h + GAP), out)


def grid_columns(n: int) -> int:
    """About twice as wide as tall: 18 trays -> 6 x 3, 32 nodes -> 8 x 4, 8 -> 4 x 2."""
    return min(n, 8, max(4, math.ceil(math.sqrt(2 * n))))


@dataclass(slots=True)
class Flow:
    """Items left to right, wrapping at ``max_w``."""

    items: list[Item]
    max_w: int
    w: int = 0
    h: int = 0
    at: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        x = y = line_h = 0
        for item in self.items:
            if x > 0 and x + item.w > self.max_w:
                x, y, line_h = 0, y + line_h + GAP, 0
            self.at.append((x, y))
            self.w = max(self.w, x + item.w)
            line_h = max(line_h, item.h)
            x += item.w + GAP
        self.h = y + line_h

    def emit(self, x: int, y: int, out: list[Shape]) -> None:
        for item, (dx, dy) in zip(self.items, self.at, strict=True):
            item.emit(x + dx, y + dy, out)


@dataclass(slots=True)
class Swatch:
    colour: str
    label: str
    kind: Literal["gpu", "box"] = "gpu"
    stroke: str | None = None
    w: int = 0
    h: int = 14

    def __post_init__(self) -> None:
        self.w = (20 if self.kind == "box" else 12) + 4 + text_width(self.label, 10) + 10

    def emit(self, x: int, y: int, out: list[Shape]) -> None:
        if self.kind == "box":
            out.append(Rect(x, y + 1, 20, 12, self.colour, self.stroke, radius=2, cls="legend"))
            tx = x + 24
        else:
            out.append(Rect(x, y + 1, 12, 12, self.colour, self.stroke, cls="legend"))
            tx = x + 16
        out.append(Text(tx, y + 1, self.label, 10))


_REPLICA_SUFFIX = re.compile(r"-\d+$")


def role_of(label: str) -> str:
    """The role of a replica label: ``prefill-0`` -> ``prefill``.

    >>> role_of("prefill-0"), role_of("decode"), role_of("router-a-12")
    ('prefill', 'decode', 'router-a')
    """
    return _REPLICA_SUFFIX.sub("", label) or label

"""Draw a cluster's topology as a picture (SVG or PNG) that a person can read at a glance.

Boxes nest like the network: the coarsest level's domains contain the finer ones, down to the
finest domains and the multi-node NVLink domains (an NVL72 rack is one amber box). Inside sit the
nodes, each a small box labelled with its name holding one square per GPU, coloured free, used,
or unavailable (the node offers nothing: NotReady, cordoned, ...). An optional ``placement``
(node -> GPU index -> replica label such as ``prefill-0``) colours those GPUs by role
(the label without its ``-N`` suffix) and lists the labels in the legend. Nodes left out by the
label parser have no GPUs to draw; they are listed under the picture with the reasons.

Above :data:`AGGREGATE_ABOVE` nodes every node would be too small to see, so each finest box
shows one bar of free / used / unavailable (and placed) GPU counts instead.

Drawing is two steps: :func:`layout` turns a snapshot into a :class:`Drawing` (a list of
rectangles and texts in pixel coordinates; pure and deterministic), and :func:`render` writes it as
hand-written SVG or, through Pillow (imported only then), PNG. Callers: ``shorthop topology
--render`` and the demo. Never imports ``placement``: the snapshot is an argument
(:class:`~shorthop.topology.summary.SnapshotView`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from xml.sax.saxutils import escape, quoteattr

from shorthop.errors import ShorthopError, SpecError
from shorthop.topology import summary
from shorthop.topology.summary import SnapshotView

if TYPE_CHECKING:  # Pillow is optional at run time (the ``render`` extra)
    from PIL import ImageDraw, ImageFont

__all__ = ["AGGREGATE_ABOVE", "FORMATS", "Drawing", "Rect", "Text", "layout", "render"]

AGGREGATE_ABOVE = 300  # nodes; above this each finest domain is drawn as one bar
FORMATS = (".svg", ".png")
Placement = Mapping[str, Mapping[int, str]]

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


# -- what is drawn: GPU states and roles -------------------------------------------------------


_REPLICA_SUFFIX = re.compile(r"-\d+$")


def role_of(label: str) -> str:
    """The role of a replica label: ``prefill-0`` -> ``prefill``.

    >>> role_of("prefill-0"), role_of("decode"), role_of("router-a-12")
    ('prefill', 'decode', 'router-a')
    """
    return _REPLICA_SUFFIX.sub("", label) or label


@dataclass(frozen=True, slots=True)
class _State:
    """Everything the layout reads, gathered once."""

    snapshot: SnapshotView
    counts: summary.RowCounts
    placed: dict[int, dict[int, str]]  # row -> gpu -> label
    role_colour: dict[str, str]
    labels_of_role: dict[str, tuple[str, ...]]

    def gpu_state(self, row: int, gpu: int) -> tuple[str, str, str]:
        """(fill colour, state word, description) of one GPU."""
        label = self.placed.get(row, {}).get(gpu)
        if label is not None:
            return self.role_colour[role_of(label)], "placed", label
        if not bool(self.snapshot.schedulable[row]):
            return UNAVAILABLE, "unavailable", "unavailable"
        if int(self.snapshot.free[row]) >> gpu & 1:
            return FREE, "free", "free"
        return USED, "used", "used"


def _state(snapshot: SnapshotView, placement: Placement | None) -> _State:
    index = snapshot.index
    placed: dict[int, dict[int, str]] = {}
    for node, gpus in sorted((placement or {}).items()):
        row = index.row_of.get(node)
        if row is None or not bool(index.alive[row]):
            raise SpecError("placement", f"node {node!r} is not a GPU node of this snapshot")
        for gpu, label in gpus.items():
            if not 0 <= gpu < index.gpus(row):
                raise SpecError(
                    f"placement[{node}]",
                    f"GPU {gpu} does not exist; the node has {index.gpus(row)}",
                )
            placed.setdefault(row, {})[gpu] = str(label)
    labels = sorted(
        {lb for gpus in placed.values() for lb in gpus.values()}, key=summary.natural_key
    )
    roles = sorted({role_of(lb) for lb in labels}, key=summary.natural_key)
    return _State(
        snapshot=snapshot,
        counts=summary.row_counts(snapshot),
        placed=placed,
        role_colour={r: ROLE_COLOURS[i % len(ROLE_COLOURS)] for i, r in enumerate(roles)},
        labels_of_role={r: tuple(lb for lb in labels if role_of(lb) == r) for r in roles},
    )


# -- items: things with a size that can emit shapes at a position ------------------------------


class _Item(Protocol):
    @property
    def w(self) -> int: ...

    @property
    def h(self) -> int: ...

    def emit(self, x: int, y: int, out: list[Shape]) -> None: ...


def _short_name(name: str) -> str:
    """A node name that fits a node box: the first DNS label, or head…tail."""
    if len(name) <= NAME_CHARS:
        return name
    head = name.split(".", 1)[0]
    if 0 < len(head) <= NAME_CHARS:
        return head
    return name[:7] + "…" + name[-(NAME_CHARS - 8) :]


def _gpu_columns(gpus: int) -> int:
    return min(gpus, 4) if gpus <= 8 else 8


@dataclass(slots=True)
class _NodeTile:
    """One node: a white box, its name, one square per GPU, and its replica labels if any."""

    state: _State
    row: int
    w: int
    h: int

    def emit(self, x: int, y: int, out: list[Shape]) -> None:
        st = self.state
        name = st.snapshot.index.names[self.row]
        down = not bool(st.snapshot.schedulable[self.row])
        why = st.snapshot.unavailable.get(name, "")
        out.append(
            Rect(
                x,
                y,
                self.w,
                self.h,
                WHITE,
                DOWN_STROKE if down else NODE_STROKE,
                width=2 if down else 1,
                dashed=down,
                radius=2,
                cls="node",
                title=f"{name}: {why}" if down else name,
            )
        )
        out.append(Text(x + NODE_PAD, y + NODE_PAD - 1, _short_name(name), NODE_TEXT))
        gpus = st.snapshot.index.gpus(self.row)
        cols = _gpu_columns(gpus)
        top = y + NODE_PAD + NODE_TEXT + 3
        for g in range(gpus):
            fill, word, what = st.gpu_state(self.row, g)
            gx = x + NODE_PAD + (g % cols) * (GPU + GPU_GAP)
            gy = top + (g // cols) * (GPU + GPU_GAP)
            out.append(
                Rect(gx, gy, GPU, GPU, fill, cls=f"gpu {word}", title=f"{name} GPU {g}: {what}")
            )
        placed = st.placed.get(self.row)
        if placed:
            rows_of_gpus = math.ceil(gpus / cols)
            text = ", ".join(sorted(set(placed.values()), key=summary.natural_key))
            colour = st.role_colour[role_of(placed[min(placed)])]
            max_chars = max(4, (self.w - 2 * NODE_PAD) // text_width("x", NODE_TEXT - 1))
            if len(text) > max_chars:
                text = text[: max_chars - 1] + "…"
            out.append(
                Text(
                    x + NODE_PAD,
                    top + rows_of_gpus * (GPU + GPU_GAP),
                    text,
                    NODE_TEXT - 1,
                    colour,
                )
            )


def _node_tiles(state: _State, rows: Sequence[int]) -> list[_Item]:
    index = state.snapshot.index
    gpus = max(index.gpus(r) for r in rows)
    cols = _gpu_columns(gpus)
    grid_w = cols * (GPU + GPU_GAP) - GPU_GAP
    grid_h = math.ceil(gpus / cols) * (GPU + GPU_GAP) - GPU_GAP
    name_w = max(text_width(_short_name(index.names[r]), NODE_TEXT) for r in rows)
    any_placed = any(r in state.placed for r in rows)
    w = max(grid_w, name_w) + 2 * NODE_PAD
    h = NODE_PAD + NODE_TEXT + 3 + grid_h + NODE_PAD + (NODE_TEXT + 3 if any_placed else 0)
    return [_NodeTile(state, r, w, h) for r in rows]


@dataclass(slots=True)
class _Grid:
    """Items of equal size in rows of ``cols``."""

    items: list[_Item]
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


def _grid_columns(n: int) -> int:
    """About twice as wide as tall: 18 trays -> 6 x 3, 32 nodes -> 8 x 4, 8 -> 4 x 2."""
    return min(n, 8, max(4, math.ceil(math.sqrt(2 * n))))


@dataclass(slots=True)
class _Flow:
    """Items left to right, wrapping at ``max_w``."""

    items: list[_Item]
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
class _Bar:
    """Aggregated view of a group of nodes: counts and one stacked bar."""

    state: _State
    rows: Sequence[int]
    w: int = BAR_W
    h: int = 0

    def __post_init__(self) -> None:
        self.h = 2 * (NODE_TEXT + 3) + BAR_H + 4 + (NODE_TEXT + 3 if self._roles() else 0)

    def _roles(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for row in self.rows:
            for label in self.state.placed.get(row, {}).values():
                counts[role_of(label)] = counts.get(role_of(label), 0) + 1
        return sorted(counts.items(), key=lambda kv: summary.natural_key(kv[0]))

    def emit(self, x: int, y: int, out: list[Shape]) -> None:
        st, rows = self.state, list(self.rows)
        c = st.counts
        gpus = int(c.gpus[rows].sum())
        free, used, down = (int(a[rows].sum()) for a in (c.free, c.used, c.unavailable))
        roles = self._roles()
        # Placed GPUs are drawn in their role's colour, taken from the free/used/down counts.
        placed_free = placed_used = placed_down = 0
        for row in rows:
            for g in st.placed.get(row, {}):
                if not bool(st.snapshot.schedulable[row]):
                    placed_down += 1
                elif int(st.snapshot.free[row]) >> g & 1:
                    placed_free += 1
                else:
                    placed_used += 1
        segments = [(st.role_colour[r], n) for r, n in roles]
        segments += [(FREE, free - placed_free), (USED, used - placed_used)]
        segments.append((UNAVAILABLE, down - placed_down))
        index = st.snapshot.index
        products = sorted(
            {t.product.removeprefix("NVIDIA-") for t in (index.topologies[r] for r in rows) if t}
        )
        head = f"{len(rows)} nodes · {gpus} GPUs · {' / '.join(products)}"
        out.append(Text(x, y, head, NODE_TEXT, INK))
        bar_y = y + NODE_TEXT + 3
        out.append(Rect(x, bar_y, self.w, BAR_H, WHITE, NODE_STROKE, cls="bar"))
        done = 0
        for colour, n in segments:
            if n <= 0 or gpus == 0:
                done += max(n, 0)
                continue
            x0 = x + round(self.w * done / gpus)
            done += n
            x1 = x + round(self.w * done / gpus)
            if x1 > x0:
                out.append(Rect(x0, bar_y, x1 - x0, BAR_H, colour, cls="bar-segment"))
        line = f"{free} free · {used} used" + (f" · {down} unavailable" if down else "")
        out.append(Text(x, bar_y + BAR_H + 4, line, NODE_TEXT, MUTED))
        if roles:
            text = " · ".join(f"{r} {n}" for r, n in roles)
            out.append(Text(x, bar_y + BAR_H + 4 + NODE_TEXT + 3, text, NODE_TEXT, INK))


# -- the domain tree ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Domain:
    title: str
    kind: Literal["root", "network", "nvlink"]
    depth: int
    children: dict[tuple[Any, ...], _Domain] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)

    def child(
        self, key: tuple[Any, ...], title: str, kind: Literal["network", "nvlink"]
    ) -> _Domain:
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = _Domain(title, kind, self.depth + 1)
        return found


def _short_clique(name: str) -> str:
    """``3f2a9c1e-....-.7`` -> ``3f2a9c1e….7``: GFD cliques are ``<cluster uuid>.<id>``."""
    if len(name) <= 18:
        return name
    head, _, tail = name.rpartition(".")
    return f"{head[:8]}….{tail}" if head and len(tail) <= 8 else f"{name[:8]}…{name[-6:]}"


def _tree(state: _State) -> _Domain:
    index = state.snapshot.index
    root = _Domain("cluster", "root", 0)
    rows = sorted(state.counts.rows.tolist(), key=lambda r: summary.natural_key(index.names[r]))
    for row in rows:
        box = root
        for k, level in enumerate(index.config.levels):
            d = int(index.dom[row, k])
            if d < 0:
                break
            last = index.domain_paths[k][d][-1] or "?"
            title = last if last.startswith(level.name) else f"{level.name} {last}"
            box = box.child(("net", k, d), title, "network")
        clique = int(index.clique_of[row])
        if clique >= 0:
            name = _short_clique(index.clique_names[clique])
            box = box.child(("nvl", clique), f"NVLink {name}", "nvlink")
        box.rows.append(row)
    return _collapse(root)


def _collapse(box: _Domain) -> _Domain:
    """A network domain holding exactly one NVLink domain and nothing else (an NVL72 rack under
    its own leaf) is drawn as one box."""
    for key, child in list(box.children.items()):
        box.children[key] = _collapse(child)
    if box.kind == "network" and not box.rows and len(box.children) == 1:
        (only,) = box.children.values()
        if only.kind == "nvlink":
            return _Domain(
                f"{box.title} · {only.title}", "nvlink", box.depth, only.children, only.rows
            )
    return box


@dataclass(slots=True)
class _Box:
    """A domain: a titled, tinted rectangle around its content."""

    domain: _Domain
    content: _Item
    w: int = 0
    h: int = 0

    def __post_init__(self) -> None:
        self.w = max(self.content.w, text_width(self.domain.title, BOX_TITLE)) + 2 * PAD
        self.h = BOX_HEAD + self.content.h + PAD

    def emit(self, x: int, y: int, out: list[Shape]) -> None:
        d = self.domain
        if d.kind == "nvlink":
            fill, stroke, width = NVLINK_FILL, NVLINK_STROKE, 2
        else:
            fill = NETWORK_FILLS[min(d.depth - 1, len(NETWORK_FILLS) - 1)]
            stroke, width = NETWORK_STROKE, 1
        out.append(Rect(x, y, self.w, self.h, fill, stroke, width=width, radius=4, cls=d.kind))
        out.append(Text(x + PAD, y + 3, d.title, BOX_TITLE, INK, bold=True))
        self.content.emit(x + PAD, y + BOX_HEAD, out)


def _content(state: _State, domain: _Domain, max_w: int, aggregated: bool) -> _Item:
    items: list[_Item] = []
    if domain.rows:
        if aggregated:
            # A lone bar spans its box's title, so the box has no empty strip.
            alone = not domain.children
            width = max(BAR_W, text_width(domain.title, BOX_TITLE) if alone else 0)
            items.append(_Bar(state, domain.rows, w=width))
        else:
            tiles = _node_tiles(state, domain.rows)
            items.append(_Grid(tiles, _grid_columns(len(tiles))))
    children = sorted(domain.children.values(), key=lambda d: summary.natural_key(d.title))
    inner = max_w - 2 * PAD
    items.extend(_Box(c, _content(state, c, inner, aggregated)) for c in children)
    return _Flow(items, max_w)


def _leaf_area(state: _State, domain: _Domain, aggregated: bool) -> int:
    area = 0
    if domain.rows:
        item = _content(state, _Domain("", "root", 0, rows=domain.rows), MAX_W, aggregated)
        area += (item.w + 2 * PAD + GAP) * (item.h + BOX_HEAD + PAD + GAP)
    return area + sum(_leaf_area(state, c, aggregated) for c in domain.children.values())


def _wrap_width(state: _State, tree: _Domain, aggregated: bool) -> int:
    """A top-level wrap width that makes the picture about ASPECT times wider than tall; the
    slack covers the gaps that row wrapping leaves."""
    area = _leaf_area(state, tree, aggregated)
    return max(MIN_W, min(MAX_W, round(math.sqrt(area * ASPECT) * 1.25)))


# -- legend, title, notes ----------------------------------------------------------------------


@dataclass(slots=True)
class _Swatch:
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


def _legend(state: _State, max_w: int) -> _Flow:
    index = state.snapshot.index
    items: list[_Item] = [
        _Swatch(FREE, "free GPU"),
        _Swatch(USED, "used GPU"),
        _Swatch(UNAVAILABLE, "unavailable GPU (node not Ready or cordoned: red dashed box)"),
    ]
    for role, labels in state.labels_of_role.items():
        shown = ", ".join(labels[:6]) + (f", … ({len(labels)})" if len(labels) > 6 else "")
        items.append(_Swatch(state.role_colour[role], f"{role}: {shown}"))
    items.append(_Swatch(NVLINK_FILL, "NVLink domain", "box", NVLINK_STROKE))
    for k, level in enumerate(index.config.levels):
        fill = NETWORK_FILLS[min(k, len(NETWORK_FILLS) - 1)]
        items.append(_Swatch(fill, level.name, "box", NETWORK_STROKE))
    return _Flow(items, max_w)


def _notes(sm: summary.Summary, aggregated: bool) -> list[str]:
    """Headings (no indent) and one indented line per node, at most NOTE_LINES per heading."""
    lines: list[str] = []
    marked = "" if aggregated else " (red dashed boxes)"
    for heading, notes in (
        ("Nodes left out (no GPUs drawn)", sm.excluded),
        (f"Nodes that offer no GPUs now{marked}", sm.unavailable),
    ):
        if not notes:
            continue
        lines.append(f"{heading}: {len(notes)}")
        shown = notes[:NOTE_LINES]
        lines.extend(f"  {n.reasons[0]}" for n in shown)
        if len(notes) > len(shown):
            lines.append(f"  … and {len(notes) - len(shown)} more")
    return lines


def _wrap_lines(lines: Sequence[str], chars: int) -> list[str]:
    """Break lines longer than ``chars`` at spaces; continuations are indented further."""
    out: list[str] = []
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        words, current = line.split(), " " * indent
        for word in words:
            if current.strip() and len(current) + 1 + len(word) > chars:
                out.append(current)
                current = " " * (indent + 4)
            current += word if not current.strip() else " " + word
        out.append(current)
    return out


# -- public API --------------------------------------------------------------------------------


def layout(
    snapshot: SnapshotView,
    *,
    placement: Placement | None = None,
    aggregate: bool | None = None,
) -> Drawing:
    """Lay the picture out without writing anything.

    Parameters
    ----------
    snapshot : SnapshotView
        Usually a ``placement.snapshot.ClusterSnapshot``.
    placement : mapping, optional
        Node name -> GPU index -> replica label (``prefill-0``); those GPUs get their role's
        colour.
    aggregate : bool, optional
        Draw one bar per finest domain instead of every node; by default only above
        :data:`AGGREGATE_ABOVE` nodes.

    Returns
    -------
    Drawing

    Raises
    ------
    SpecError
        ``placement`` names a node that is not in the snapshot, or a GPU it does not have.

    Examples
    --------
    >>> import types
    >>> import numpy as np
    >>> from shorthop.topology import fake, index
    >>> idx = index.build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)
    >>> snap = types.SimpleNamespace(
    ...     index=idx, free=np.array([0xFF, 0x0F], dtype=np.uint64),
    ...     schedulable=np.array([True, True]), issues=(), unavailable={})
    >>> layout(snap).gpu_marks()
    16

    Notes
    -----
    O(nodes x GPUs per node) shapes; deterministic (sorted by name).
    """
    state = _state(snapshot, placement)
    sm = summary.summarize(snapshot)
    nodes = len(state.counts.rows)
    aggregated = nodes > AGGREGATE_ABOVE if aggregate is None else aggregate
    tree = _tree(state)
    wrap = _wrap_width(state, tree, aggregated)
    body: _Item
    if nodes:
        body = _content(state, tree, wrap, aggregated)
    else:
        body = _Flow([_Swatch(WHITE, "this snapshot has no GPU nodes", stroke=WHITE)], wrap)

    t = sm.totals
    title = f"Cluster topology · preset {sm.preset}"
    subtitle = (
        f"{nodes} GPU nodes · {t.gpus} GPUs: {t.free} free, {t.used} used, "
        f"{t.unavailable} unavailable · {len(sm.excluded)} nodes left out"
        + (" · one bar per domain" if aggregated else "")
    )
    width = max(body.w, text_width(title, TITLE_SIZE), text_width(subtitle, 11), 900)
    legend = _legend(state, width)
    width = max(width, legend.w)
    notes = _wrap_lines(_notes(sm, aggregated), width // text_width("x", NOTE_SIZE))

    shapes: list[Shape] = []
    y = MARGIN
    shapes.append(Text(MARGIN, y, title, TITLE_SIZE, bold=True))
    y += TITLE_SIZE + 6
    shapes.append(Text(MARGIN, y, subtitle, 11, MUTED))
    y += 11 + 10
    legend.emit(MARGIN, y, shapes)
    y += legend.h + 12
    body.emit(MARGIN, y, shapes)
    y += body.h + 12
    for line in notes:
        heading = not line.startswith(" ")
        shapes.append(Text(MARGIN, y, line, NOTE_SIZE, DOWN_STROKE if heading else INK))
        y += NOTE_SIZE + 4
    height = y + MARGIN
    background = Rect(0, 0, width + 2 * MARGIN, height, WHITE)
    return Drawing(width + 2 * MARGIN, height, (background, *shapes), aggregated)


def render(
    snapshot: SnapshotView,
    path: str,
    *,
    placement: Placement | None = None,
    aggregate: bool | None = None,
) -> Drawing:
    """Draw the cluster and write it to ``path`` (``.svg`` or ``.png``).

    Parameters
    ----------
    snapshot : SnapshotView
    path : str
        Where to write; the suffix picks the format.
    placement, aggregate
        As in :func:`layout`.

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
    drawing = layout(snapshot, placement=placement, aggregate=aggregate)
    if suffix == ".svg":
        Path(path).write_text(to_svg(drawing), encoding="utf-8")
    else:
        write_png(drawing, path)
    return drawing


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
    scale = 2 if max(drawing.width, drawing.height) * 2 <= 12000 else 1
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

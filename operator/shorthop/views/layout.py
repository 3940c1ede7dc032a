"""Lay a cluster's topology out as a picture a person can read at a glance (pure, no I/O).

Boxes nest like the network: the coarsest level's domains contain the finer ones, down to the
finest domains and the multi-node NVLink domains (an NVL72 rack is one amber box). Inside sit the
nodes, each a small box labelled with its name holding one square per GPU, coloured free, used,
or unavailable (the node offers nothing: NotReady, cordoned, ...). An optional ``placement``
(node -> GPU index -> replica label such as ``prefill-0``) colours those GPUs by role
(the label without its ``-N`` suffix) and lists the labels in the legend. Nodes left out by the
label parser have no GPUs to draw; they are listed under the picture with the reasons.

Above :data:`AGGREGATE_ABOVE` nodes every node would be too small to see, so each finest box
shows one bar of free / used / unavailable (and placed) GPU counts instead.

:func:`layout` turns a snapshot into a ``drawing.Drawing`` (deterministic); ``render`` writes it.
Callers: ``render``, tests. Reads a ``placement.snapshot.ClusterSnapshot``; changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shorthop.errors import SpecError
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.views import summary
from shorthop.views.drawing import (
    ASPECT,
    BAR_H,
    BAR_W,
    BOX_HEAD,
    BOX_TITLE,
    DOWN_STROKE,
    FREE,
    GAP,
    GPU,
    GPU_GAP,
    INK,
    MARGIN,
    MAX_W,
    MIN_W,
    MUTED,
    NAME_CHARS,
    NETWORK_FILLS,
    NETWORK_STROKE,
    NODE_PAD,
    NODE_STROKE,
    NODE_TEXT,
    NOTE_LINES,
    NOTE_SIZE,
    NVLINK_FILL,
    NVLINK_STROKE,
    PAD,
    ROLE_COLOURS,
    TITLE_SIZE,
    UNAVAILABLE,
    USED,
    WHITE,
    Drawing,
    Flow,
    Grid,
    Item,
    Rect,
    Shape,
    Swatch,
    Text,
    grid_columns,
    role_of,
    text_width,
)

__all__ = ["AGGREGATE_ABOVE", "Placement", "layout"]

AGGREGATE_ABOVE = 300  # nodes; above this each finest domain is drawn as one bar
Placement = Mapping[str, Mapping[int, str]]  # node -> GPU index -> replica label


@dataclass(frozen=True, slots=True)
class _State:
    """Everything the layout reads, gathered once."""

    snapshot: ClusterSnapshot
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


def _state(snapshot: ClusterSnapshot, placement: Placement | None) -> _State:
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


# -- items: nodes and bars ------------------------------------------------------------------


def _short_name(name: str) -> str:
    """A node's label: its name, or the first DNS label of a long one (the full name is the
    box's tooltip). Never cut: the box grows to fit it."""
    if len(name) <= NAME_CHARS:
        return name
    return name.split(".", 1)[0] or name


def _placed_lines(state: _State, row: int) -> list[str]:
    """The replica labels on a node, one per line (never cut: the node box fits them)."""
    return sorted(set(state.placed.get(row, {}).values()), key=summary.natural_key)


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
        rows_of_gpus = math.ceil(gpus / cols)
        for i, text in enumerate(_placed_lines(st, self.row)):
            out.append(
                Text(
                    x + NODE_PAD,
                    top + rows_of_gpus * (GPU + GPU_GAP) + i * (NODE_TEXT + 2),
                    text,
                    NODE_TEXT - 1,
                    st.role_colour[role_of(text)],
                )
            )


def _node_tiles(state: _State, rows: Sequence[int]) -> list[Item]:
    index = state.snapshot.index
    gpus = max(index.gpus(r) for r in rows)
    cols = _gpu_columns(gpus)
    grid_w = cols * (GPU + GPU_GAP) - GPU_GAP
    grid_h = math.ceil(gpus / cols) * (GPU + GPU_GAP) - GPU_GAP
    name_w = max(text_width(_short_name(index.names[r]), NODE_TEXT) for r in rows)
    placed = [_placed_lines(state, r) for r in rows]
    label_w = max((text_width(t, NODE_TEXT - 1) for lines in placed for t in lines), default=0)
    lines = max(len(p) for p in placed)
    w = max(grid_w, name_w, label_w) + 2 * NODE_PAD
    h = NODE_PAD + NODE_TEXT + 3 + grid_h + NODE_PAD + lines * (NODE_TEXT + 2) + (1 if lines else 0)
    return [_NodeTile(state, r, w, h) for r in rows]


@dataclass(slots=True)
class _Bar:
    """Aggregated view of a group of nodes: counts and one stacked bar."""

    state: _State
    rows: Sequence[int]
    w: int = BAR_W
    h: int = 0

    def __post_init__(self) -> None:
        self.h = 2 * (NODE_TEXT + 3) + BAR_H + 4 + (NODE_TEXT + 3 if self._roles() else 0)
        self.w = max(self.w, *(text_width(t, NODE_TEXT) for t in self._texts()))

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
        head, line, text = self._texts()
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
        out.append(Text(x, bar_y + BAR_H + 4, line, NODE_TEXT, MUTED))
        if roles:
            out.append(Text(x, bar_y + BAR_H + 4 + NODE_TEXT + 3, text, NODE_TEXT, INK))

    def _texts(self) -> tuple[str, str, str]:
        """The bar's three lines: nodes and products, GPU counts, placed GPUs per role."""
        st, rows = self.state, list(self.rows)
        c = st.counts
        gpus = int(c.gpus[rows].sum())
        free, used, down = (int(a[rows].sum()) for a in (c.free, c.used, c.unavailable))
        index = st.snapshot.index
        products = sorted(
            {t.product.removeprefix("NVIDIA-") for t in (index.topologies[r] for r in rows) if t}
        )
        head = f"{len(rows)} nodes · {gpus} GPUs · {' / '.join(products)}"
        line = f"{free} free · {used} used" + (f" · {down} unavailable" if down else "")
        text = " · ".join(f"{r} {n}" for r, n in self._roles())
        return head, line, text


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
            # The whole name (a GFD clique is ``<cluster uuid>.<id>``): the box is as wide.
            name = index.clique_names[clique]
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
    content: Item
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


def _content(state: _State, domain: _Domain, max_w: int, aggregated: bool) -> Item:
    items: list[Item] = []
    if domain.rows:
        if aggregated:
            # A lone bar spans its box's title, so the box has no empty strip.
            alone = not domain.children
            width = max(BAR_W, text_width(domain.title, BOX_TITLE) if alone else 0)
            items.append(_Bar(state, domain.rows, w=width))
        else:
            tiles = _node_tiles(state, domain.rows)
            items.append(Grid(tiles, grid_columns(len(tiles))))
    children = sorted(domain.children.values(), key=lambda d: summary.natural_key(d.title))
    inner = max_w - 2 * PAD
    items.extend(_Box(c, _content(state, c, inner, aggregated)) for c in children)
    return Flow(items, max_w)


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


def _legend(state: _State, max_w: int) -> Flow:
    index = state.snapshot.index
    items: list[Item] = [
        Swatch(FREE, "free GPU"),
        Swatch(USED, "used GPU"),
        Swatch(UNAVAILABLE, "unavailable GPU (node not Ready or cordoned: red dashed box)"),
    ]
    for role, labels in state.labels_of_role.items():
        shown = ", ".join(labels[:6]) + (f", … ({len(labels)})" if len(labels) > 6 else "")
        items.append(Swatch(state.role_colour[role], f"{role}: {shown}"))
    items.append(Swatch(NVLINK_FILL, "NVLink domain", "box", NVLINK_STROKE))
    for k, level in enumerate(index.config.levels):
        fill = NETWORK_FILLS[min(k, len(NETWORK_FILLS) - 1)]
        items.append(Swatch(fill, level.name, "box", NETWORK_STROKE))
    return Flow(items, max_w)


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


# -- the picture -------------------------------------------------------------------------------


def layout(
    snapshot: ClusterSnapshot,
    *,
    placement: Placement | None = None,
    aggregate: bool | None = None,
) -> Drawing:
    """Lay the picture out without writing anything.

    Parameters
    ----------
    snapshot : ClusterSnapshot
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
    >>> from shorthop.placement import snapshot
    >>> from shorthop.topology import fake
    >>> snap = snapshot.build(fake.hgx_cluster(nodes=2), [], fake.CONFIG)
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
    body: Item
    if nodes:
        body = _content(state, tree, wrap, aggregated)
    else:
        body = Flow([Swatch(WHITE, "this snapshot has no GPU nodes", stroke=WHITE)], wrap)

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

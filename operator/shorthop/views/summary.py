"""What a cluster looks like, in numbers: GPUs total/free/used per domain, level by level.

:func:`summarize` reads a ``placement.snapshot.ClusterSnapshot`` and returns a frozen
:class:`Summary`: cluster totals; per level (multi-node NVLink domains first, then each configured
network level coarse to fine) every domain's node and GPU counts; and the nodes that were left out,
offer nothing, or are modelled conservatively, with the reasons. :meth:`Summary.to_dict` gives
JSON-ready data, :meth:`Summary.to_text` a readable table. :func:`nvlink_capacity` gives the free
and stranded GPUs per NVLink domain by the same counting rules (the operator's metrics). Callers:
``shorthop topology``, ``views.layout`` and the operator's metrics. Pure: no I/O.

Counting rules: a node's GPUs are *unavailable* when the node offers nothing (NotReady, cordoned,
too many GPUs to model), otherwise each is *free* or *used*; so ``gpus = free + used +
unavailable`` for every domain and for the cluster. Nodes without a domain at some level (no
label, or not in an NVLink domain) are counted in that level's ``outside`` entry, so each level's
domains plus ``outside`` add up to the cluster totals.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.topology.index import TopologyIndex

__all__ = [
    "DomainCapacity",
    "DomainSummary",
    "LevelSummary",
    "NodeNote",
    "RowCounts",
    "Summary",
    "domain_name",
    "natural_key",
    "nvlink_capacity",
    "row_counts",
    "summarize",
]

NVLINK_LEVEL = "nvlink-domain"
NOTE_LIMIT = 20  # per kind of note in to_text(); to_dict() lists them all


@dataclass(frozen=True, slots=True)
class RowCounts:
    """Per index row: GPUs, and how many are free, used and unavailable (0 for removed rows)."""

    rows: NDArray[np.intp]  # the rows present, in row order
    gpus: NDArray[np.int64]
    free: NDArray[np.int64]
    used: NDArray[np.int64]
    unavailable: NDArray[np.int64]


def row_counts(snapshot: ClusterSnapshot) -> RowCounts:
    """Count each row's GPUs by state.

    Parameters
    ----------
    snapshot : ClusterSnapshot

    Returns
    -------
    RowCounts

    Notes
    -----
    O(rows).
    """
    index = snapshot.index
    n = len(index.names)
    rows = index.rows()
    gpus = np.zeros(n, dtype=np.int64)
    for row in rows.tolist():
        gpus[row] = index.gpus(row)
    free = np.array([int(m).bit_count() for m in snapshot.free.tolist()], dtype=np.int64)
    schedulable = np.asarray(snapshot.schedulable, dtype=np.bool_) & index.alive
    free = np.where(schedulable, np.minimum(free, gpus), 0)
    used = np.where(schedulable, gpus - free, 0)
    unavailable = np.where(schedulable, 0, gpus)
    return RowCounts(rows, gpus, free, used, unavailable)


@dataclass(frozen=True, slots=True)
class DomainSummary:
    """One domain (or the whole cluster): ``gpus == free + used + unavailable``."""

    name: str
    nodes: int
    gpus: int
    free: int
    used: int
    unavailable: int
    products: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes": self.nodes,
            "gpus": self.gpus,
            "free": self.free,
            "used": self.used,
            "unavailable": self.unavailable,
            "products": list(self.products),
        }


@dataclass(frozen=True, slots=True)
class LevelSummary:
    """The domains of one level, sorted by name; ``outside`` counts nodes in none of them."""

    name: str
    kind: Literal["nvlink-domain", "network"]
    domains: tuple[DomainSummary, ...]
    outside: DomainSummary | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "domains": [d.to_dict() for d in self.domains],
            "outside": self.outside.to_dict() if self.outside is not None else None,
        }


NoteKind = Literal["excluded", "unavailable", "degraded"]


@dataclass(frozen=True, slots=True)
class NodeNote:
    """A node that is left out (``excluded``), offers no GPUs (``unavailable``) or is modelled
    conservatively (``degraded``), with one sentence per reason."""

    node: str
    kind: NoteKind
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class Summary:
    """Cluster totals, per-level domains and node notes. See the module docstring for the
    counting rules."""

    preset: str
    level_names: tuple[str, ...]
    totals: DomainSummary
    levels: tuple[LevelSummary, ...]
    excluded: tuple[NodeNote, ...]
    unavailable: tuple[NodeNote, ...]
    degraded: tuple[NodeNote, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (only dicts, lists, strings, ints and ``None``)."""
        return {
            "preset": self.preset,
            "networkLevels": list(self.level_names),
            "totals": {**self.totals.to_dict(), "excludedNodes": len(self.excluded)},
            "levels": [level.to_dict() for level in self.levels],
            "excluded": [n.to_dict() for n in self.excluded],
            "unavailable": [n.to_dict() for n in self.unavailable],
            "degraded": [n.to_dict() for n in self.degraded],
        }

    def to_text(self) -> str:
        """A readable report: totals, one table per level, then the node notes."""
        t = self.totals
        chain = " > ".join(self.level_names) or "none"
        lines = [
            f"cluster: {_plural(t.nodes, 'GPU node')}, {t.gpus} GPUs: {t.free} free, "
            f"{t.used} used, {t.unavailable} unavailable",
            f"preset: {self.preset} (network levels {chain})",
            f"excluded nodes: {len(self.excluded)}, unavailable nodes: {len(self.unavailable)}, "
            f"degraded nodes: {len(self.degraded)}",
        ]
        for level in self.levels:
            lines.append("")
            lines.append(f"{level.name}: {_plural(len(level.domains), 'domain')}")
            lines.extend(_table(level))
        for title, notes in (
            ("excluded (left out of placement)", self.excluded),
            ("unavailable (offer no GPUs now)", self.unavailable),
            ("degraded (modelled conservatively)", self.degraded),
        ):
            if not notes:
                continue
            lines.append("")
            lines.append(f"{title}: {_plural(len(notes), 'node')}")
            for note in notes[:NOTE_LIMIT]:
                lines.extend(f"  {reason}" for reason in note.reasons)
            if len(notes) > NOTE_LIMIT:
                lines.append(f"  ... and {len(notes) - NOTE_LIMIT} more nodes")
        return "\n".join(lines) + "\n"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_COLUMNS = ("NODES", "GPUS", "FREE", "USED", "UNAVAIL")


def _table(level: LevelSummary) -> list[str]:
    rows = list(level.domains)
    if level.outside is not None:
        rows.append(level.outside)
    if not rows:
        return ["  (none)"]
    width = max(len("DOMAIN"), *(len(r.name) for r in rows))
    head = "  " + "DOMAIN".ljust(width) + "".join(f"{c:>9}" for c in _COLUMNS) + "  PRODUCTS"
    out = [head]
    for r in rows:
        numbers = (r.nodes, r.gpus, r.free, r.used, r.unavailable)
        out.append(
            "  "
            + r.name.ljust(width)
            + "".join(f"{v:>9}" for v in numbers)
            + "  "
            + (", ".join(r.products) or "-")
        )
    return out


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``unit-2`` before ``unit-10``.

    >>> sorted(["unit-10", "unit-2", "b"], key=natural_key)
    ['b', 'unit-2', 'unit-10']
    """
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(name) if part
    )


def domain_name(path: Sequence[str | None]) -> str:
    """A domain's display name: its path joined with ``/``, ``?`` for a missing level.

    >>> domain_name(("zone-0", None, "rack-3"))
    'zone-0/?/rack-3'
    """
    return "/".join("?" if part is None else part for part in path)


def _domain(
    name: str, rows: Iterable[int], counts: RowCounts, index: TopologyIndex
) -> DomainSummary:
    members = list(rows)
    products = sorted({t.product for t in (index.topologies[r] for r in members) if t is not None})
    return DomainSummary(
        name=name,
        nodes=len(members),
        gpus=int(counts.gpus[members].sum()),
        free=int(counts.free[members].sum()),
        used=int(counts.used[members].sum()),
        unavailable=int(counts.unavailable[members].sum()),
        products=tuple(products),
    )


def _level(
    name: str,
    kind: Literal["nvlink-domain", "network"],
    *,
    ids: NDArray[np.int32],
    names: Sequence[str],
    outside_name: str,
    counts: RowCounts,
    index: TopologyIndex,
) -> LevelSummary:
    groups: dict[int, list[int]] = defaultdict(list)
    outside: list[int] = []
    for row in counts.rows.tolist():
        domain = int(ids[row])
        (groups[domain] if domain >= 0 else outside).append(row)
    domains = sorted(
        (_domain(names[d], members, counts, index) for d, members in groups.items()),
        key=lambda d: natural_key(d.name),
    )
    return LevelSummary(
        name=name,
        kind=kind,
        domains=tuple(domains),
        outside=_domain(outside_name, outside, counts, index) if outside else None,
    )


def summarize(snapshot: ClusterSnapshot) -> Summary:
    """Summarise a cluster snapshot.

    Parameters
    ----------
    snapshot : ClusterSnapshot
        Usually a ``placement.snapshot.ClusterSnapshot``.

    Returns
    -------
    Summary

    Examples
    --------
    >>> import types
    >>> import numpy as np
    >>> from shorthop.topology import fake, index
    >>> idx = index.build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)
    >>> snap = types.SimpleNamespace(
    ...     index=idx, free=np.array([0xFF, 0x0F], dtype=np.uint64),
    ...     schedulable=np.array([True, True]), issues=(), unavailable={})
    >>> s = summarize(snap)
    >>> s.totals.gpus, s.totals.free, s.totals.used, [lv.name for lv in s.levels]
    (16, 12, 4, ['nvlink-domain', 'zone', 'block', 'rack'])

    Notes
    -----
    O(rows x levels + issues).
    """
    index = snapshot.index
    counts = row_counts(snapshot)
    levels = [
        _level(
            NVLINK_LEVEL,
            "nvlink-domain",
            ids=index.clique_of,
            names=index.clique_names,
            outside_name="(not in an NVLink domain)",
            counts=counts,
            index=index,
        )
    ]
    for k, level in enumerate(index.config.levels):
        levels.append(
            _level(
                level.name,
                "network",
                ids=index.dom[:, k],
                names=[domain_name(path) for path in index.domain_paths[k]],
                outside_name=f"(no {level.name})",
                counts=counts,
                index=index,
            )
        )
    totals = _domain("cluster", counts.rows.tolist(), counts, index)

    present = {index.names[r] for r in counts.rows.tolist()}
    excluded_reasons: dict[str, list[str]] = defaultdict(list)
    degraded_reasons: dict[str, list[str]] = defaultdict(list)
    for issue in snapshot.issues:
        if issue.excluded and issue.node not in present:
            excluded_reasons[issue.node].append(issue.message())
        elif not issue.excluded and issue.severity == "warning" and issue.node in present:
            degraded_reasons[issue.node].append(issue.message())
    unavailable_notes: list[NodeNote] = []
    for node, reason in snapshot.unavailable.items():
        if node in present:
            unavailable_notes.append(NodeNote(node, "unavailable", (reason,)))
        elif node not in excluded_reasons:
            excluded_reasons[node].append(reason)

    def notes(kind: NoteKind, reasons: Mapping[str, list[str]]) -> tuple[NodeNote, ...]:
        return tuple(
            NodeNote(node, kind, tuple(reasons[node])) for node in sorted(reasons, key=natural_key)
        )

    return Summary(
        preset=index.config.preset,
        level_names=index.config.level_names,
        totals=totals,
        levels=tuple(levels),
        excluded=notes("excluded", excluded_reasons),
        unavailable=tuple(sorted(unavailable_notes, key=lambda n: natural_key(n.node))),
        degraded=notes("degraded", degraded_reasons),
    )


@dataclass(frozen=True, slots=True)
class DomainCapacity:
    """Free GPUs of one NVLink domain, and how many of them are *stranded*: on nodes with fewer
    free GPUs than the smallest pod asked for, so no pending pod can use them."""

    name: str
    free: int
    stranded: int


def nvlink_capacity(
    snapshot: ClusterSnapshot, smallest_pod: int, *, outside: str = "none"
) -> tuple[DomainCapacity, ...]:
    """Free and stranded GPUs per multi-node NVLink domain, in name order, then the nodes in none
    (named ``outside``; listed when there are such nodes). Free GPUs are counted as in
    :func:`summarize` (none on a node that offers nothing).

    >>> import types
    >>> import numpy as np
    >>> from shorthop.topology import fake, index
    >>> idx = index.build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)
    >>> snap = types.SimpleNamespace(
    ...     index=idx, free=np.array([0xFF, 0x07], dtype=np.uint64),
    ...     schedulable=np.array([True, True]), issues=(), unavailable={})
    >>> nvlink_capacity(snap, smallest_pod=4)
    (DomainCapacity(name='none', free=11, stranded=3),)
    """
    index = snapshot.index
    counts = row_counts(snapshot)
    stranded = np.where((counts.free > 0) & (counts.free < smallest_pod), counts.free, 0)
    groups: dict[int, list[int]] = defaultdict(list)
    for row in counts.rows.tolist():
        groups[int(index.clique_of[row])].append(row)
    named = sorted(
        (
            DomainCapacity(
                index.clique_names[d],
                int(counts.free[rows].sum()),
                int(stranded[rows].sum()),
            )
            for d, rows in groups.items()
            if d >= 0
        ),
        key=lambda c: natural_key(c.name),
    )
    rows = groups.get(-1, [])
    if rows:
        named.append(
            DomainCapacity(outside, int(counts.free[rows].sum()), int(stranded[rows].sum()))
        )
    return tuple(named)

"""Sums over every GPU pair between two sets of GPUs, without enumerating the pairs.

The all-to-all traffic of a deployment sums the distance of every (prefill GPU, decode GPU) pair:
thousands of GPUs per role make millions of pairs. Distances decompose (``topology.index``)::

    same node:                 class.dist[a, b]
    same NVLink domain:        fab[a] + fab[b]
    otherwise:                 up'(a) + up'(b) + 2 * H[lca]

so a sum over all pairs needs only, per node, how many GPUs of each set it holds and the sums of
their ``up'`` and ``fab``, rolled up the domain tree (``placement.tree``): pairs whose lowest
common domain is a vertex ``v`` number ``A_v * B_v - sum over v's children of A_c * B_c``. Only
pairs on one node are looked at GPU by GPU (one subset-table row per node).

- :class:`Mass`: a GPU set summarised per node (rows, masks, counts, ``up'`` and ``fab`` sums);
- :func:`pair_sums`: the distance sum and the GPU pairs per tier between two masses;
- :class:`Summary` and :func:`costs_to`: one mass summarised per tree vertex, and the cost of
  many candidate GPU sets (node, mask) against it at once (the solver's inner loop).

Pure numpy over the index and its domain tree; callers: ``objective``, the solver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import subsets
from shorthop.placement import tree as domain_tree
from shorthop.topology.index import TIER_NVLINK_DOMAIN, TopologyIndex

Ints = NDArray[np.int64]


MASK_TABLE_CELLS = 1 << 22  # the most entries of GpuTerms' per-mask sum tables (else bit by bit)


@dataclass(frozen=True, eq=False)
class GpuTerms:
    """Per row and GPU index: ``up'`` (to the network, possibly through the NVLink fabric) and
    ``fab`` (to the NVLink fabric; 0 outside cliques). Static per index (kept with it).

    Rows with the same terms share a *profile*; when the tables stay small, the sums over every
    GPU mask are kept per profile, so a set's sums are two lookups instead of a pass per GPU."""

    up: Ints  # [rows, width]
    fab: Ints  # [rows, width]
    width: int  # the most GPUs on any node
    # (per row its profile, per profile and GPU mask the sums of up' and of fab), or None
    tables: tuple[Ints, Ints, Ints] | None = None

    def sums(self, rows: NDArray[np.intp], masks: NDArray[np.int64]) -> tuple[Ints, Ints, Ints]:
        """(GPU count, ``up'`` sum, ``fab`` sum) of GPUs ``masks[i]`` on ``rows[i]``."""
        if self.tables is not None:
            profile, up_by_mask, fab_by_mask = self.tables
            at = profile[rows]
            count: Ints = np.bitwise_count(masks).astype(np.int64)
            return count, up_by_mask[at, masks], fab_by_mask[at, masks]
        bitmat = (masks[:, None] >> np.arange(self.width)[None, :]) & 1
        count = bitmat.sum(axis=1)
        up: Ints = (bitmat * self.up[rows]).sum(axis=1)
        fab: Ints = (bitmat * self.fab[rows]).sum(axis=1)
        return count, up, fab

    def sums_of(self, row: int, mask: int) -> tuple[int, int]:
        """(``up'`` sum, ``fab`` sum) of the GPUs ``mask`` on one row."""
        if self.tables is not None:
            profile, up_by_mask, fab_by_mask = self.tables
            at = int(profile[row])
            return int(up_by_mask[at, mask]), int(fab_by_mask[at, mask])
        gpus = [g for g in range(self.width) if mask >> g & 1]
        return int(self.up[row, gpus].sum()), int(self.fab[row, gpus].sum())


def gpu_terms(index: TopologyIndex) -> GpuTerms:
    """The :class:`GpuTerms` of ``index`` (built once, kept with the index)."""
    return index.derived(_build_terms)


def _build_terms(index: TopologyIndex) -> GpuTerms:
    rows = len(index.names)
    width = max((c.gpus for c in index.classes), default=1)
    up = np.zeros((rows, width), dtype=np.int64)
    fab = np.zeros((rows, width), dtype=np.int64)
    alive = np.flatnonzero(index.alive)
    for cls_id, cls in enumerate(index.classes):
        members = alive[index.class_of[alive] == cls_id]
        if members.size == 0:
            continue
        g = cls.gpus
        clique = index.clique_of[members]
        inside = clique >= 0
        up[members, :g] = cls.up[None, :]
        if inside.any():
            exits = index.clique_exit[clique[inside]]
            up[members[inside], :g] = np.minimum(cls.up[None, :], cls.fab[None, :] + exits[:, None])
            fab[members[inside], :g] = cls.fab[None, :]
    for array in (up, fab):
        array.setflags(write=False)
    profiles, profile = np.unique(np.concatenate([up, fab], axis=1), axis=0, return_inverse=True)
    if len(profiles) << width > MASK_TABLE_CELLS:
        return GpuTerms(up, fab, width)
    masks = np.arange(1 << width, dtype=np.int64)
    bitmat = (masks[:, None] >> np.arange(width)[None, :]) & 1  # [masks, width]
    up_by_mask = (profiles[:, :width] @ bitmat.T).astype(np.int64)
    fab_by_mask = (profiles[:, width:] @ bitmat.T).astype(np.int64)
    of_row = profile.reshape(-1).astype(np.int64)
    for table in (of_row, up_by_mask, fab_by_mask):
        table.setflags(write=False)
    return GpuTerms(up, fab, width, (of_row, up_by_mask, fab_by_mask))


@dataclass(frozen=True, eq=False)
class Mass:
    """A set of GPUs summarised per node: distinct ``rows`` (sorted), their GPU ``masks``, and
    per row the GPU count and the sums of ``up'`` and ``fab`` over those GPUs."""

    rows: NDArray[np.intp]
    masks: Ints
    count: Ints
    up: Ints
    fab: Ints

    @property
    def gpus(self) -> int:
        return int(self.count.sum())


def mass(index: TopologyIndex, masks_by_row: dict[int, int]) -> Mass:
    """The :class:`Mass` of GPUs given as row -> GPU mask (rows with an empty mask dropped)."""
    items = sorted((r, m) for r, m in masks_by_row.items() if m)
    rows = np.array([r for r, _ in items], dtype=np.intp)
    masks = np.array([m for _, m in items], dtype=np.int64)
    count, up, fab = gpu_terms(index).sums(rows, masks)
    return Mass(rows, masks, count, up, fab)


def _same_node(
    index: TopologyIndex, row: int, a: int, b: int, *, nvlink: bool = True
) -> tuple[int, int]:
    """(distance sum, NVLink pairs) over pairs of GPUs ``a`` x ``b`` (masks) on one node; the
    pairs are not counted (0) without ``nvlink``."""
    cls = index.node_class(row)
    ga = [g for g in range(cls.gpus) if a >> g & 1]
    gb = [g for g in range(cls.gpus) if b >> g & 1]
    if not ga or not gb:
        return 0, 0
    table = subsets.table(cls)
    exact = table.exact
    dist = int(table.to_gpu[a][gb].sum()) if exact else int(cls.dist[np.ix_(ga, gb)].sum())
    return dist, int(cls.nvlink[np.ix_(ga, gb)].sum()) if nvlink else 0


def network_h2(index: TopologyIndex) -> Ints:
    """``2 H`` of the network vertices at tree layers 2, 3, ... (the root last), kept with the
    index."""
    return index.derived(_build_network_h2)


def _build_network_h2(index: TopologyIndex) -> Ints:
    layers = domain_tree.tree(index).ancestor_at.shape[0]
    out = np.array([2 * _h_of_layer(index, layer) for layer in range(2, layers)], dtype=np.int64)
    out.setflags(write=False)
    return out


def _h_of_layer(index: TopologyIndex, layer: int) -> int:
    """``H`` of a network vertex at tree ``layer`` (>= 2; the root is ``levels + 2``)."""
    return int(index.h[index.levels + 2 - layer])


def pair_sums(index: TopologyIndex, a: Mass, b: Mass) -> tuple[int, Ints]:
    """Sum of distances over every pair (one GPU of ``a``, one of ``b``) and the number of those
    pairs per tier (an array indexed like ``index.tiers``). The sets must not share a GPU.

    Examples
    --------
    >>> from shorthop.topology import fake, index
    >>> idx = index.build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)
    >>> total, tiers = pair_sums(idx, mass(idx, {0: 0b11}), mass(idx, {0: 0b100, 1: 0b1}))
    >>> total, tiers.tolist()  # 2 NVLink pairs (10 each) and 2 pairs across the rack (200)
    (420, [2, 0, 0, 2, 0, 0, 0])

    Notes
    -----
    O((rows of a + rows of b) x layers) numpy work plus one lookup per node holding both.
    """
    tiers = np.zeros(len(index.tiers), dtype=np.int64)
    if not a.rows.size or not b.rows.size:
        return 0, tiers
    rows = np.union1d(a.rows, b.rows)
    at_a = np.searchsorted(rows, a.rows)
    at_b = np.searchsorted(rows, b.rows)
    n = len(rows)
    ac, bc = np.zeros(n, np.int64), np.zeros(n, np.int64)
    au, bu = np.zeros(n, np.int64), np.zeros(n, np.int64)
    af, bf = np.zeros(n, np.int64), np.zeros(n, np.int64)
    ac[at_a], au[at_a], af[at_a] = a.count, a.up, a.fab
    bc[at_b], bu[at_b], bf[at_b] = b.count, b.up, b.fab
    total = 0
    # Pairs on one node, GPU by GPU.
    both = np.intersect1d(a.rows, b.rows)
    if both.size:
        ma = dict(zip(a.rows.tolist(), a.masks.tolist(), strict=True))
        mb = dict(zip(b.rows.tolist(), b.masks.tolist(), strict=True))
        for row in both.tolist():
            dist, nvlink = _same_node(index, row, ma[row], mb[row])
            total += dist
            tiers[0] += nvlink
            tiers[1] += int(ma[row]).bit_count() * int(mb[row]).bit_count() - nvlink
    tree = domain_tree.tree(index)
    if n <= SMALL_ROWS:
        total += _across_nodes_small(index, rows, (ac, au, af), (bc, bu, bf), tiers)
        return total, tiers
    key = rows.astype(np.int64)
    before = int((ac * bc).sum())
    within_clique_up = 0
    for layer in range(1, tree.ancestor_at.shape[0]):
        anc = tree.ancestor_at[layer, rows]
        key = np.where(anc >= 0, anc, key)
        _, group = np.unique(key, return_inverse=True)
        ga = np.bincount(group, weights=ac).astype(np.int64)
        gb = np.bincount(group, weights=bc).astype(np.int64)
        joined = int((ga * gb).sum())
        new = joined - before  # pairs whose lowest common domain is at this layer
        if layer == domain_tree.CLIQUE_LAYER:
            gaf = np.bincount(group, weights=af).astype(np.int64)
            gbf = np.bincount(group, weights=bf).astype(np.int64)
            total += int((gaf * gb + ga * gbf).sum() - (af * bc + ac * bf).sum())
            gau = np.bincount(group, weights=au).astype(np.int64)
            gbu = np.bincount(group, weights=bu).astype(np.int64)
            within_clique_up = int((gau * gb + ga * gbu).sum())
            tiers[TIER_NVLINK_DOMAIN] += new
        else:
            total += 2 * _h_of_layer(index, layer) * new
            tiers[layer + 1] += new
        before = joined
    total += int(au.sum() * bc.sum() + ac.sum() * bu.sum()) - within_clique_up
    return total, tiers


SMALL_ROWS = 32  # rows of two masses up to which pair_sums compares every node pair at once


def _across_nodes_small(
    index: TopologyIndex,
    rows: NDArray[np.intp],
    a: tuple[Ints, Ints, Ints],
    b: tuple[Ints, Ints, Ints],
    tiers: Ints,
) -> int:
    """:func:`pair_sums` over pairs on different nodes for a few rows: which node pairs share a
    domain at each layer, as ``[layer, row, row]`` matrices (the same integers as grouping the
    rows layer by layer). Adds the pairs per tier to ``tiers``; returns the distance sum."""
    (ac, au, af), (bc, bu, bf) = a, b
    tree = domain_tree.tree(index)
    keys = tree.carried[1:, rows]  # [layer - 1, row]: the domain holding each row there
    same = (keys[:, :, None] == keys[:, None, :]).astype(np.int64)
    joined = (same @ bc) @ ac  # per layer: pairs (a, b) whose rows share its domain
    new = joined - np.concatenate([[int((ac * bc).sum())], joined[:-1]])
    clique = same[domain_tree.CLIQUE_LAYER - 1]
    total = int(af @ clique @ bc + ac @ clique @ bf) - int((af * bc + ac * bf).sum())
    within_clique_up = int(au @ clique @ bc + ac @ clique @ bu)
    tiers[TIER_NVLINK_DOMAIN] += new[0]
    tiers[3 : 3 + len(new) - 1] += new[1:]  # layer 2 and up: tier layer + 1
    total += int(network_h2(index) @ new[1:])
    total += int(au.sum() * bc.sum() + ac.sum() * bu.sum()) - within_clique_up
    return total


class Summary:
    """One :class:`Mass` summarised per vertex of the domain tree: under every vertex, how many
    of its GPUs and the sums of their ``up'`` and ``fab`` (dense arrays over the tree's vertices,
    rows included), read for many candidate rows at once by :func:`costs_to`."""

    def __init__(self, index: TopologyIndex, m: Mass) -> None:
        self.index = index
        self._mass: Mass | None = m
        self.masks = dict(zip(m.rows.tolist(), m.masks.tolist(), strict=True))
        self.total = (int(m.count.sum()), int(m.up.sum()))
        tree = domain_tree.tree(index)
        self.layers = tree.ancestor_at.shape[0]
        v = tree.vertices
        self.count = np.zeros(v, dtype=np.int64)
        self.up = np.zeros(v, dtype=np.int64)
        self.fab = np.zeros(v, dtype=np.int64)
        # Which rows hold GPUs of the mass (dense, so costs_to need not search m.rows).
        self.held = np.zeros(v, dtype=np.bool_)
        self.held[m.rows] = True
        if m.rows.size:
            anc = tree.ancestor_at[1:, m.rows]  # each row's ancestors, layer by layer
            inside = anc >= 0
            where = np.concatenate([m.rows, anc[inside]])
            of_row = np.concatenate([np.arange(len(m.rows)), np.nonzero(inside)[1]])
            for total, values in ((self.count, m.count), (self.up, m.up), (self.fab, m.fab)):
                np.add.at(total, where, values[of_row])

    @property
    def mass(self) -> Mass:
        """The summarised set per node (built on first use after :meth:`refreshed`)."""
        if self._mass is None:
            self._mass = mass(self.index, self.masks)
        return self._mass

    def refreshed(self, rows: Iterable[int], now: Mapping[int, int]) -> Summary:
        """A new summary of the same set after the GPUs on ``rows`` became ``now[row]`` (a mask;
        absent: none): the per-vertex sums change only along those rows' ancestors, in exact
        integers, so the result equals a summary built afresh. This one is left unchanged."""
        out = Summary.__new__(Summary)
        out.index, out.layers = self.index, self.layers
        out.masks = dict(self.masks)
        out.count, out.up, out.fab = self.count.copy(), self.up.copy(), self.fab.copy()
        out.held = self.held.copy()
        out.total = self.total
        out.refresh(rows, now)
        return out

    def refresh(self, rows: Iterable[int], now: Mapping[int, int]) -> None:
        """:meth:`refreshed` in place, for a summary nothing else holds."""
        terms = gpu_terms(self.index)
        tree = domain_tree.tree(self.index)
        total_count, total_up = self.total
        for row in rows:
            old, new = self.masks.get(row, 0), now.get(row, 0)
            if old == new:
                continue
            up_came, fab_came = terms.sums_of(row, new & ~old)
            up_gone, fab_gone = terms.sums_of(row, old & ~new)
            d_up, d_fab = up_came - up_gone, fab_came - fab_gone
            d_count = new.bit_count() - old.bit_count()
            total_count, total_up = total_count + d_count, total_up + d_up
            for v in [row, *tree.ancestor_at[1:, row].tolist()]:
                if v >= 0:
                    self.count[v] += d_count
                    self.up[v] += d_up
                    self.fab[v] += d_fab
            self.held[row] = new != 0
            if new:
                self.masks[row] = new
            else:
                self.masks.pop(row, None)
        self._mass = None
        self.total = (total_count, total_up)


def costs_to(
    index: TopologyIndex, summary: Summary, rows: NDArray[np.intp], masks: Ints
) -> NDArray[np.float64]:
    """Per part ``i``: the sum of distances from the GPUs ``masks[i]`` on node ``rows[i]`` to
    every GPU of ``summary``'s mass (which must not contain those GPUs).

    Notes
    -----
    O(parts x layers) numpy work, plus one table lookup per part on a node the mass also uses.
    """
    out = np.zeros(len(rows), dtype=np.float64)
    if not len(rows) or not summary.masks:
        return out
    k, up, fab = gpu_terms(index).sums(rows, masks)
    tree = domain_tree.tree(index)
    # The domain holding each part at every layer (the part's own row where it has none there),
    # and the mass's GPUs under it: pairs new at a layer have their lowest common domain there.
    key = tree.carried[:, rows]
    count = summary.count[key]
    new = count[1:] - count[:-1]  # [layer - 1, part]
    clique = key[domain_tree.CLIQUE_LAYER]
    cost = fab * new[0] + k * (summary.fab[clique] - summary.fab[rows])
    # Above NVLink domains: 2 H per pair.
    cost += k * (network_h2(index) @ new[1:])
    total_count, total_up = summary.total
    cost += up * (total_count - count[domain_tree.CLIQUE_LAYER]) + k * (
        total_up - summary.up[clique]
    )
    out += cost
    shared = np.flatnonzero(summary.held[rows])
    for i in shared.tolist():
        row = int(rows[i])
        out[i] += _same_node(index, row, int(masks[i]), summary.masks[row], nvlink=False)[0]
    return out


def dense(index: TopologyIndex, rows: NDArray[np.intp], gpus: NDArray[np.intp]) -> Ints:
    """The full distance matrix among a few GPUs (GPU ``gpus[i]`` of node ``rows[i]``), for
    searches over small instances; equals ``index.distance`` entry by entry.

    Notes
    -----
    O(n^2 x levels) numpy work.
    """
    terms = gpu_terms(index)
    up = terms.up[rows, gpus]
    fab = terms.fab[rows, gpus]
    dom = index.dom[rows]
    agree = ((dom[:, None, :] == dom[None, :, :]) & (dom[:, None, :] >= 0)).sum(axis=2)
    out: Ints = up[:, None] + up[None, :] + 2 * index.h[agree]  # lca level + 1 = agreeing levels
    clique = index.clique_of[rows]
    same_clique = (clique[:, None] == clique[None, :]) & (clique[:, None] >= 0)
    out = np.where(same_clique, fab[:, None] + fab[None, :], out)
    if rows.size and (rows[1:] >= rows[:-1]).all():
        # GPUs grouped by node (the search's universe is): each node's block is one slice
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]).tolist()
        for lo, hi in zip(starts, [*starts[1:], len(rows)], strict=True):
            g = gpus[lo:hi]
            out[lo:hi, lo:hi] = index.node_class(int(rows[lo])).dist[g[:, None], g[None, :]]
        return out
    for row in np.unique(rows).tolist():
        at = np.flatnonzero(rows == row)
        out[np.ix_(at, at)] = index.node_class(row).dist[np.ix_(gpus[at], gpus[at])]
    return out

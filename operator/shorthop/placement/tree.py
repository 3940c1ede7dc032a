"""The domain tree over an index: nodes under NVLink domains under network domains under the root.

Static per index generation (Kueue's topology tree): dense vertex ids with a ``parent`` array and
CSR-style children, so the solver can roll capacity up the tree with a few ``numpy.bincount`` calls
and walk down it to fill a domain. :func:`tree` keeps it with its index (``TopologyIndex.derived``);
callers: the solver, the TAS-like baseline. Vertex ids: rows of the index first (``0..rows-1``),
then one per NVLink domain (clique), then one per network domain per level, then the root.

Layers (what a scope or a candidate domain means): 0 node, 1 NVLink domain, ``2 + j`` the network
level ``levels-1-j`` (finest first), ``levels + 2`` the cluster root. ``layer_of_tier`` maps a tier
index (``levels.TopologyConfig.tiers``) to its layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shorthop.topology.index import TopologyIndex

NODE_LAYER, CLIQUE_LAYER = 0, 1


@dataclass(frozen=True, eq=False)
class DomainTree:
    index: TopologyIndex
    parent: NDArray[np.int64]  # [V], -1 for the root and for dead rows / empty cliques
    layer: NDArray[np.int64]  # [V]
    child_start: NDArray[np.int64]  # [V + 1]
    children: NDArray[np.int64]  # CSR
    order: tuple[NDArray[np.int64], ...]  # vertex groups to roll up, children before parents
    order_parent: tuple[NDArray[np.int64], ...]  # their parents (groups without parents dropped)
    parent_span: tuple[tuple[int, int], ...]  # per group: lowest parent id, highest + 1
    root: int
    ancestor_at: NDArray[np.int64]  # [layers, rows]: each row's ancestor at a layer, -1 if none
    # [layers, rows]: like ancestor_at, but where a row has no ancestor at a layer, the one below
    # (the row itself at layer 0): the domain whose sums hold the row at that layer
    carried: NDArray[np.int64]
    clique_base: int
    level_base: tuple[int, ...]  # per level k (coarse to fine): first vertex id
    layer_vertices: tuple[NDArray[np.int64], ...]  # per layer: its vertices, ascending

    @property
    def vertices(self) -> int:
        return len(self.parent)

    def children_of(self, v: int) -> NDArray[np.int64]:
        return self.children[self.child_start[v] : self.child_start[v + 1]]

    def layer_of_tier(self, tier: int) -> int:
        return 0 if tier <= 1 else tier - 1

    def rollup(self, leaf_values: NDArray[np.int64]) -> NDArray[np.int64]:
        """Sum ``leaf_values`` (per row) up the tree: the total under every vertex."""
        total = np.zeros(self.vertices, dtype=np.float64)
        total[: len(leaf_values)] = leaf_values
        self._add_up(total)
        return total.astype(np.int64)

    def rollup_vertices(self, values: NDArray[np.int64]) -> NDArray[np.int64]:
        """Like :meth:`rollup`, from a value at any vertex (``[vertices]``): each vertex gets its
        own value plus the totals of its children."""
        total = values.astype(np.float64)
        self._add_up(total)
        return total.astype(np.int64)

    def _add_up(self, total: NDArray[np.float64]) -> None:
        """Add each group's totals into its parents, children before parents; each group's
        parents lie in one span of ids (:attr:`parent_span`), so only that span is summed into."""
        for group, parents, (low, high) in zip(
            self.order, self.order_parent, self.parent_span, strict=True
        ):
            sums = np.bincount(parents - low, weights=total[group], minlength=high - low)
            total[low:high] += sums

    def ancestors(self, v: int) -> list[int]:
        out = []
        p = int(self.parent[v])
        while p >= 0:
            out.append(p)
            p = int(self.parent[p])
        return out

    def holders(self, layer: int, row: int) -> frozenset[int]:
        """The vertices of layer ``layer`` or finer that hold ``row`` (the row itself included):
        a replica scoped to ``layer`` must have one of them in common over all its rows (an
        NVLink domain that straddles racks holds a replica scoped to a rack, as its pairs are
        NVLink pairs)."""
        out = {row}
        for v in self.ancestors(row):
            if int(self.layer[v]) <= layer:
                out.add(v)
        return frozenset(out)

    def rows_under(self, v: int) -> list[int]:
        """The rows (nodes) under vertex ``v``, ``v`` itself when it is a row."""
        rows = len(self.index.names)
        out, stack = [], [v]
        while stack:
            u = stack.pop()
            if u < rows:
                out.append(u)
            else:
                stack.extend(self.children_of(u).tolist())
        return out

    def name(self, v: int) -> str:
        index = self.index
        if v < len(index.names):
            return index.names[v]
        if v == self.root:
            return "cluster"
        clique_end = self.level_base[0] if self.level_base else self.root
        if v < clique_end:
            return f"nvlink-domain {index.clique_names[v - self.clique_base]}"
        for k in range(len(self.level_base) - 1, -1, -1):
            if v >= self.level_base[k]:
                path = index.domain_paths[k][v - self.level_base[k]]
                return f"{index.config.levels[k].name} " + "/".join(p or "?" for p in path)
        return str(v)


def tree(index: TopologyIndex) -> DomainTree:
    """The domain tree of ``index``: built on first use, then kept with the index (see
    ``TopologyIndex.derived``), so it is shared by every snapshot of that generation and goes
    when the index goes."""
    return index.derived(build)


def build(index: TopologyIndex) -> DomainTree:
    """Build the domain tree of ``index`` (O(rows x levels)); callers want :func:`tree`."""
    rows = len(index.names)
    levels = index.levels
    cliques = len(index.clique_names)
    clique_base = rows
    level_base = []
    base = rows + cliques
    for k in range(levels):
        level_base.append(base)
        base += len(index.domain_paths[k])
    root = base
    size = root + 1
    parent = np.full(size, -1, dtype=np.int64)
    layer = np.zeros(size, dtype=np.int64)
    layer[clique_base:root] = CLIQUE_LAYER
    for k in range(levels):
        layer[level_base[k] : level_base[k] + len(index.domain_paths[k])] = 2 + (levels - 1 - k)
    layer[root] = levels + 2

    def deepest(row: int) -> int:
        d = index.dom[row]
        valid = np.flatnonzero(d >= 0)
        if valid.size == 0:
            return root
        k = int(valid[-1])
        return level_base[k] + int(d[k])

    clique_parent_set = np.zeros(cliques, dtype=np.bool_)
    for row in np.flatnonzero(index.alive):
        c = int(index.clique_of[row])
        if c >= 0:
            parent[row] = clique_base + c
            if not clique_parent_set[c]:
                parent[clique_base + c] = deepest(int(row))
                clique_parent_set[c] = True
        else:
            parent[row] = deepest(int(row))
    for k in range(levels):
        prefix_ids = {path: i for i, path in enumerate(index.domain_paths[k - 1])} if k else {}
        for i, path in enumerate(index.domain_paths[k]):
            parent[level_base[k] + i] = level_base[k - 1] + prefix_ids[path[:-1]] if k else root
    # Children in CSR form, sorted by vertex id within each parent (deterministic fills).
    has_parent = np.flatnonzero(parent >= 0)
    by_parent = has_parent[np.lexsort((has_parent, parent[has_parent]))]
    counts = np.bincount(parent[by_parent], minlength=size)
    child_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    groups = [
        np.arange(rows, dtype=np.int64),
        np.arange(clique_base, clique_base + cliques, dtype=np.int64),
    ]
    for k in range(levels - 1, -1, -1):
        groups.append(
            np.arange(level_base[k], level_base[k] + len(index.domain_paths[k]), dtype=np.int64)
        )
    order = [g[parent[g] >= 0] for g in groups]
    layers = levels + 3
    ancestor_at = np.full((layers, rows), -1, dtype=np.int64)
    ancestor_at[0] = np.where(index.alive, np.arange(rows), -1)
    for row in np.flatnonzero(index.alive):
        p = int(parent[row])
        while p >= 0:
            ancestor_at[int(layer[p]), row] = p
            p = int(parent[p])
    carried = np.empty_like(ancestor_at)
    carried[0] = np.arange(rows)
    for k in range(1, layers):
        carried[k] = np.where(ancestor_at[k] >= 0, ancestor_at[k], carried[k - 1])
    carried.setflags(write=False)
    return DomainTree(
        index=index,
        ancestor_at=ancestor_at,
        carried=carried,
        parent=parent,
        layer=layer,
        child_start=child_start,
        children=by_parent.astype(np.int64),
        order=tuple(order),
        order_parent=tuple(parent[g] for g in order),
        parent_span=tuple(
            (int(parent[g].min()), int(parent[g].max()) + 1) if g.size else (0, 0) for g in order
        ),
        root=root,
        clique_base=clique_base,
        level_base=tuple(level_base),
        layer_vertices=tuple(np.flatnonzero(layer == k).astype(np.int64) for k in range(layers)),
    )

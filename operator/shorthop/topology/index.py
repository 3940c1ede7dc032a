"""The distance index: O(1) hop distance and tier for any GPU pair, equal to the graph's.

Built once per node-set generation and shared read-only (Kueue's static tree); the per-cycle
free-GPU state lives in ``placement.snapshot``. Layout:

- one row per node: ``class_of`` (its :class:`NodeClass`), ``dom[row, level]`` (dense integer id
  of its domain at each network level, ``-1`` below its chain), ``clique_of`` (dense id of its
  multi-node NVLink domain, ``-1`` for none);
- one :class:`NodeClass` per distinct (intra-node model, in an NVLink domain or not), compiled
  from that node's own subgraph (``graph.node_graph``, the same code that builds each node of the
  cluster graph) with NetworkX's Floyd-Warshall (a few dozen vertices): the all-pairs distance
  matrix, which pairs are reachable over NVLink alone, each GPU's distance to the node's network
  endpoint (``up``) and to the NVLink fabric (``fab``);
- ``exit[clique]``: the cheapest way out of a clique through any member's host.

For GPUs ``a`` on node ``A`` and ``b`` on node ``B``::

    A == B:                    class.dist[a, b]
    same clique:               fab[a] + fab[b]               (always < the network path; see links)
    otherwise:                 up'(a) + up'(b) + 2 * H[lca(A, B)]
    up'(a) = min(up[a], fab[a] + exit[clique(A)])    H[k] = host_uplink + sum(uplinks[k+1:])

``lca`` is the deepest level where both nodes' domain ids agree (ids are per whole path, so
agreement at a level implies agreement above it), or ``-1`` for the cluster root. Incremental
updates (:class:`IndexBuilder`) touch only the changed node and, when its NVLink domain changes,
that domain's members; :meth:`IndexBuilder.freeze` copies the arrays into an immutable index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from shorthop.topology import domains, graph
from shorthop.topology.intranode import IntraNodeModel
from shorthop.topology.labels import NodeTopology
from shorthop.topology.levels import TopologyConfig
from shorthop.topology.links import Weights

INF = np.int64(1 << 40)
TIER_SAME_NODE_NVLINK, TIER_SAME_NODE_PCIE, TIER_NVLINK_DOMAIN = 0, 1, 2
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class NodeClass:
    """Distances inside one kind of node. Arrays are read-only and shared by every such node."""

    model: IntraNodeModel
    in_clique: bool
    dist: NDArray[np.int64]  # [g, g]
    nvlink: NDArray[np.bool_]  # [g, g]: the shortest path can use NVLink alone
    up: NDArray[np.int64]  # [g]: to the node's network endpoint
    fab: NDArray[np.int64]  # [g]: to the multi-node NVLink fabric (INF when not in a clique)

    @property
    def gpus(self) -> int:
        return self.model.gpus


def compute_class(model: IntraNodeModel, in_clique: bool, weights: Weights) -> NodeClass:
    """Compile one node class from its graph (``graph.node_graph``: GPUs, NVSwitch, NUMA nodes,
    NICs, host, and the NVLink fabric when the node is in a clique).

    NetworkX's Floyd-Warshall runs twice on that small subgraph (a few dozen vertices): over every
    edge for ``dist``, ``up`` and ``fab``, and over NVLink edges alone to find the GPU pairs whose
    shortest path needs nothing but NVLink.

    Examples
    --------
    >>> from shorthop.topology import intranode, links
    >>> cls = compute_class(intranode.pcie_model(2, (0, 1)), False, links.Weights())
    >>> cls.dist.tolist(), cls.nvlink.tolist()
    ([[0, 80], [80, 0]], [[True, False], [False, True]])
    """
    g = graph.node_graph(model, in_clique, weights)
    gpus = [graph.gpu(graph.CLASS_NODE, i) for i in range(model.gpus)]
    fabric = graph.nvdomain(graph.CLASS_CLIQUE)
    # GPUs first, so the matrices' leading g x g block is the GPU pairs.
    order = gpus + sorted((v for v in g if v[0] != "gpu"), key=repr)
    at = {v: i for i, v in enumerate(order)}
    full = _all_pairs(g, order)
    nvlink = _all_pairs(graph.nvlink_subgraph(g), order)
    n = model.gpus
    dist = full[:n, :n].copy()
    fab = full[:n, at[fabric]].copy() if in_clique else np.full(n, INF, dtype=np.int64)
    arrays = (dist, nvlink[:n, :n] == dist, full[:n, at[graph.host(graph.CLASS_NODE)]].copy(), fab)
    for array in arrays:
        array.setflags(write=False)
    return NodeClass(model, in_clique, *arrays)


def _all_pairs(g: nx.Graph, order: list[graph.Vertex]) -> NDArray[np.int64]:
    """Weighted shortest-path lengths between every pair of ``order`` (``INF``: no path). Weights
    are integers, so the float matrix NetworkX returns converts exactly."""
    lengths = nx.floyd_warshall_numpy(g, nodelist=order, weight="weight")
    out: NDArray[np.int64] = np.where(np.isinf(lengths), INF, lengths).astype(np.int64)
    return out


@dataclass(frozen=True, eq=False)
class TopologyIndex:
    """Immutable O(1) distance and tier lookups over the nodes that have a topology.

    Rows of removed nodes stay (``alive`` False) so that ids are stable across generations.
    Structures derived from one index (``placement.tree``'s domain tree) are kept in it by
    :meth:`derived`, so they live and die with this generation; nothing global holds an index.
    """

    config: TopologyConfig
    generation: int
    names: tuple[str, ...]
    row_of: dict[str, int]
    alive: NDArray[np.bool_]
    class_of: NDArray[np.int32]
    classes: tuple[NodeClass, ...]
    dom: NDArray[np.int32]  # [rows, levels]
    domain_paths: tuple[tuple[domains.Chain, ...], ...]  # per level: id -> path
    clique_of: NDArray[np.int32]
    clique_names: tuple[str, ...]
    clique_exit: NDArray[np.int64]
    topologies: tuple[NodeTopology | None, ...]
    h: NDArray[np.int64] = field(repr=False)  # h[k + 1] = H[k], k = -1 .. levels-1
    # build function -> what it built from this index (see derived); a cache, not state.
    _derived: dict[Callable[[TopologyIndex], object], object] = field(
        default_factory=dict, init=False, repr=False
    )

    # -- derived structures ----------------------------------------------------------------

    def derived(self, build: Callable[[TopologyIndex], T]) -> T:
        """``build(self)``, computed on first use and kept with this index.

        For static structures layered on the index by higher layers (the domain tree), which
        ``topology`` must not import. ``build`` must be pure: a result depends on the index alone.
        Safe under threads: two first calls may both build, and the first result stored wins.
        """
        found = self._derived.get(build)
        if found is None:
            found = self._derived.setdefault(build, build(self))
        return cast(T, found)

    def forget_derived(self) -> None:
        """Drop what :meth:`derived` kept (benchmarks timing a cold start use this)."""
        self._derived.clear()

    # -- node-level ------------------------------------------------------------------------

    @property
    def tiers(self) -> tuple[str, ...]:
        return self.config.tiers

    @property
    def levels(self) -> int:
        return len(self.config.levels)

    def rows(self) -> NDArray[np.intp]:
        """Rows of the nodes present, in row order."""
        return np.flatnonzero(self.alive)

    def node_class(self, row: int) -> NodeClass:
        return self.classes[int(self.class_of[row])]

    def gpus(self, row: int) -> int:
        return self.node_class(row).gpus

    def lca_level(self, row_a: int, row_b: int) -> int:
        """Deepest network level both nodes share (``-1``: only the cluster root)."""
        a, b = self.dom[row_a], self.dom[row_b]
        return int(np.count_nonzero((a == b) & (a >= 0))) - 1

    def up(self, row: int) -> NDArray[np.int64]:
        """Per GPU of ``row``: distance to the network, possibly through an NVLink peer."""
        cls = self.node_class(row)
        clique = int(self.clique_of[row])
        if clique < 0:
            return cls.up
        up: NDArray[np.int64] = np.minimum(cls.up, cls.fab + self.clique_exit[clique])
        return up

    def node_tier(self, row_a: int, row_b: int) -> int:
        """Tier index of any GPU pair between two different nodes."""
        ca = int(self.clique_of[row_a])
        if ca >= 0 and ca == int(self.clique_of[row_b]):
            return TIER_NVLINK_DOMAIN
        return TIER_NVLINK_DOMAIN + self.levels - self.lca_level(row_a, row_b)

    # -- GPU-level -------------------------------------------------------------------------

    def distance(self, row_a: int, gpu_a: int, row_b: int, gpu_b: int) -> int:
        """Hop distance between two GPUs; equals the graph's weighted shortest path.

        Examples
        --------
        >>> from shorthop.topology import fake
        >>> idx = build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)
        >>> idx.distance(0, 0, 0, 1), idx.distance(0, 0, 1, 0)
        (10, 200)

        Notes
        -----
        O(levels).
        """
        if row_a == row_b:
            return int(self.node_class(row_a).dist[gpu_a, gpu_b])
        ca = int(self.clique_of[row_a])
        if ca >= 0 and ca == int(self.clique_of[row_b]):
            return int(self.node_class(row_a).fab[gpu_a] + self.node_class(row_b).fab[gpu_b])
        lca = self.lca_level(row_a, row_b)
        return int(self.up(row_a)[gpu_a] + self.up(row_b)[gpu_b] + 2 * self.h[lca + 1])

    def tier_index(self, row_a: int, gpu_a: int, row_b: int, gpu_b: int) -> int:
        if row_a == row_b:
            nvlink = bool(self.node_class(row_a).nvlink[gpu_a, gpu_b])
            return TIER_SAME_NODE_NVLINK if nvlink else TIER_SAME_NODE_PCIE
        return self.node_tier(row_a, row_b)

    def tier(self, row_a: int, gpu_a: int, row_b: int, gpu_b: int) -> str:
        """Tier name of a GPU pair (contract names, see ``levels``)."""
        return self.tiers[self.tier_index(row_a, gpu_a, row_b, gpu_b)]

    def cross_cost(
        self, row_a: int, gpus_a: NDArray[np.intp], row_b: int, gpus_b: NDArray[np.intp]
    ) -> int:
        """Sum of distances over all pairs between GPU sets on two different nodes, O(|a|+|b|)."""
        ca = int(self.clique_of[row_a])
        if ca >= 0 and ca == int(self.clique_of[row_b]):
            fa, fb = self.node_class(row_a).fab[gpus_a], self.node_class(row_b).fab[gpus_b]
            return int(fa.sum() * len(gpus_b) + fb.sum() * len(gpus_a))
        ua, ub = self.up(row_a)[gpus_a], self.up(row_b)[gpus_b]
        lca = self.lca_level(row_a, row_b)
        pairs = len(gpus_a) * len(gpus_b)
        return int(ua.sum() * len(gpus_b) + ub.sum() * len(gpus_a) + 2 * self.h[lca + 1] * pairs)


class IndexBuilder:
    """Mutable builder with incremental updates; :meth:`freeze` hands out immutable indexes.

    Owned by one thread (the controller's watch loop or a test); indexes it returns are shared.
    """

    def __init__(self, config: TopologyConfig) -> None:
        self.config = config
        levels = len(config.levels)
        self._uplinks = config.weights.uplinks_for(levels)
        self._h = np.array(
            [config.weights.host_uplink + sum(self._uplinks[k + 1 :]) for k in range(-1, levels)],
            dtype=np.int64,
        )
        self.generation = 0
        self._frozen: TopologyIndex | None = None
        self._names: list[str] = []
        self._row_of: dict[str, int] = {}
        self._free: list[int] = []
        self._topo: list[NodeTopology | None] = []
        self._class_of = np.zeros(16, dtype=np.int32)
        self._dom = np.full((16, levels), -1, dtype=np.int32)
        self._clique_of = np.full(16, -1, dtype=np.int32)
        self._classes: list[NodeClass] = []
        self._class_ids: dict[tuple[IntraNodeModel, bool], int] = {}
        self._domain_ids: list[dict[domains.Chain, int]] = [{} for _ in range(levels)]
        self._domain_paths: list[list[domains.Chain]] = [[] for _ in range(levels)]
        self._clique_ids: dict[str, int] = {}
        self._clique_names: list[str] = []
        self._members: list[set[int]] = []

    def node_names(self) -> set[str]:
        return set(self._row_of)

    def row(self, name: str) -> int | None:
        """The node's row (stable while the node exists), or None."""
        return self._row_of.get(name)

    @property
    def size(self) -> int:
        """Rows allocated so far (live and freed)."""
        return len(self._names)

    # -- updates ---------------------------------------------------------------------------

    def upsert(self, topo: NodeTopology) -> None:
        """Add a node or replace its topology (relabel); O(1) plus its clique's members."""
        row = self._row_of.get(topo.name)
        touched: set[int] = set()
        if row is None:
            row = self._free.pop() if self._free else self._append_row()
            self._row_of[topo.name] = row
            self._names[row] = topo.name
        else:
            old = int(self._clique_of[row])
            if old >= 0:
                self._members[old].discard(row)
                touched.add(old)
        self._topo[row] = topo
        self._class_of[row] = self._class_id(topo.model, topo.clique is not None)
        if topo.clique is None:
            self._clique_of[row] = -1
            self._set_chain(row, domains.trim(topo.chain))
        else:
            clique = self._clique_id(topo.clique)
            self._clique_of[row] = clique
            self._members[clique].add(row)
            touched.add(clique)
        for clique in touched:
            self._refresh_clique(clique)
        self.generation += 1

    def remove(self, name: str) -> None:
        """Forget a node (deleted, or its labels no longer describe GPUs)."""
        row = self._row_of.pop(name, None)
        if row is None:
            return
        clique = int(self._clique_of[row])
        self._topo[row] = None
        self._names[row] = ""
        self._clique_of[row] = -1
        self._dom[row] = -1
        self._free.append(row)
        if clique >= 0:
            self._members[clique].discard(row)
            self._refresh_clique(clique)
        self.generation += 1

    def freeze(self) -> TopologyIndex:
        """An immutable snapshot of the current state (array copies; O(rows)); the same object
        again while nothing changed, so what it derived (the domain tree) is reused."""
        if self._frozen is not None and self._frozen.generation == self.generation:
            return self._frozen
        n = len(self._names)
        alive = np.array([t is not None for t in self._topo], dtype=np.bool_)
        exits = np.full(len(self._clique_names), INF, dtype=np.int64)
        for clique, members in enumerate(self._members):
            for row in members:
                cls = self._classes[int(self._class_of[row])]
                exits[clique] = min(exits[clique], int((cls.fab + cls.up).min()))
        arrays = (
            alive,
            self._class_of[:n].copy(),
            self._dom[:n].copy(),
            self._clique_of[:n].copy(),
            exits,
        )
        for array in arrays:
            array.setflags(write=False)
        self._frozen = TopologyIndex(
            config=self.config,
            generation=self.generation,
            names=tuple(self._names),
            row_of=dict(self._row_of),
            alive=arrays[0],
            class_of=arrays[1],
            classes=tuple(self._classes),
            dom=arrays[2],
            domain_paths=tuple(tuple(paths) for paths in self._domain_paths),
            clique_of=arrays[3],
            clique_names=tuple(self._clique_names),
            clique_exit=arrays[4],
            topologies=tuple(self._topo),
            h=self._h,
        )
        return self._frozen

    # -- internals -------------------------------------------------------------------------

    def _append_row(self) -> int:
        row = len(self._names)
        if row >= len(self._class_of):
            grow = len(self._class_of)
            self._class_of = np.concatenate([self._class_of, np.zeros(grow, dtype=np.int32)])
            self._dom = np.concatenate(
                [self._dom, np.full((grow, self._dom.shape[1]), -1, dtype=np.int32)]
            )
            self._clique_of = np.concatenate([self._clique_of, np.full(grow, -1, dtype=np.int32)])
        self._names.append("")
        self._topo.append(None)
        return row

    def _class_id(self, model: IntraNodeModel, in_clique: bool) -> int:
        key = (model, in_clique)
        found = self._class_ids.get(key)
        if found is None:
            found = len(self._classes)
            self._classes.append(compute_class(model, in_clique, self.config.weights))
            self._class_ids[key] = found
        return found

    def _clique_id(self, name: str) -> int:
        found = self._clique_ids.get(name)
        if found is None:
            found = len(self._clique_names)
            self._clique_ids[name] = found
            self._clique_names.append(name)
            self._members.append(set())
        return found

    def _refresh_clique(self, clique: int) -> None:
        members = sorted(self._members[clique])
        topos = [t for t in (self._topo[row] for row in members) if t is not None]
        chains = [domains.trim(t.chain) for t in topos]
        shared = domains.common_prefix(chains)
        for row in members:
            self._set_chain(row, shared)

    def _set_chain(self, row: int, chain: domains.Chain) -> None:
        self._dom[row] = -1
        for level in range(len(chain)):
            path = chain[: level + 1]
            ids = self._domain_ids[level]
            found = ids.get(path)
            if found is None:
                found = len(self._domain_paths[level])
                ids[path] = found
                self._domain_paths[level].append(path)
            self._dom[row, level] = found


def build_index(topologies: Iterable[NodeTopology], config: TopologyConfig) -> TopologyIndex:
    """Build an index from scratch (nodes in the order given)."""
    builder = IndexBuilder(config)
    for topo in topologies:
        builder.upsert(topo)
    return builder.freeze()

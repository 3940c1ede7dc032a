"""Topology benchmarks (issue B): what it costs to turn node labels into distances.

Measured per cluster size (mixed NVL72 racks and HGX units, see ``common.mixed_shape``):

- **label parsing**: ``labels.parse_node`` on every Node (``fake.topologies``);
- **index build**: ``index.build_index`` over the parsed topologies (target: < 2 s at 10,000
  nodes), reported apart from parsing;
- **graph build**: ``graph.build_graph``, the faithful NetworkX model, at the same sizes;
- **incremental update**: ``IndexBuilder.upsert`` of one relabelled node (an HGX node; an NVL72
  tray, which refreshes its NVLink domain's members), ``remove`` + re-add, and ``freeze`` (the
  immutable copy the next planning cycle uses), against a cold build of the whole index;
- **distance lookups per second**: ``TopologyIndex.distance`` (scalar), a numpy-vectorised
  equivalent defined here (bench only), and ``networkx.shortest_path_length`` with weights
  (Dijkstra that stops at the target) on the graph, for uniformly random GPU pairs and for pairs
  inside one rack. Every lookup method is checked against the others on the sampled pairs.

Times are medians of several repetitions; each repetition starts from scratch.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import networkx as nx
import numpy as np
from numpy.typing import NDArray
from shorthop.topology import fake, graph, index, labels

from bench import common

T = TypeVar("T")
Log = Callable[[str], None]


class VectorDistance:
    """``TopologyIndex.distance`` for arrays of GPU pairs at once (bench only).

    Precomputes per row the (clique-aware) uplink distance ``up'`` and the fabric distance of each
    GPU, and stacks the class distance matrices, so that a batch of pairs costs a few numpy
    gathers. Same formula as the index (see ``topology.index``).
    """

    def __init__(self, idx: index.TopologyIndex) -> None:
        self.idx = idx
        rows = len(idx.names)
        width = max((c.gpus for c in idx.classes), default=1)
        self.up = np.zeros((rows, width), dtype=np.int64)
        self.fab = np.zeros((rows, width), dtype=np.int64)
        for row in idx.rows().tolist():
            cls = idx.node_class(row)
            self.up[row, : cls.gpus] = idx.up(row)
            self.fab[row, : cls.gpus] = cls.fab
        self.dist = np.zeros((len(idx.classes), width, width), dtype=np.int64)
        for c, cls in enumerate(idx.classes):
            self.dist[c, : cls.gpus, : cls.gpus] = cls.dist

    def __call__(
        self,
        row_a: NDArray[np.intp],
        gpu_a: NDArray[np.intp],
        row_b: NDArray[np.intp],
        gpu_b: NDArray[np.intp],
    ) -> NDArray[np.int64]:
        idx = self.idx
        dom_a, dom_b = idx.dom[row_a], idx.dom[row_b]
        lca = np.count_nonzero((dom_a == dom_b) & (dom_a >= 0), axis=1) - 1
        out: NDArray[np.int64] = self.up[row_a, gpu_a] + self.up[row_b, gpu_b] + 2 * idx.h[lca + 1]
        clique_a = idx.clique_of[row_a]
        same_clique = (clique_a >= 0) & (clique_a == idx.clique_of[row_b])
        out = np.where(same_clique, self.fab[row_a, gpu_a] + self.fab[row_b, gpu_b], out)
        same_node = row_a == row_b
        inside = self.dist[idx.class_of[row_a], gpu_a, gpu_b]
        return np.where(same_node, inside, out)


@dataclass
class Lookups:
    """Distance lookups for one pair mix."""

    mix: str
    scalar_per_s: float
    vector_per_s: float
    networkx_per_s: float
    networkx_pairs: int
    agree: bool  # scalar == vectorised on every pair, and == NetworkX on the pairs it timed

    @property
    def ratio(self) -> float:
        return self.scalar_per_s / self.networkx_per_s


@dataclass
class TopologyResult:
    size: int
    nodes: int
    gpus: int
    parse_s: float
    index_s: float
    graph_s: float
    graph_vertices: int
    graph_edges: int
    updates: dict[str, float] = field(default_factory=dict)  # operation -> seconds
    lookups: list[Lookups] = field(default_factory=list)

    @property
    def labels_to_index_s(self) -> float:
        return self.parse_s + self.index_s


def _median_time(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _per_op(fn: Callable[[], object], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops


def _incremental(topos: list[labels.NodeTopology], cold_s: float, ops: int) -> dict[str, float]:
    builder = index.IndexBuilder(common.CONFIG)
    for t in topos:
        builder.upsert(t)
    hgx = next(t for t in topos if t.clique is None)
    tray = next(t for t in topos if t.clique is not None)
    # Relabel: the HGX node moves to another rack and back; the tray changes a label.
    other = tuple(v if i < len(hgx.chain) - 1 else f"{v}-moved" for i, v in enumerate(hgx.chain))
    hgx_versions = [dataclasses.replace(hgx, chain=other), hgx]
    tray_versions = [dataclasses.replace(tray, memory_mib=1), tray]
    counter = iter(range(1 << 30))

    def upsert_hgx() -> None:
        builder.upsert(hgx_versions[next(counter) % 2])

    def upsert_tray() -> None:
        builder.upsert(tray_versions[next(counter) % 2])

    def remove_and_add() -> None:
        builder.remove(hgx.name)
        builder.upsert(hgx)

    out = {
        "upsert (relabel one HGX node)": _per_op(upsert_hgx, ops),
        "upsert (relabel one NVL72 tray; refreshes its 18-tray NVLink domain)": _per_op(
            upsert_tray, ops
        ),
        "remove + re-add one node": _per_op(remove_and_add, ops),
        "freeze (immutable index for the next cycle)": _per_op(builder.freeze, max(3, ops // 20)),
    }
    out["upsert + freeze (sum of the two: one node changed, ready to plan)"] = (
        out["upsert (relabel one HGX node)"] + out["freeze (immutable index for the next cycle)"]
    )
    out["cold build (all nodes, for comparison)"] = cold_s
    return out


def _sample_pairs(
    idx: index.TopologyIndex, count: int, rng: random.Random, *, near: bool
) -> tuple[NDArray[np.intp], ...]:
    rows = idx.rows().tolist()
    gpus = [idx.gpus(r) for r in rows]
    by_rack: dict[int, list[int]] = {}
    for r in rows:
        by_rack.setdefault(int(idx.dom[r, -1]), []).append(r)
    ra, ga, rb, gb = [], [], [], []
    weights = np.asarray(gpus, dtype=np.float64)
    weights /= weights.sum()
    np_rng = np.random.default_rng(rng.getrandbits(32))
    firsts = np_rng.choice(len(rows), size=count, p=weights)
    seconds = np_rng.choice(len(rows), size=count, p=weights)
    for i, j in zip(firsts.tolist(), seconds.tolist(), strict=True):
        a = rows[i]
        b = rng.choice(by_rack[int(idx.dom[a, -1])]) if near else rows[j]
        ra.append(a)
        rb.append(b)
        ga.append(rng.randrange(idx.gpus(a)))
        gb.append(rng.randrange(idx.gpus(b)))
    return tuple(np.asarray(x, dtype=np.intp) for x in (ra, ga, rb, gb))


def _lookups(
    idx: index.TopologyIndex,
    g: nx.Graph,
    *,
    mix: str,
    scalar_pairs: int,
    nx_pairs: int,
    seed: int,
) -> Lookups:
    rng = random.Random(seed)
    ra, ga, rb, gb = _sample_pairs(idx, scalar_pairs, rng, near=mix != "uniform")
    pairs = list(zip(ra.tolist(), ga.tolist(), rb.tolist(), gb.tolist(), strict=True))
    start = time.perf_counter()
    scalar = [idx.distance(a, i, b, j) for a, i, b, j in pairs]
    scalar_s = time.perf_counter() - start
    vec = VectorDistance(idx)
    vec(ra[:10], ga[:10], rb[:10], gb[:10])  # warm-up
    vector_s, vector = _median_time(lambda: vec(ra, ga, rb, gb), 5)
    agree = bool(np.array_equal(np.asarray(scalar, dtype=np.int64), vector))
    names = idx.names
    start = time.perf_counter()
    via_nx = [
        nx.shortest_path_length(g, graph.gpu(names[a], i), graph.gpu(names[b], j), weight="weight")
        for a, i, b, j in pairs[:nx_pairs]
    ]
    nx_s = time.perf_counter() - start
    agree = agree and via_nx == scalar[:nx_pairs]
    return Lookups(
        mix=mix,
        scalar_per_s=len(pairs) / scalar_s,
        vector_per_s=len(pairs) / vector_s,
        networkx_per_s=nx_pairs / nx_s,
        networkx_pairs=nx_pairs,
        agree=agree,
    )


def run(sizes: tuple[int, ...], *, quick: bool, log: Log = print) -> list[TopologyResult]:
    results = []
    for size in sizes:
        nodes = fake.nodes(common.mixed_shape(size), common.CONFIG)
        repeats = 3 if quick or size >= 5000 else 5
        parse_s, topos = _median_time(partial(fake.topologies, nodes, common.CONFIG), repeats)
        index_s, idx = _median_time(partial(index.build_index, topos, common.CONFIG), repeats)
        graph_s, g = _median_time(partial(graph.build_graph, topos, common.CONFIG), repeats)
        result = TopologyResult(
            size=size,
            nodes=len(nodes),
            gpus=sum(t.gpus for t in topos),
            parse_s=parse_s,
            index_s=index_s,
            graph_s=graph_s,
            graph_vertices=g.number_of_nodes(),
            graph_edges=g.number_of_edges(),
        )
        result.updates = _incremental(topos, index_s, 50 if quick else 400)
        # NetworkX's Dijkstra on far pairs explores most of the graph: fewer pairs on big graphs.
        far_pairs = 5 if quick else max(8, min(200, 200_000 // size))
        for mix, nx_pairs in (("uniform", far_pairs), ("same rack", 5 * far_pairs)):
            result.lookups.append(
                _lookups(
                    idx,
                    g,
                    mix=mix,
                    scalar_pairs=2_000 if quick else 100_000,
                    nx_pairs=nx_pairs,
                    seed=size,
                )
            )
        log(f"topology {size}: parse {parse_s:.3f}s index {index_s:.3f}s graph {graph_s:.3f}s")
        results.append(result)
    return results

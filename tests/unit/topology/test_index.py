"""The O(1) index agrees exactly with NetworkX shortest paths, and incremental updates with a
cold build (property tests: a fixed sample under the suite's ci profile, fresh ones under
``make fuzz``)."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.topology import graph, intranode, levels
from shorthop.topology.index import IndexBuilder, TopologyIndex, build_index
from shorthop.topology.labels import NodeTopology

from tests import builders
from tests.hypothesis_profiles import examples


def _graph_tier(
    g: nx.Graph, nv: nx.Graph, cfg: levels.TopologyConfig, a: tuple, b: tuple, *, dist: int
) -> str:
    """The tier of a GPU pair read off the graph alone (independent of the index)."""
    if a[1] == b[1]:
        try:
            nv_dist = nx.dijkstra_path_length(nv, a, b)
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return levels.SAME_NODE_PCIE
        return levels.SAME_NODE_NVLINK if nv_dist == dist else levels.SAME_NODE_PCIE
    fabrics_a = {v for v in g[a] if v[0] == "nvdomain"}
    if fabrics_a and fabrics_a == {v for v in g[b] if v[0] == "nvdomain"}:
        return levels.NVLINK_DOMAIN
    path = nx.dijkstra_path(g, a, b)
    if ("cluster",) in path:
        return levels.CLUSTER
    top = min(v[1] for v in path if v[0] == "switch")
    return cfg.levels[top].name


def _assert_index_matches_graph(
    cfg: levels.TopologyConfig, nodes: list[NodeTopology], idx: TopologyIndex
) -> None:
    g = graph.build_graph(nodes, cfg)
    nv = graph.nvlink_subgraph(g)
    gpus = [(idx.row_of[t.name], t.name, i) for t in nodes for i in range(t.gpus)]
    for ra, na, ia in gpus:
        lengths = nx.single_source_dijkstra_path_length(g, graph.gpu(na, ia))
        for rb, nb, ib in gpus:
            expected = lengths[graph.gpu(nb, ib)]
            assert idx.distance(ra, ia, rb, ib) == expected, (na, ia, nb, ib)
            if (ra, ia) != (rb, ib):
                tier = _graph_tier(g, nv, cfg, graph.gpu(na, ia), graph.gpu(nb, ib), dist=expected)
                assert idx.tier(ra, ia, rb, ib) == tier, (na, ia, nb, ib)


@settings(max_examples=examples(150))
@given(builders.clusters())
def test_distance_and_tier_equal_networkx_for_every_gpu_pair(cluster: tuple) -> None:
    cfg, nodes = cluster
    _assert_index_matches_graph(cfg, nodes, build_index(nodes, cfg))


@settings(max_examples=examples(80))
@given(builders.clusters(), st.data())
def test_incremental_updates_equal_a_cold_build(cluster: tuple, data: st.DataObject) -> None:
    cfg, nodes = cluster
    builder = IndexBuilder(cfg)
    current: dict[str, NodeTopology] = {}
    # Random history: adds, relabels (new clique / chain / model) and removals, then the final set.
    for _ in range(data.draw(st.integers(0, 12))):
        topo = data.draw(st.sampled_from(nodes))
        action = data.draw(st.sampled_from(["add", "relabel", "remove"]))
        if action == "remove":
            builder.remove(topo.name)
            current.pop(topo.name, None)
        else:
            if action == "relabel":
                topo = NodeTopology(
                    topo.name, "test", topo.gpus, topo.model,
                    clique=data.draw(st.sampled_from([None, "k1", "k2"])),
                    chain=tuple(data.draw(st.sampled_from([None, "a", "c"])) for _ in topo.chain),
                )  # fmt: skip
            builder.upsert(topo)
            current[topo.name] = topo
    for topo in nodes:
        builder.upsert(topo)
    incremental = builder.freeze()
    cold = build_index(nodes, cfg)
    for a in nodes:
        for b in nodes:
            for i in range(a.gpus):
                for j in range(b.gpus):
                    ra, rb = incremental.row_of[a.name], incremental.row_of[b.name]
                    ca, cb = cold.row_of[a.name], cold.row_of[b.name]
                    assert incremental.distance(ra, i, rb, j) == cold.distance(ca, i, cb, j)
                    assert incremental.tier(ra, i, rb, j) == cold.tier(ca, i, cb, j)
    _assert_index_matches_graph(cfg, nodes, incremental)


def test_documented_default_distances() -> None:
    cfg = builders.config(3)
    nodes = [
        builders.topology("hgx-a", chain=("z1", "b1", "r1")),
        builders.topology("hgx-b", chain=("z1", "b1", "r1")),
        builders.topology("hgx-c", chain=("z1", "b1", "r2")),
        builders.topology("hgx-d", chain=("z1", "b2", "r3")),
        builders.topology("hgx-e", chain=("z2", "b3", "r4")),
        builders.topology(
            "tray-1", intranode.nvl_tray_model(4), clique="k", chain=("z1", "b1", "r5")
        ),
        builders.topology(
            "tray-2", intranode.nvl_tray_model(4), clique="k", chain=("z1", "b1", "r5")
        ),
        builders.topology("l40s", intranode.pcie_model(4), chain=("z1", "b1", "r1")),
    ]
    idx = build_index(nodes, cfg)
    row = idx.row_of
    cases = [
        (("hgx-a", 0), ("hgx-a", 7), 10, "same-node-nvlink"),
        (("tray-1", 0), ("tray-2", 3), 10, "nvlink-domain"),
        (("tray-1", 0), ("tray-1", 1), 10, "same-node-nvlink"),
        (("l40s", 0), ("l40s", 1), 80, "same-node-pcie"),
        (("hgx-a", 0), ("hgx-b", 0), 200, "rack"),
        (("hgx-a", 0), ("hgx-c", 0), 400, "block"),
        (("hgx-a", 0), ("hgx-d", 0), 800, "zone"),
        (("hgx-a", 0), ("hgx-e", 0), 1600, "cluster"),
    ]
    for (na, ia), (nb, ib), dist, tier in cases:
        assert idx.distance(row[na], ia, row[nb], ib) == dist, (na, nb)
        assert idx.tier(row[na], ia, row[nb], ib) == tier, (na, nb)


def test_nvlink_domain_members_that_disagree_share_only_their_common_chain() -> None:
    cfg = builders.config(3)
    nodes = [
        builders.topology("t1", intranode.nvl_tray_model(4), clique="k", chain=("z1", "b1", "r1")),
        builders.topology("t2", intranode.nvl_tray_model(4), clique="k", chain=("z1", "b1", "r2")),
        builders.topology("x", chain=("z1", "b1", "r1")),
    ]
    idx = build_index(nodes, cfg)
    # t1 says rack r1 like x, but its domain disagrees about the rack: only the block is shared.
    assert idx.tier(idx.row_of["t1"], 0, idx.row_of["x"], 0) == "block"


def test_missing_finest_label_attaches_to_the_parent_as_a_private_leaf() -> None:
    cfg = builders.config(3)
    nodes = [
        builders.topology("a", chain=("z1", "b1", None)),
        builders.topology("b", chain=("z1", "b1", None)),
        builders.topology("c", chain=("z1", "b1", "r1")),
    ]
    idx = build_index(nodes, cfg)
    assert idx.tier(idx.row_of["a"], 0, idx.row_of["b"], 0) == "block"
    assert idx.distance(idx.row_of["a"], 0, idx.row_of["b"], 0) == idx.distance(
        idx.row_of["a"], 0, idx.row_of["c"], 0
    )


def test_cross_cost_equals_the_sum_of_pair_distances() -> None:
    import numpy as np

    cfg = builders.config(3)
    nodes = [
        builders.topology("a", chain=("z1", "b1", "r1")),
        builders.topology("b", chain=("z1", "b2", "r2")),
        builders.topology("t1", intranode.nvl_tray_model(4), clique="k"),
        builders.topology("t2", intranode.nvl_tray_model(4), clique="k"),
    ]
    idx = build_index(nodes, cfg)
    for x, y in [("a", "b"), ("t1", "t2"), ("a", "t1")]:
        ra, rb = idx.row_of[x], idx.row_of[y]
        ga, gb = np.array([0, 2, 3]), np.array([1, 3])
        expected = sum(idx.distance(ra, i, rb, j) for i in ga for j in gb)
        assert idx.cross_cost(ra, ga, rb, gb) == expected

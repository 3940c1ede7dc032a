"""The domain tree is kept with its index: built once per index, shared by its snapshots, and
gone when the index goes (nothing global holds an index generation)."""

from __future__ import annotations

import gc
import weakref

from shorthop.placement import snapshot
from shorthop.placement import tree as domain_tree
from shorthop.topology import fake
from shorthop.topology.index import IndexBuilder, TopologyIndex

from tests import builders


def test_one_tree_per_index_reused_until_the_index_changes() -> None:
    builder = IndexBuilder(fake.CONFIG)
    topologies = fake.topologies(fake.hgx_cluster(nodes=3))
    for topo in topologies:
        builder.upsert(topo)
    first = builder.freeze()
    assert builder.freeze() is first  # nothing changed: the same generation
    assert domain_tree.tree(builder.freeze()) is domain_tree.tree(first)
    builder.remove(topologies[0].name)
    changed = builder.freeze()
    assert changed is not first
    assert domain_tree.tree(changed) is not domain_tree.tree(first)
    assert domain_tree.tree(changed).index is changed


def test_the_tree_goes_with_its_index() -> None:
    snap = snapshot.build(fake.hgx_cluster(nodes=2), [], fake.CONFIG)
    index = weakref.ref(snap.index)
    tree = weakref.ref(domain_tree.tree(snap.index))
    del snap
    gc.collect()
    assert index() is None
    assert tree() is None


def test_forgetting_rebuilds_an_equal_tree() -> None:
    snap = snapshot.build(fake.hgx_cluster(nodes=2), [], fake.CONFIG)
    before = domain_tree.tree(snap.index)
    snap.index.forget_derived()
    after = domain_tree.tree(snap.index)
    assert after is not before
    assert after.parent.tolist() == before.parent.tolist()
    assert after.layer.tolist() == before.layer.tolist()


def test_every_vertex_is_named_by_what_it_is() -> None:
    """Names are what reasons and status show: the node, its NVLink domain, each network domain
    by level and path (a missing label shown as ``?``), and the cluster."""
    nodes = [
        builders.node_object("a", "tray", 4, clique="k1", block="b1", rack="r1"),
        builders.node_object("b", "hgx", 8, block="b2", rack="r2"),
    ]
    no_rack = builders.node_object("c", "hgx", 8, block="b2")
    del no_rack["metadata"]["labels"]["topology.shorthop.io/rack"]
    no_block = builders.node_object("d", "hgx", 8, rack="r3")
    del no_block["metadata"]["labels"]["topology.shorthop.io/block"]
    nodes += [no_rack, no_block]
    index = snapshot.build(nodes, [], fake.CONFIG).index
    tree = domain_tree.tree(index)
    row = {name: index.row_of[name] for name in ("a", "b", "c", "d")}

    def path(name: str) -> list[str]:
        return [tree.name(v) for v in [row[name], *tree.ancestors(row[name])]]

    assert path("a") == [
        "a",
        "nvlink-domain k1",
        "rack z1/b1/r1",
        "block z1/b1",
        "zone z1",
        "cluster",
    ]
    assert path("b") == ["b", "rack z1/b2/r2", "block z1/b2", "zone z1", "cluster"]
    assert path("c") == ["c", "block z1/b2", "zone z1", "cluster"]
    assert path("d")[:2] == ["d", "rack z1/?/r3"]
    names = [tree.name(v) for v in range(tree.vertices) if tree.parent[v] >= 0 or v == tree.root]
    assert len(names) == len(set(names)), "two vertices share a name"


def _trays_and_hgx() -> TopologyIndex:
    """Five trays in two NVLink cliques over three racks, and three HGX nodes in two blocks."""
    nodes = [
        builders.node_object(f"t{i}", "tray", 4, clique=f"k{i % 2}", rack=f"r{i % 3}")
        for i in range(5)
    ] + [builders.node_object(f"h{i}", "hgx", 8, block=f"b{i % 2}") for i in range(3)]
    return snapshot.build(nodes, [], fake.CONFIG).index


def test_rows_under_a_vertex_are_exactly_the_rows_below_it() -> None:
    """For every vertex (node, NVLink domain, network domain, root): the rows whose ancestors
    include it, or itself when it is a row."""
    index = _trays_and_hgx()
    tree = domain_tree.tree(index)
    rows = range(len(index.names))
    for v in range(tree.vertices):
        expected = {v} if v in rows else {r for r in rows if v in tree.ancestors(r)}
        assert set(tree.rows_under(v)) == expected, tree.name(v)


def test_carried_and_layer_vertices_follow_the_tree() -> None:
    """``carried``: a row's ancestor at each layer, or where it has none there (a node outside
    any NVLink domain), its holder one layer down; ``layer_vertices``: each layer's vertices."""
    index = _trays_and_hgx()
    tree = domain_tree.tree(index)
    layers = tree.ancestor_at.shape[0]
    for row in range(len(index.names)):
        holder = row
        for layer in range(layers):
            if tree.ancestor_at[layer, row] >= 0:
                holder = int(tree.ancestor_at[layer, row])
            assert tree.carried[layer, row] == holder, (index.names[row], layer)
        assert tree.carried[layers - 1, row] == tree.root
    for layer in range(layers):
        expected = [v for v in range(tree.vertices) if tree.layer[v] == layer]
        assert tree.layer_vertices[layer].tolist() == expected

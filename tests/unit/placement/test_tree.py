"""The domain tree is kept with its index: built once per index, shared by its snapshots, and
gone when the index goes (nothing global holds an index generation)."""

from __future__ import annotations

import gc
import weakref

from shorthop.placement import snapshot
from shorthop.placement import tree as domain_tree
from shorthop.topology import fake
from shorthop.topology.index import IndexBuilder


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

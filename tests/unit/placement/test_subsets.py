"""The per-node subset tables pick the cheapest ``k`` free GPUs (ties: the highest mask), as a
brute force over every subset finds them; nodes too large for a table get a valid greedy pick."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import snapshot, subsets
from shorthop.topology import fake
from shorthop.topology.index import NodeClass

from tests import builders
from tests.hypothesis_profiles import examples


def node_class(kind: str, gpus: int) -> NodeClass:
    snap = snapshot.build([builders.node_object("n", kind, gpus)], [], fake.CONFIG)
    return snap.index.node_class(0)


def internal(cls: NodeClass, gpus: tuple[int, ...]) -> int:
    return sum(int(cls.dist[a, b]) for a, b in itertools.combinations(gpus, 2))


@st.composite
def tables(draw: Any, small: bool) -> tuple[NodeClass, int, int]:
    kind = draw(st.sampled_from(["hgx", "pcie"] if not small else ["hgx", "pcie", "tray"]))
    if small:
        gpus = draw(st.integers(1, 4 if kind == "tray" else 8))
    else:
        gpus = draw(st.integers(subsets.EXACT_LIMIT + 1, 16))
    free = draw(st.integers(0, (1 << gpus) - 1))
    k = draw(st.integers(0, gpus + 1))
    return node_class(kind, gpus), free, k


@settings(max_examples=examples(200))
@given(tables(small=True))
def test_a_table_picks_the_cheapest_free_subset_highest_mask_first(case: tuple) -> None:
    """Ties go to the highest GPUs: kube-scheduler's DRA allocator takes the lowest free ones."""
    cls, free, k = case
    table = subsets.table(cls)
    assert table.exact
    free_gpus = [g for g in range(cls.gpus) if free >> g & 1]
    candidates = sorted(
        (internal(cls, chosen), -sum(1 << g for g in chosen))
        for chosen in itertools.combinations(free_gpus, k)
    )
    picked = table.pick(free, k)
    if not candidates:
        assert picked is None
    else:
        cost, negated = candidates[0]
        assert picked == (-negated, cost)


@settings(max_examples=examples(40))
@given(tables(small=False))
def test_a_node_without_a_table_gets_k_of_its_free_gpus_at_their_cost(case: tuple) -> None:
    cls, free, k = case
    table = subsets.table(cls)
    assert not table.exact
    picked = table.pick(free, k)
    free_count = free.bit_count()
    if k > free_count:
        assert picked is None
        return
    assert picked is not None
    mask, cost = picked
    assert mask & ~free == 0, "a GPU that is not free was picked"
    assert mask.bit_count() == k
    assert cost == internal(cls, tuple(g for g in range(cls.gpus) if mask >> g & 1))

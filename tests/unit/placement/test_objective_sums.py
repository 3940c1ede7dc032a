"""The objective's fast sums equal the pair-by-pair definition: intra cost, traffic cost, tier
counts and a replica's widest tier, computed per GPU pair with ``TopologyIndex.distance`` and
``tier_index`` (which tests/unit/topology/test_index.py checks against NetworkX shortest paths).

Found by mutation testing (docs/testing.md): ``between_cost`` starting from 1, or
``tier_counts`` reading another node's NVLink matrix, survived the whole placement suite, since
the solver and the exact optimum are judged by the same functions."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import objective, pairsums, snapshot
from shorthop.placement.plan import Assignment, PodKey
from shorthop.topology import fake
from shorthop.topology.index import TopologyIndex, build_index

from tests import builders
from tests.hypothesis_profiles import examples

Gpu = tuple[int, int]  # (row, gpu)


@st.composite
def index_and_sets(draw: Any) -> tuple[TopologyIndex, list[Gpu], list[Gpu]]:
    """An index of a few mixed nodes and two disjoint sets of its GPUs (each possibly spread
    over several nodes)."""
    nodes, _ = draw(builders.small_clusters(max_nodes=4, max_gpus=8))
    index = snapshot.build(nodes, [], fake.CONFIG).index
    every = [(row, g) for row in range(len(index.names)) for g in range(index.gpus(row))]
    picked = draw(st.lists(st.sampled_from(every), unique=True, min_size=1, max_size=10))
    cut = draw(st.integers(0, len(picked)))
    return index, picked[:cut], picked[cut:]


def as_set(gpus: list[Gpu]) -> objective.GpuSet:
    return objective.gpu_set((row, [g]) for row, g in gpus)


def pair_sum(index: TopologyIndex, pairs: Any) -> int:
    return sum(index.distance(ra, ga, rb, gb) for (ra, ga), (rb, gb) in pairs)


@settings(max_examples=examples(150))
@given(index_and_sets())
def test_intra_cost_is_the_sum_over_every_unordered_pair(case: tuple) -> None:
    index, s, t = case
    for gpus in (s, t, s + t):
        expected = pair_sum(index, itertools.combinations(gpus, 2))
        assert objective.intra_cost(index, as_set(gpus)) == expected


@settings(max_examples=examples(150))
@given(index_and_sets())
def test_between_cost_is_the_sum_over_every_pair_across(case: tuple) -> None:
    index, s, t = case
    expected = pair_sum(index, itertools.product(s, t))
    assert objective.between_cost(index, as_set(s), as_set(t)) == expected
    assert objective.between_cost(index, as_set(t), as_set(s)) == expected


@settings(max_examples=examples(150))
@given(index_and_sets())
def test_tier_counts_count_every_pair_across_in_its_tier(case: tuple) -> None:
    index, s, t = case
    expected = Counter(
        index.tier_index(ra, ga, rb, gb) for (ra, ga), (rb, gb) in itertools.product(s, t)
    )
    counts: dict[int, int] = {}
    objective.tier_counts(index, as_set(s), as_set(t), counts)
    assert {tier: n for tier, n in counts.items() if n} == dict(expected)
    # Counts add up over calls (evaluate sums every traffic pair into one dict).
    objective.tier_counts(index, as_set(s), as_set(t), counts)
    assert {tier: n for tier, n in counts.items() if n} == {k: 2 * v for k, v in expected.items()}


@settings(max_examples=examples(150))
@given(index_and_sets())
def test_widest_tier_is_the_worst_pair_of_the_replica(case: tuple) -> None:
    index, s, t = case
    gpus = s + t
    pairs = list(itertools.combinations(gpus, 2))
    expected = max((index.tier_index(ra, ga, rb, gb) for (ra, ga), (rb, gb) in pairs), default=0)
    assert objective.widest_tier(index, as_set(gpus)) == expected


def test_internal_uses_the_subset_table_and_the_matrix_alike() -> None:
    """A node of 8 GPUs has an exact subset table; the sum equals the matrix's pairs."""
    index = build_index(fake.topologies(fake.hgx_cluster(nodes=1)), fake.CONFIG)
    dist = index.node_class(0).dist
    for size in range(9):
        for gpus in itertools.islice(itertools.combinations(range(8), size), 20):
            chosen = np.array(gpus, dtype=np.intp)
            expected = sum(int(dist[a, b]) for a, b in itertools.combinations(gpus, 2))
            assert objective.internal(index, 0, chosen) == expected


@st.composite
def snapshot_and_plan(draw: Any) -> tuple[snapshot.ClusterSnapshot, list[Assignment]]:
    """A snapshot with some GPUs taken, and pods on some of its free GPUs."""
    nodes, pods = draw(builders.small_clusters(max_nodes=4, max_gpus=8))
    snap = snapshot.build(nodes, pods, fake.CONFIG)
    free = [
        (row, g)
        for row in range(len(snap.index.names))
        for g in range(snap.index.gpus(row))
        if int(snap.free[row]) >> g & 1
    ]
    used = draw(st.lists(st.sampled_from(free), unique=True, max_size=8)) if free else []
    assignments = [
        Assignment(PodKey("r", i, 0), snap.index.names[row], row, (g,))
        for i, (row, g) in enumerate(used)
    ]
    return snap, assignments


@settings(max_examples=examples(150))
@given(snapshot_and_plan())
def test_fragmentation_counts_gpus_left_free_where_the_plan_went(case: tuple) -> None:
    """GPUs left free on the nodes the plan touches, plus a hundredth of those left free in
    the NVLink domains it touches (the module docstring's definition)."""
    snap, assignments = case
    index = snap.index
    used = {(a.row, g) for a in assignments for g in a.gpus}
    rows = {a.row for a in assignments}

    def left(row: int) -> int:
        return sum(
            1
            for g in range(index.gpus(row))
            if int(snap.free[row]) >> g & 1 and (row, g) not in used
        )

    domains = {int(index.clique_of[r]) for r in rows} - {-1}
    in_domains = [r for r in range(len(index.names)) if int(index.clique_of[r]) in domains]
    expected = sum(left(r) for r in rows) + sum(left(r) for r in in_domains) / 100
    assert objective.fragmentation(index, snap.free, assignments) == pytest.approx(expected)


def as_masks(gpus: list[Gpu]) -> dict[int, int]:
    out: dict[int, int] = {}
    for row, g in gpus:
        out[row] = out.get(row, 0) | 1 << g
    return out


@settings(max_examples=examples(150))
@given(index_and_sets())
def test_a_refreshed_summary_equals_one_built_afresh(case: tuple) -> None:
    # The solver moves a role's summary from one GPU set to the next (State.role_summary);
    # here from s to t, and from t to s and to nothing, via every changed row.
    index, s, t = case
    for before, after in ((s, t), (t, s), (s + t, [])):
        old = pairsums.Summary(index, pairsums.mass(index, as_masks(before)))
        now = as_masks(after)
        rows = set(as_masks(before)) | set(now)
        got = old.refreshed(rows, now)
        fresh = pairsums.Summary(index, pairsums.mass(index, now))
        assert got.masks == fresh.masks
        assert got.total == fresh.total
        for name in ("count", "up", "fab", "held"):
            assert np.array_equal(getattr(got, name), getattr(fresh, name)), name
        for name in ("rows", "masks", "count", "up", "fab"):
            assert np.array_equal(getattr(got.mass, name), getattr(fresh.mass, name)), name
        assert old.masks == as_masks(before)  # the summary it came from is unchanged


@settings(max_examples=examples(150))
@given(index_and_sets())
def test_costs_to_sums_the_distance_from_each_part_to_every_gpu_of_the_summary(
    case: tuple,
) -> None:
    # The solver's inner loop: every part (GPUs of s on one node) against the summary of t.
    index, s, t = case
    summary = pairsums.Summary(index, pairsums.mass(index, as_masks(t)))
    parts = sorted(as_masks(s).items())
    rows = np.array([row for row, _ in parts], dtype=np.intp)
    masks = np.array([mask for _, mask in parts], dtype=np.int64)
    got = pairsums.costs_to(index, summary, rows, masks)
    for (row, mask), cost in zip(parts, got.tolist(), strict=True):
        mine = [(row, g) for g in range(index.gpus(row)) if mask >> g & 1]
        assert cost == pair_sum(index, itertools.product(mine, t))


@settings(max_examples=examples(150))
@given(index_and_sets())
def test_gpu_sums_from_the_mask_tables_equal_the_sums_gpu_by_gpu(case: tuple) -> None:
    index, s, t = case
    terms = pairsums.gpu_terms(index)
    assert terms.tables is not None  # nodes of 8 GPUs or fewer: the tables are kept
    plain = dataclasses.replace(terms, tables=None)
    parts = sorted(as_masks(s + t).items())
    rows = np.array([row for row, _ in parts], dtype=np.intp)
    masks = np.array([mask for _, mask in parts], dtype=np.int64)
    for got, expected in zip(terms.sums(rows, masks), plain.sums(rows, masks), strict=True):
        assert got.tolist() == expected.tolist()
    for row, mask in parts:
        gpus = [g for g in range(index.gpus(row)) if mask >> g & 1]
        expected_up = sum(int(terms.up[row, g]) for g in gpus)
        expected_fab = sum(int(terms.fab[row, g]) for g in gpus)
        assert terms.sums_of(row, mask) == plain.sums_of(row, mask) == (expected_up, expected_fab)


@settings(max_examples=examples(150))
@given(index_and_sets(), st.booleans())
def test_pair_sums_count_every_pair_across_both_ways(case: tuple, small: bool) -> None:
    # A few rows compare node pairs at once, more group the rows layer by layer: both exact.
    index, s, t = case
    expected = pair_sum(index, itertools.product(s, t))
    tiers = Counter(
        index.tier_index(ra, ga, rb, gb) for (ra, ga), (rb, gb) in itertools.product(s, t)
    )
    limit = pairsums.SMALL_ROWS if small else 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pairsums, "SMALL_ROWS", limit)
        total, counts = pairsums.pair_sums(
            index, pairsums.mass(index, as_masks(s)), pairsums.mass(index, as_masks(t))
        )
    assert total == expected
    assert {tier: int(n) for tier, n in enumerate(counts.tolist()) if n} == dict(tiers)

"""``objective.widest_tier``: a replica's widest tier is the widest tier of any pair of its GPUs,
GPU pair by GPU pair (the NVLink-only subset lookup for GPUs on one node included)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import objective
from shorthop.topology import index

from tests import builders
from tests.hypothesis_profiles import examples


@settings(max_examples=examples(100))
@given(builders.clusters(), st.randoms(use_true_random=False))
def test_widest_tier_is_the_widest_pair(cluster: Any, rng: Any) -> None:
    config, topologies = cluster
    idx = index.build_index(topologies, config)
    gpus = [(row, g) for row in range(len(idx.names)) for g in range(idx.gpus(row))]
    chosen = rng.sample(gpus, min(len(gpus), rng.randint(1, 10)))
    pairs = [
        idx.tier_index(ra, ga, rb, gb) for i, (ra, ga) in enumerate(chosen) for rb, gb in chosen[:i]
    ]
    assert objective.widest_tier(idx, objective.gpu_set(chosen_by_row(chosen))) == max(
        pairs, default=0
    )


def chosen_by_row(chosen: list[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    return [(row, [g]) for row, g in chosen]

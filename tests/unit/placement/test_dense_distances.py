"""``pairsums.dense``: the distance matrix among a few GPUs equals ``index.distance`` entry by
entry, whether the GPUs come grouped by node (the search's universe) or in any order."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import pairsums
from shorthop.topology import index

from tests import builders
from tests.hypothesis_profiles import examples


@settings(max_examples=examples(80))
@given(builders.clusters(), st.randoms(use_true_random=False), st.booleans())
def test_dense_equals_the_index_distance(cluster: Any, rng: Any, grouped: bool) -> None:
    config, topologies = cluster
    idx = index.build_index(topologies, config)
    gpus = [(row, g) for row in range(len(idx.names)) for g in range(idx.gpus(row))]
    chosen = rng.sample(gpus, min(len(gpus), rng.randint(1, 12)))
    if grouped:
        chosen.sort()
    rows = np.array([r for r, _ in chosen], dtype=np.intp)
    ids = np.array([g for _, g in chosen], dtype=np.intp)
    got = pairsums.dense(idx, rows, ids)
    want = [[idx.distance(ra, ga, rb, gb) for rb, gb in chosen] for ra, ga in chosen]
    assert got.tolist() == want

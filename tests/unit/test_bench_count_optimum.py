"""The count-based optimum of ``bench.count_optimum`` is a brute force the benchmark trusts:
it must equal ``placement.exact`` (GPU sets pod by pod, written apart) wherever both run, and
refuse clusters whose GPUs are not alike."""

from __future__ import annotations

import pytest
from shorthop.placement import exact
from shorthop.placement import snapshot as snapshots
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge

from bench import common, count_optimum
from tests import builders


@pytest.mark.parametrize("seed", range(60))
def test_the_count_based_optimum_equals_the_exact_optimum(seed: int) -> None:
    """The cluster of instance ``seed``, with the request shrunk until the exact solver takes
    it (at most 7 replicas: its search grows fast with the pods)."""
    nodes, pods, request = count_optimum.instance(seed)
    snap = snapshots.build(nodes, pods, common.CONFIG)
    source, target = request.roles
    for most in (4, 3, 2, 1):
        shrunk = Request(
            roles=(
                RoleRequest(source.name, min(source.replicas, most), 1, source.pod_gpus),
                RoleRequest(
                    target.name, min(target.replicas, max(1, most - 1)), 1, target.pod_gpus
                ),
            ),
            traffic=request.traffic,
        )
        try:
            best = exact.solve(snap, shrunk)
        except exact.ExactTooLarge:
            continue
        got = count_optimum.optimum(snap, shrunk)
        if not best.feasible:
            assert got is None
        else:
            assert got == (best.cost.intra, round(best.cost.traffic, 6))
        return
    raise AssertionError("the exact solver refused even one replica per role")


def test_nodes_whose_gpus_are_not_alike_are_refused() -> None:
    """A tray outside any NVLink domain links its GPUs in pairs: counts do not fix the cost."""
    nodes = [builders.node_object("t", "tray", 4), builders.node_object("h", "hgx", 8)]
    snap = snapshots.build(nodes, [], common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 2, 1, 1), RoleRequest("decode", 2, 1, 1)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
    )
    with pytest.raises(ValueError, match="not alike"):
        count_optimum.optimum(snap, request)


def test_instances_reach_beyond_the_exhaustive_search() -> None:
    """A quarter of the instances or more have more pods than the solver's exhaustive search
    takes, and some more than the exact solver takes."""
    sizes = [sum(r.replicas for r in count_optimum.instance(seed)[2].roles) for seed in range(200)]
    assert max(sizes) > 24  # beyond placement.exact's pod limit too
    assert sum(size > count_optimum.SMALL_PODS for size in sizes) >= len(sizes) // 4

"""The cost floor: ``least_distance`` is a lower bound on every GPU pair's distance (and reached),
a start at the floor is recognised, and keeping it without refinement, search or first-fit
changes no plan."""

from __future__ import annotations

import random
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import snapshot as snapshots
from shorthop.placement import solver
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.placement.solver import floor
from shorthop.placement.solver.greedy import greedy
from shorthop.placement.solver.state import State
from shorthop.topology import fake, index

from tests import builders, families
from tests.hypothesis_profiles import examples

SETTINGS = settings(max_examples=examples(80))


@SETTINGS
@given(builders.clusters())
def test_least_distance_bounds_every_pair_and_is_reached(cluster: Any) -> None:
    config, topologies = cluster
    idx = index.build_index(topologies, config)
    least = floor.least_distance(idx)
    gpus = [(row, g) for row in range(len(idx.names)) for g in range(idx.gpus(row))]
    distances = [
        idx.distance(ra, ga, rb, gb) for i, (ra, ga) in enumerate(gpus) for rb, gb in gpus[:i]
    ]
    assert all(d >= least for d in distances)


def test_least_distance_is_the_nvlink_hop_of_an_hgx_cluster() -> None:
    idx = index.build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)
    pairs = [idx.distance(0, 0, 0, g) for g in range(1, 8)] + [idx.distance(0, 0, 1, 0)]
    assert floor.least_distance(idx) == min(pairs)


def _request(pattern: Pattern, prefill: int = 2, decode: int = 1) -> Request:
    return Request(
        roles=(RoleRequest("prefill", prefill, 1, 4), RoleRequest("decode", decode, 2, 4)),
        traffic=(TrafficEdge(0, 1, 1.0, pattern),),
        name="f",
    )


def test_a_plan_inside_one_nvlink_rack_is_at_the_floor_and_one_across_nodes_is_not() -> None:
    racks = fake.nodes(fake.ClusterShape(nvl72_racks=1, trays_per_rack=6))
    for pattern in (Pattern.ALL_TO_ALL, Pattern.PAIRED):
        state = State(snapshots.build(racks, [], fake.CONFIG), _request(pattern), None, {})
        greedy(state)
        assert floor.at_floor(state)
    hgx = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=2))
    state = State(
        snapshots.build(hgx, [], fake.CONFIG), _request(Pattern.ALL_TO_ALL, 2, 1), None, {}
    )
    greedy(state)  # 16 GPUs on two 8-GPU nodes: some pairs cross the network
    assert not floor.at_floor(state)


@st.composite
def instances(draw: Any) -> tuple[snapshots.ClusterSnapshot, Request]:
    """The exact comparison's mixed small instances (greedy traps among them: refinement, the
    search and first-fit's start matter there) and plain small clusters."""
    pattern = draw(st.sampled_from([Pattern.ALL_TO_ALL, Pattern.PAIRED]))
    if draw(st.booleans()):
        rng = random.Random(draw(st.integers(0, 10_000)))
        nodes, pods, request = families.quality_instance(
            rng, draw(st.sampled_from(families.FAMILIES)), pattern
        )
        return snapshots.build(nodes, pods, fake.CONFIG), request
    nodes, pods = draw(builders.small_clusters(max_nodes=5))
    request = draw(builders.small_requests(max_pods=5))
    edges = tuple(TrafficEdge(e.source, e.target, e.weight, pattern) for e in request.traffic)
    return snapshots.build(nodes, pods, fake.CONFIG), Request(
        roles=request.roles, traffic=edges, name="f"
    )


@SETTINGS
@given(instances())
def test_keeping_a_start_at_the_floor_changes_no_plan(instance: Any) -> None:
    snap, request = instance
    with mock.patch.object(floor, "at_floor", return_value=False):
        every_step = solver.solve(snap, request)
    assert solver.solve(snap, request) == every_step

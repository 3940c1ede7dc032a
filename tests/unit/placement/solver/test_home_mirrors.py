"""``home.mirrors``: a home whose greedy start is skipped because it mirrors an earlier one must
tie that earlier start exactly, and skipping it must leave every plan as it was."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import snapshot as snapshots
from shorthop.placement import solver
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.placement.solver import home, run
from shorthop.placement.solver.greedy import greedy
from shorthop.placement.solver.state import Failure, State, Strategy
from shorthop.topology import fake

from tests.hypothesis_profiles import examples

SETTINGS = settings(max_examples=examples(60))


@st.composite
def instances(draw: Any) -> tuple[snapshots.ClusterSnapshot, Request]:
    """Small homogeneous-ish clusters (copies of one rack or unit are what mirror), with and
    without background pods, and a small prefill/decode deployment."""
    shape = fake.ClusterShape(
        nvl72_racks=draw(st.integers(0, 3)),
        trays_per_rack=draw(st.integers(2, 4)),
        hgx_units=draw(st.integers(0, 3)),
        nodes_per_unit=draw(st.integers(1, 4)),
        units_per_block=draw(st.integers(1, 2)),
    )
    nodes = fake.nodes(shape)
    if not nodes:
        nodes = fake.nodes(fake.ClusterShape(hgx_units=2, nodes_per_unit=2))
    occupancy = draw(st.sampled_from([0.0, 0.0, 0.25, 0.5]))
    pods = fake.background_pods(nodes, occupancy, seed=draw(st.integers(0, 3)))
    snap = snapshots.build(nodes, pods, fake.CONFIG)
    roles = (
        RoleRequest("prefill", draw(st.integers(1, 3)), 1, draw(st.sampled_from([1, 2, 4]))),
        RoleRequest(
            "decode",
            draw(st.integers(1, 2)),
            draw(st.integers(1, 2)),
            draw(st.sampled_from([2, 4])),
        ),
    )
    pattern = draw(st.sampled_from([Pattern.ALL_TO_ALL, Pattern.PAIRED]))
    return snap, Request(roles=roles, traffic=(TrafficEdge(0, 1, 1.0, pattern),), name="m")


def _start(probe: State, vertex: int) -> object:
    """What ``run`` compares starts by, for greedy restricted to ``vertex``."""
    rows = home.rows_of(probe, vertex)
    state = State(probe.snapshot, probe.request, rows, {}, Strategy.COST)
    try:
        greedy(state)
    except Failure:
        return "no room"
    return run._start_rank(state)


@SETTINGS
@given(instances())
def test_a_mirrored_home_ties_the_earlier_one(instance: Any) -> None:
    snap, request = instance
    probe = State(snap, request, None, {}, Strategy.COST)
    tree = probe.tree
    base = np.ones(len(snap.free), dtype=np.bool_)
    for layer in range(1, int(tree.layer[tree.root])):
        verts = tree.layer_vertices[layer].tolist()[:6]
        for i, second in enumerate(verts):
            for first in verts[:i]:
                if home.mirrors(probe, first, second, base):
                    assert _start(probe, first) == _start(probe, second)


@SETTINGS
@given(instances())
def test_skipping_mirrored_homes_changes_no_plan(instance: Any) -> None:
    snap, request = instance
    with mock.patch.object(home, "mirrors", return_value=False):
        every_home = solver.solve(snap, request)
    assert solver.solve(snap, request) == every_home


def _two_racks(taken: dict[int, int] | None = None) -> tuple[State, list[int]]:
    nodes = fake.nodes(fake.ClusterShape(nvl72_racks=2, trays_per_rack=4))
    snap = snapshots.build(nodes, [], fake.CONFIG)
    if taken:
        snap = snap.with_taken(taken)
    request = Request(
        roles=(RoleRequest("prefill", 2, 1, 4), RoleRequest("decode", 1, 2, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="m",
    )
    probe = State(snap, request, None, {}, Strategy.COST)
    racks = probe.tree.layer_vertices[1].tolist()
    return probe, racks


def test_two_empty_racks_mirror_and_one_busy_gpu_tells_them_apart() -> None:
    probe, racks = _two_racks()
    base = np.ones(len(probe.snapshot.free), dtype=np.bool_)
    assert len(racks) == 2
    assert home.mirrors(probe, racks[0], racks[1], base)
    busy, racks = _two_racks({4: 0b1})  # one GPU of the second rack's first tray
    assert not home.mirrors(busy, racks[0], racks[1], base)
    only_first = base.copy()
    only_first[4] = False  # a scope that leaves out one tray of the second rack
    assert not home.mirrors(probe, racks[0], racks[1], only_first)

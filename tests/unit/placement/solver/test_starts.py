"""Starts of the solver (``run._construct``) on clusters too large for the exhaustive search,
each a case found by re-planning the deployments of a stream (docs/benchmarks.md section 4(c))
against the same solver restricted to one rack or block at a time.

- The tightest NVLink domain that holds the whole deployment is offered (``home.candidates``)
  even when the roomier homes are partly used: 6 prefill replicas of 4 GPUs and 6 decode
  replicas of 2 x 4 GPUs (72 GPUs) next to an entirely free NVL72 rack, with racks of partly
  used HGX nodes listed first. The HGX racks have slack, so they were the homes; their starts
  reached the least intra cost, so the unrestricted greedy was skipped, and the free rack was
  never tried: every prefill/decode GPU pair crossed the network.
- The rack or block around the NVLink domain with the most room is a home too (when that
  domain holds at least half the deployment): 6 prefill replicas of 4 GPUs and 7 decode
  replicas of 2 x 4 GPUs (80 GPUs, more than one NVL72 rack) went to a rack of HGX nodes (the
  best fit by room, its start at the intra floor, so the unrestricted greedy was skipped) with
  every KV pair across the network, while the block of a free NVL72 rack keeps most on NVLink.
- A home of racks at the intra floor does not stop the unrestricted greedy (only a home that is
  one NVLink domain does): 1-GPU replicas are at the floor anywhere, and the best fit by room
  was a rack of PCIe nodes, every KV pair across PCIe or the network, while two HGX nodes with
  room keep most pairs on NVLink.
- A start with the largest replicas first joins the interleaved one when that missed an intra
  floor every role could reach on its own: with a few entirely free HGX nodes among half-used
  ones, interleaved prefill replicas (4 GPUs) took halves of the free nodes the decode replicas
  (2 pods x 4 GPUs) needed whole, and decode replicas were split across nodes (intra cost up
  to 5x the floor). The same for replicas larger than any node: when every role has room for
  each replica inside one NVLink domain and the interleaved start split one (a prefill replica
  took two of the eight free trays both decode replicas of 4 x 4 GPUs needed; the second one
  went to two HGX nodes, intra cost 5.5x).
- The tightest rack that holds the deployment without slack is a start too, when every KV pair
  at the longest distance inside it costs less than the best start's traffic: 15 + 6 replicas
  of 1 GPU, a rack of three free HGX nodes (24 GPUs) and NVL72-style racks with 8 to 12 free
  trays' GPUs each; no rack has slack, so the only home was the zone, and greedy followed the
  free trays across racks (mean KV distance 493, most pairs across blocks) while the HGX rack
  keeps every pair inside it (135).
- A deployment that needs nearly every free pod slot gets a best-fit (``PACK``) start too: 3
  prefill replicas of 2 x 4 GPUs and 3 decode replicas of 4 x 4 GPUs need all 18 free 4-GPU
  slots; interleaved greedy gave prefill replicas whole nodes that decode replicas needed in
  pairs, and a decode replica was split across blocks (intra cost 72,760 against 53,560).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from shorthop.placement import objective, solver
from shorthop.placement import snapshot as snapshots
from shorthop.placement.plan import Plan
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.placement.solver import run
from shorthop.placement.solver.state import State

from bench import common
from tests import builders


def _valid_plan(snap: snapshots.ClusterSnapshot, request: Request) -> Plan:
    """The solver's plan, asserted feasible and valid (every pod placed, within free GPUs)."""
    plan = solver.solve(snap, request)
    assert plan.feasible
    assert not common.plan_problems(snap, request, plan)
    return plan


def _cluster(hgx_per_rack: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two racks of HGX nodes (every third entirely free, the rest with 4 to 8 GPUs taken)
    listed before one entirely free NVL72-style clique of 18 four-GPU trays."""
    nodes, pods = [], []
    for rack in range(2):
        for i in range(hgx_per_rack):
            name = f"h{rack}-{i:02d}"
            nodes.append(builders.node_object(name, "hgx", 8, rack=f"r{rack}", block=f"b{rack}"))
            if i % 3:
                pods.append(builders.gpu_pod(f"bg-{name}", name, list(range(4 + i % 5))))
    for i in range(18):
        nodes.append(
            builders.node_object(f"t{i:02d}", "tray", 4, clique="k1", rack="n1", block="bn")
        )
    return nodes, pods


def test_a_deployment_that_fills_a_free_nvlink_domain_keeps_all_kv_on_nvlink() -> None:
    nodes, pods = _cluster(31)
    snap = snapshots.build(nodes, pods, common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 6, 1, 4), RoleRequest("decode", 6, 2, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="fills-a-rack",
    )
    plan = _valid_plan(snap, request)
    assert {a.node for a in plan.assignments} == {f"t{i:02d}" for i in range(18)}
    assert set(plan.tiers) == {"nvlink-domain"}, plan.tiers


def _free_and_half_used(free: int, half: int, racks: int) -> tuple[list[Any], list[Any]]:
    """``free`` entirely free HGX nodes and ``half`` with GPUs 0-3 taken, spread over racks."""
    names = [f"f{i:02d}" for i in range(free)] + [f"h{i:02d}" for i in range(half)]
    nodes = [builders.node_object(n, "hgx", 8, rack=f"r{j % racks}") for j, n in enumerate(names)]
    pods = [builders.gpu_pod(f"bg-{n}", n, [0, 1, 2, 3]) for n in names if n.startswith("h")]
    return nodes, pods


@pytest.mark.parametrize(
    ("free", "half", "prefill", "decode", "racks"),
    [(4, 12, 3, 4, 1), (4, 12, 3, 4, 2), (6, 20, 6, 6, 3)],
)
def test_large_replicas_keep_the_whole_nodes_they_need(
    free: int, half: int, prefill: int, decode: int, racks: int
) -> None:
    nodes, pods = _free_and_half_used(free, half, racks)
    snap = snapshots.build(nodes, pods, common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", prefill, 1, 4), RoleRequest("decode", decode, 2, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="whole-nodes",
    )
    plan = _valid_plan(snap, request)
    decode_nodes: dict[int, set[str]] = {}
    for a in plan.assignments:
        if a.key.role == "decode":
            decode_nodes.setdefault(a.key.replica, set()).add(a.node)
    assert all(len(n) == 1 for n in decode_nodes.values()), decode_nodes
    # every replica at its least single-node intra cost: a decode replica alone on a free node
    one_decode = objective.intra_cost(snap.index, {snap.index.row_of["f00"]: np.arange(8)})
    one_prefill = objective.intra_cost(snap.index, {snap.index.row_of["h00"]: np.arange(4, 8)})
    assert plan.cost.intra == decode * one_decode + prefill * one_prefill


def test_a_deployment_larger_than_any_nvlink_domain_keeps_most_kv_on_nvlink() -> None:
    nodes, pods = [], []
    for rack in range(2):  # HGX racks listed first, half of their nodes partly used
        for i in range(31):
            name = f"h{rack}-{i:02d}"
            nodes.append(builders.node_object(name, "hgx", 8, rack=f"r{rack}", block=f"b{rack}"))
            if i % 2:
                pods.append(builders.gpu_pod(f"bg-{name}", name, list(range(4 + i % 5))))
    for c in range(2):  # one block of two NVL72-style racks: one free, one with 4 free trays
        for i in range(18):
            name = f"k{c}t{i:02d}"
            nodes.append(
                builders.node_object(name, "tray", 4, clique=f"k{c}", rack=f"n{c}", block="bn")
            )
            if c == 1 and i >= 4:
                pods.append(builders.gpu_pod(f"bg-{name}", name, [0, 1, 2, 3]))
    snap = snapshots.build(nodes, pods, common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 6, 1, 4), RoleRequest("decode", 7, 2, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="more-than-a-rack",
    )
    plan = _valid_plan(snap, request)
    pairs = sum(plan.tiers.values())
    assert plan.tiers.get("nvlink-domain", 0) >= 0.8 * pairs, plan.tiers


def test_one_gpu_replicas_are_not_kept_in_a_rack_of_pcie_nodes() -> None:
    nodes, pods = [], []
    for rack in range(2):  # the best fits by room: racks of 4-GPU PCIe nodes
        for i in range(8):
            name = f"p{rack}-{i}"
            nodes.append(builders.node_object(name, "pcie", 4, rack=f"r{rack}", block=f"b{rack}"))
    for i in range(2):  # two HGX nodes with 6 GPUs free each: too little room to be a home
        nodes.append(builders.node_object(f"h{i}", "hgx", 8, rack="r2", block="b2"))
        pods.append(builders.gpu_pod(f"bg-h{i}", f"h{i}", [0, 1]))
    snap = snapshots.build(nodes, pods, common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 4, 1, 1), RoleRequest("decode", 6, 1, 1)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="one-gpu-replicas",
    )
    plan = _valid_plan(snap, request)
    assert {a.node for a in plan.assignments} == {"h0", "h1"}


def test_replicas_larger_than_a_node_keep_the_nvlink_domain_they_need() -> None:
    nodes, pods = [], []
    for c, free in ((0, 8), (1, 2)):  # NVL72-style racks with 8 and 2 free trays
        for i in range(18):
            name = f"k{c}t{i:02d}"
            nodes.append(
                builders.node_object(name, "tray", 4, clique=f"k{c}", rack=f"n{c}", block="bn")
            )
            if i >= free:
                pods.append(builders.gpu_pod(f"bg-{name}", name, [0, 1, 2, 3]))
    nodes += [builders.node_object(f"h{i:02d}", "hgx", 8, rack="r1", block="b1") for i in range(12)]
    snap = snapshots.build(nodes, pods, common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 1, 2, 4), RoleRequest("decode", 2, 4, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="larger-than-a-node",
    )
    plan = _valid_plan(snap, request)
    decode = {a.node for a in plan.assignments if a.key.role == "decode"}
    assert decode == {f"k0t{i:02d}" for i in range(8)}, decode


def test_the_unrestricted_greedy_is_skipped_only_where_it_cannot_put_kv_on_nvlink() -> None:
    """The skip test's two parts: room for a replica of each end of an edge in one NVLink domain
    (a node with NVLink, or a clique), and the traffic if every KV pair were at the
    NVLink-domain distance."""
    request = Request(
        roles=(RoleRequest("prefill", 3, 1, 4), RoleRequest("decode", 2, 2, 4)),
        traffic=(TrafficEdge(0, 1, 2.0),),
        name="skip",
    )
    half_used = [builders.node_object(f"h{i}", "hgx", 8) for i in range(4)]
    busy = [builders.gpu_pod(f"bg-h{i}", f"h{i}", [0, 1, 2, 3]) for i in range(4)]
    trays = [builders.node_object(f"t{i}", "tray", 4, clique="k1") for i in range(3)]
    no_room = State(snapshots.build(half_used, busy, common.CONFIG), request, None, {})
    assert not run._nvlink_pair_room(no_room)  # 4 + 8 GPUs fit no node with 4 free
    room = State(snapshots.build(half_used + trays, busy, common.CONFIG), request, None, {})
    assert run._nvlink_pair_room(room)  # three free trays of one clique: 12 GPUs
    distance = 2 * room.index.config.weights.nvlink_domain
    assert run._nvlink_traffic_bound(room) == pytest.approx(2.0 * 4 * 8 * distance)


def test_a_deployment_that_fits_one_rack_without_slack_stays_in_it() -> None:
    nodes, pods = [], []
    for c, free in enumerate((12, 10, 8, 8, 8)):  # NVL72-style racks, a few free GPUs each
        for i in range(18):
            name = f"k{c}t{i:02d}"
            nodes.append(
                builders.node_object(name, "tray", 4, clique=f"k{c}", rack=f"n{c}", block=f"b{c}")
            )
            left = min(4, max(0, free - 4 * i))
            if left < 4:
                pods.append(builders.gpu_pod(f"bg-{name}", name, list(range(left, 4))))
    for i in range(3):  # one rack of free HGX nodes: 24 GPUs for 21
        nodes.append(builders.node_object(f"h{i}", "hgx", 8, rack="rh", block="bh"))
    snap = snapshots.build(nodes, pods, common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 15, 1, 1), RoleRequest("decode", 6, 1, 1)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="one-rack",
    )
    plan = _valid_plan(snap, request)
    assert {a.node for a in plan.assignments} <= {"h0", "h1", "h2"}
    assert set(plan.tiers) <= {"same-node-nvlink", "rack"}, plan.tiers


def test_a_deployment_needing_nearly_every_free_slot_keeps_large_replicas_whole() -> None:
    nodes, pods = [], []

    def add(name: str, kind: str, gpus: int, free: range | list[int], **where: str) -> None:
        nodes.append(builders.node_object(name, kind, gpus, **where))
        taken = [g for g in range(gpus) if g not in free]
        if taken:
            pods.append(builders.gpu_pod(f"bg-{name}", name, taken))

    add("a18", "hgx", 8, [3], rack="ra", block="b2")
    for name in ("a23", "a24", "a25"):
        add(name, "hgx", 8, range(8), rack="ra", block="b2")
    for name in ("b24", "b25", "b26", "b29"):
        add(name, "hgx", 8, range(8), rack="rb", block="b2")
    add("c03", "hgx", 8, range(4), rack="rc", block="b3")
    add("c04", "hgx", 8, range(8), rack="rc", block="b3")
    add("k2t15", "tray", 4, [3], clique="k2", rack="n2", block="b0")
    add("k2t17", "tray", 4, range(4), clique="k2", rack="n2", block="b0")
    add("k5t16", "tray", 4, [0, 1], clique="k5", rack="n5", block="b1")
    snap = snapshots.build(nodes, pods, common.CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 3, 2, 4), RoleRequest("decode", 3, 4, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name="crowded",
    )
    plan = _valid_plan(snap, request)
    nodes_of: dict[tuple[str, int], set[str]] = {}
    for a in plan.assignments:
        nodes_of.setdefault((a.key.role, a.key.replica), set()).add(a.node)
    for replica in range(3):  # every decode replica on two whole nodes of one rack
        held = nodes_of[("decode", replica)]
        assert len(held) == 2, held
        assert len({n[0] for n in held}) == 1, held  # the node names' first letter: the rack
    assert sum(len(nodes_of[("prefill", r)]) == 1 for r in range(3)) == 2, nodes_of

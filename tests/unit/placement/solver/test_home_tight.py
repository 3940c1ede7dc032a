"""``home.candidates`` offers the tightest NVLink domain that holds the whole deployment even when
the roomier homes are partly used: there every KV transfer stays on NVLink.

Found in a stream (docs/benchmarks.md section 4(c)): 6 prefill replicas of 4 GPUs and 6 decode
replicas of 2 x 4 GPUs (72 GPUs) next to an entirely free NVL72 rack, with racks of partly used
HGX nodes listed first. The HGX racks have slack, so they were the homes; their starts reached
the least intra cost, so the unrestricted greedy was skipped, and the free rack (no slack: the
deployment fills it) was never tried: every prefill/decode GPU pair crossed the network."""

from __future__ import annotations

from typing import Any

from shorthop.placement import snapshot as snapshots
from shorthop.placement import solver
from shorthop.placement.request import Request, RoleRequest, TrafficEdge

from bench import common
from tests import builders


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
    plan = solver.solve(snap, request)
    assert plan.feasible
    assert not common.plan_problems(snap, request, plan)
    assert {a.node for a in plan.assignments} == {f"t{i:02d}" for i in range(18)}
    assert set(plan.tiers) == {"nvlink-domain"}, plan.tiers

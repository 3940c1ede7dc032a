"""Medium instances (``solver.medium``): too large for the exhaustive search, small enough for
greedy under every order of whole roles and for swaps between replicas.

Each case is a cluster of nodes whose GPUs are all alike to the objective (HGX nodes and
NVL72-style trays) with one-pod replicas, so the optimum is found by the count-based brute force
of ``bench.count_optimum`` (written apart from the solver; checked against ``placement.exact``
in tests/unit/test_bench_count_optimum.py). Found by comparing the solver with it on random
clusters (docs/benchmarks.md, section 4(a)).
"""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.placement import snapshot as snapshots
from shorthop.placement.plan import Plan
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.placement.solver import swap

from bench import common
from tests import builders, solver_states


def _request(prefill: int, decode: int) -> Request:
    return Request(
        roles=(RoleRequest("prefill", prefill, 1, 1), RoleRequest("decode", decode, 1, 1)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
    )


Place = tuple[str | None, str, str, str]  # NVLink domain (clique), rack, block, zone
Spec = list[tuple[str, str, int, Place, list[int]]]  # name, kind, GPUs, where, GPUs taken


def _cluster(spec: Spec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes, pods = [], []
    for name, kind, gpus, (clique, rack, block, zone), taken in spec:
        node = builders.node_object(
            name, kind, gpus, clique=clique, rack=rack, block=block, zone=zone
        )
        nodes.append(node)
        if taken:
            pods.append(builders.gpu_pod(f"bg-{name}", name, taken))
    return nodes, pods


def _trays(clique: str, rack: str, block: str, zone: str, taken: list[list[int]]) -> Spec:
    """4-GPU trays of one NVLink domain, ``taken[i]`` the GPUs of tray i already in use."""
    return [
        (f"{clique}-t{i}", "tray", 4, (clique, rack, block, zone), t) for i, t in enumerate(taken)
    ]


def _hgx(name: str, rack: str, block: str, zone: str, taken: list[int]) -> Spec:
    return [(name, "hgx", 8, (None, rack, block, zone), taken)]


def _plan(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], request: Request) -> Plan:
    return solver_states.plan_at_count_optimum(snapshots.build(nodes, pods, common.CONFIG), request)


def _nodes_of(plan: Plan, role: str) -> set[str]:
    return {a.node for a in plan.assignments if a.key.role == role}


def test_a_lone_decode_replica_goes_where_the_prefill_replicas_have_room() -> None:
    """14 prefill + 1 decode replica of 1 GPU; an NVLink domain of three free trays (12 GPUs)
    in one zone, and in another zone two HGX nodes (5 and 7 free) and a tray with 2 free.
    Interleaved greedy put the decode replica next to the first prefill replica outside the
    domain, and no single move could bring it back (traffic 800.7); placing the decode role
    first puts it in the domain, with 11 prefill replicas (236.4)."""
    spec = _trays("k1", "r3", "b3", "z2", [[], [], []])
    spec += _trays("k2", "r4", "b4", "z2", [[1, 3]])
    spec += _hgx("h0", "r1", "b1", "z1", [2, 4, 7]) + _hgx("h1", "r2", "b2", "z1", [1])
    plan = _plan(*_cluster(spec), _request(14, 1))
    assert _nodes_of(plan, "decode") <= {"k1-t0", "k1-t1", "k1-t2"}


def test_replicas_of_two_roles_swap_across_a_full_nvlink_domain() -> None:
    """13 prefill + 6 decode replicas of 1 GPU, a domain of trays with 13 free GPUs and an HGX
    node with 7 in another block: six pods must go outside the domain. Greedy and refinement
    ended at traffic 354.4; the optimum (344.2) needs replicas of the two roles to trade
    places, which no move of one replica can do while the domain has no free GPU."""
    spec = _trays("k1", "r1", "b1", "z1", [[], [0, 3], [], [0]])
    spec += _hgx("h0", "r2", "b2", "z1", [2])
    _plan(*_cluster(spec), _request(13, 6))


def test_the_pods_left_outside_a_full_nvlink_domain_gather_on_one_node() -> None:
    """13 prefill + 6 decode replicas of 1 GPU; an NVLink domain of three trays (12 GPUs), and
    in another zone an HGX node (8 free) and a tray of another domain (4 free) in the next
    rack. Seven pods go outside the domain; greedy split them over both nodes (traffic 768.8),
    and moving any one of them alone costs as much as it saves. Lifting every replica on the
    tray and placing them again puts them on the HGX node with the others."""
    spec = _trays("k2", "r3", "b2", "z2", [[], [], []])
    spec += _hgx("h0", "r1", "b1", "z1", []) + _trays("k1", "r2", "b1", "z1", [[]])
    plan = _plan(*_cluster(spec), _request(13, 6))
    assert "k1-t0" not in _nodes_of(plan, "prefill") | _nodes_of(plan, "decode")


def test_roles_with_different_rules_never_swap() -> None:
    """A swap gives each replica the other's GPUs: only roles with the same shape and rules
    (nodes allowed, tolerations, headroom, replica scope) and without host ports qualify."""
    a = RoleRequest("prefill", 3, 1, 1)
    assert swap.interchangeable(a, RoleRequest("decode", 5, 1, 1))
    assert not swap.interchangeable(a, RoleRequest("decode", 3, 1, 2))
    assert not swap.interchangeable(a, RoleRequest("decode", 3, 1, 1, replica_scope=0))
    assert not swap.interchangeable(a, RoleRequest("decode", 3, 1, 1, cpu_millis=500))


@pytest.mark.parametrize(("prefill", "decode"), [(9, 7), (12, 4), (15, 1), (16, 6), (20, 3)])
def test_trays_and_hgx_nodes_in_two_zones_reach_the_optimum(prefill: int, decode: int) -> None:
    """Partly used trays of two NVLink domains and HGX nodes in two zones: whatever the mix of
    the two roles, the plan's traffic is the brute-force optimum."""
    spec = _trays("k1", "r1", "b1", "z1", [[], [2], [0, 1], []])
    spec += _trays("k2", "r3", "b3", "z2", [[3], [0, 1, 2]])
    spec += _hgx("h0", "r2", "b2", "z1", [0, 5]) + _hgx("h1", "r4", "b3", "z2", [1, 2, 3])
    _plan(*_cluster(spec), _request(prefill, decode))

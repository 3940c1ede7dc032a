"""Properties of shorthop's solver: capacity, scopes, no double booking, determinism, never worse
than first-fit, and equal to the exact optimum on small instances."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shorthop.placement import exact, other_resources, placers, snapshot, solver
from shorthop.placement import tree as domain_tree
from shorthop.placement.plan import Plan
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.topology import fake

from tests import builders
from tests.hypothesis_profiles import examples

CONFIG = fake.CONFIG
# The generators filter small clusters heavily; the rest comes from the suite's profile.
SLOW = settings(max_examples=examples(150), suppress_health_check=[HealthCheck.filter_too_much])


def assert_valid(snap: snapshot.ClusterSnapshot, request: Request, plan: Plan) -> None:
    """Gang complete, every pod on a usable node, only free GPUs, none used twice, headroom kept."""
    used: Counter[tuple[int, int]] = Counter()
    pods_on: Counter[int] = Counter()
    expected = {
        (r.name, rep, pod)
        for r in request.roles
        for rep in range(r.replicas)
        for pod in range(r.pods_per_replica)
    }
    keys = [(a.key.role, a.key.replica, a.key.pod) for a in plan.assignments]
    assert len(set(keys)) == len(keys), "a (role, replica, pod) is assigned twice"
    assert set(keys) == expected, "the assigned pods are not exactly the gang's pods"
    roles = {r.name: r for r in request.roles}
    for a in plan.assignments:
        role = roles[a.key.role]
        assert len(a.gpus) == role.pod_gpus
        assert snap.usable_rows(role.tolerations)[a.row]
        assert snap.index.names[a.row] == a.node
        for g in a.gpus:
            assert int(snap.free[a.row]) >> g & 1, f"GPU {g} of {a.node} was not free"
            used[(a.row, g)] += 1
        pods_on[a.row] += 1
    assert all(n == 1 for n in used.values()), "a GPU is used twice"
    for row, n in pods_on.items():
        assert n <= snap.headroom[row][2]
    # CPU, memory, pod slots and other resources (rdma/ib, ...) together, per node
    head, demand = other_resources.headroom(snap.headroom, snap.other, request.roles)
    index_of = {r.name: i for i, r in enumerate(request.roles)}
    for row in pods_on:
        took = sum(demand[index_of[a.key.role]] for a in plan.assignments if a.row == row)
        assert (took <= head[row]).all(), (snap.index.names[row], took, head[row])


@SLOW
@given(builders.small_clusters(), builders.small_requests())
def test_plans_are_valid_deterministic_and_never_worse_than_first_fit(
    cluster: tuple, request: Request
) -> None:
    nodes, pods = cluster
    snap = snapshot.build(nodes, pods, CONFIG)
    plan = solver.solve(snap, request)
    first = placers.FirstFit().place(snap, request)
    if first.feasible:
        assert plan.feasible, plan.reasons
    if plan.feasible:
        assert_valid(snap, request, plan)
        again = solver.solve(snapshot.build(nodes, pods, CONFIG), request)
        assert again.to_json() == plan.to_json()
    else:
        assert plan.reasons
        assert plan.assignments == ()
    if first.feasible and plan.feasible:
        assert plan.cost.key() <= first.cost.key()


@SLOW
@given(builders.small_clusters(max_nodes=3, max_gpus=6), builders.small_requests(max_pods=3))
def test_cost_equals_the_exact_optimum_on_small_instances(cluster: tuple, request: Request) -> None:
    nodes, pods = cluster
    snap = snapshot.build(nodes, pods, CONFIG)
    best = exact.solve(snap, request)
    plan = solver.solve(snap, request)
    assert plan.feasible == best.feasible
    if best.feasible:
        assert plan.cost.key() == best.cost.key(), (plan.to_json(), best.to_json())


@SLOW
@given(
    builders.small_clusters(max_nodes=4),
    st.sampled_from(["nvlink-domain", "rack", "block", "same-node-nvlink"]),
    st.integers(1, 3),
    st.sampled_from([1, 2]),
)
def test_replica_scope_keeps_each_replica_inside_one_domain(
    cluster: tuple, scope: str, pods: int, q: int
) -> None:
    nodes, bg = cluster
    snap = snapshot.build(nodes, bg, CONFIG)
    tiers = snap.index.tiers
    request = Request(roles=(RoleRequest("decode", 2, pods, q, replica_scope=tiers.index(scope)),))
    plan = solver.solve(snap, request)
    if not plan.feasible:
        assert (
            "replicaScope" in plan.reasons[0].field
            or "gpusPerPod" in plan.reasons[0].field
            or plan.reasons[0].constraint == "capacity"
        )
        return
    assert_valid(snap, request, plan)
    tree = domain_tree.tree(snap.index)
    layer = tree.layer_of_tier(tiers.index(scope))
    for replica in range(2):
        rows = [a.row for a in plan.assignments if a.key.replica == replica]
        holders = [({r} | set(tree.ancestors(r))) for r in rows]
        common = set.intersection(*holders)
        assert any(int(tree.layer[v]) <= layer for v in common), (scope, rows)
        if scope == "same-node-nvlink":
            gpus = np.array(
                [g for a in plan.assignments if a.key.replica == replica for g in a.gpus]
            )
            assert snap.index.node_class(rows[0]).nvlink[np.ix_(gpus, gpus)].all()


def test_deployment_required_scope_keeps_everything_in_one_rack() -> None:
    nodes = [builders.node_object(f"a{i}", rack="r1") for i in range(2)] + [
        builders.node_object(f"b{i}", rack="r2") for i in range(3)
    ]
    snap = snapshot.build(nodes, [], CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 2, 1, 8), RoleRequest("decode", 1, 1, 8)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        required_scope=snap.index.tiers.index("rack"),
    )
    plan = solver.solve(snap, request)
    assert plan.feasible
    assert {a.node[0] for a in plan.assignments} == {"b"}
    too_big = Request(
        roles=(RoleRequest("decode", 4, 1, 8),), required_scope=snap.index.tiers.index("rack")
    )
    refused = solver.solve(snap, too_big)
    assert not refused.feasible
    assert (
        refused.reasons[0].message()
        == "spec.placement.required: the deployment needs 32 GPUs in one rack; the largest rack has 24 free"
    )


def test_infeasible_replica_scope_names_the_field_and_numbers() -> None:
    nodes = [builders.node_object(f"t{i}", "tray", 4, clique="k1") for i in range(3)]
    snap = snapshot.build(nodes, [], CONFIG)
    request = Request(
        roles=(
            RoleRequest("decode", 1, 4, 4, replica_scope=snap.index.tiers.index("nvlink-domain")),
        )
    )
    plan = solver.solve(snap, request)
    assert not plan.feasible
    assert plan.reasons[0].message() == (
        "spec.roles[0].replicaScope: replica 0 of role decode needs 4 pods x 4 GPUs = 16 GPUs in one nvlink-domain; "
        "the largest free nvlink-domain has room for 12"
    )


def test_pod_larger_than_any_node_is_explained() -> None:
    snap = snapshot.build([builders.node_object("n0")], [], CONFIG)
    plan = solver.solve(snap, Request(roles=(RoleRequest("decode", 1, 1, 16),)))
    assert not plan.feasible
    assert (
        plan.reasons[0].message()
        == "spec.roles[0].gpusPerPod: each pod of role decode needs 16 GPUs on one node; the largest usable node has 8"
    )


@pytest.mark.parametrize(
    ("pattern", "pairs"),
    [(Pattern.ALL_TO_ALL, 2 * 4 * 2 * 16), (Pattern.PAIRED, 2 * 4 * 16)],
    ids=["all-to-all: every prefill GPU with every decode GPU", "paired: each peer pair"],
)
def test_prefill_lands_next_to_its_decode_peers_in_an_nvl72_rack(
    pattern: Pattern, pairs: int
) -> None:
    nodes = fake.nodes(fake.ClusterShape(nvl72_racks=2, hgx_units=1, nodes_per_unit=4))
    snap = snapshot.build(nodes, [], CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 2, 1, 4), RoleRequest("decode", 2, 4, 4, replica_scope=2)),
        traffic=(TrafficEdge(0, 1, 1.0, pattern),),
    )
    plan = solver.solve(snap, request)
    assert plan.feasible
    assert plan.tiers == {"nvlink-domain": pairs}
    assert all(t in ("nvlink-domain", "same-node-nvlink") for t in plan.replica_tiers.values())


def test_unusable_nodes_are_never_used() -> None:
    nodes = [
        builders.node_object("notready", ready=False),
        builders.node_object("cordoned", cordoned=True),
        builders.node_object(
            "tainted", taints=[{"key": "gpu", "value": "x", "effect": "NoSchedule"}]
        ),
        builders.node_object("ok", gpus=2),
    ]
    snap = snapshot.build(nodes, [], CONFIG)
    plan = solver.solve(snap, Request(roles=(RoleRequest("decode", 2, 1, 1),)))
    assert plan.feasible
    assert {a.node for a in plan.assignments} == {"ok"}
    assert not solver.solve(snap, Request(roles=(RoleRequest("decode", 3, 1, 1),))).feasible


def test_a_rack_scoped_replica_may_span_racks_inside_one_nvlink_domain() -> None:
    # Three trays of one NVLink clique in two racks: a rack-scoped replica of two 4-GPU pods fits
    # only across the racks, over NVLink (every pair nvlink-domain, closer than rack).
    nodes = [
        builders.node_object("n0", "tray", 4, clique="k1", rack="r1", block="b1"),
        builders.node_object("n1", "tray", 4, clique="k1", rack="r2", block="b1"),
        builders.node_object("n2", "tray", 4, clique="k1", rack="r3", block="b2"),
    ]
    snap = snapshot.build(nodes, [], CONFIG)
    rack = snap.index.tiers.index("rack")
    request = Request(roles=(RoleRequest("prefill", 1, 2, 4, replica_scope=rack),))
    best = exact.solve(snap, request)
    plan = solver.solve(snap, request)
    assert best.feasible
    assert plan.feasible
    assert plan.cost.key() == best.cost.key()
    assert len({a.node for a in plan.assignments}) == 2


def test_required_nvlink_domain_finds_the_domain_with_whole_pods_among_fragmented_ones() -> None:
    # Twenty NVLink domains with 8 free GPUs in scraps of 2, and one (named last) with two whole
    # free trays: only that one holds two 4-GPU pods, though all have as many free GPUs.
    nodes, pods = [], []
    for c in range(21):
        for t in range(4):
            name = f"k{c:02d}-t{t}"
            nodes.append(builders.node_object(name, "tray", 4, clique=f"k{c:02d}", rack=f"r{c}"))
            taken = [0, 1] if c < 20 else ([0, 1, 2, 3] if t >= 2 else [])
            if taken:
                pods.append(builders.gpu_pod(f"bg-{name}", name, taken))
    snap = snapshot.build(nodes, pods, CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 1, 1, 4), RoleRequest("decode", 1, 1, 4)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        required_scope=snap.index.tiers.index("nvlink-domain"),
    )
    plan = solver.solve(snap, request)
    assert plan.feasible, plan.reasons
    assert {a.node for a in plan.assignments} == {"k20-t0", "k20-t1"}

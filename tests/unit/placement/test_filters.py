"""A role's scheduling rules over a snapshot (``placement.filters``) and in every plan: no plan of
the solver, the exact solver or a baseline ever puts a pod where its role's required rules forbid
(property), preferred node affinity decides only between placements of equal topology cost, host
ports stay apart within a plan, and an infeasible plan names the rule, the field and the numbers
(counting the nodes each rule left out)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shorthop.placement import constraints, exact, filters, placers, snapshot, solver
from shorthop.placement.constraints import Constraints
from shorthop.placement.plan import Plan
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.topology import fake

from tests import builders
from tests.hypothesis_profiles import examples

CONFIG = fake.CONFIG
PATH = "spec.roles[{}].template.spec"
# The generators filter small clusters heavily; the rest comes from the suite's profile.
SLOW = settings(max_examples=examples(150), suppress_health_check=[HealthCheck.filter_too_much])
H100, H200 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"
PRODUCT = "nvidia.com/gpu.product"


def rules(index: int, **spec: Any) -> Constraints:
    return constraints.parse({"containers": [{}], **spec}, PATH.format(index))


def node(name: str, product: str = H100, *, rack: str = "r1", **extra: str) -> dict[str, Any]:
    body = builders.node_object(name, rack=rack)
    body["metadata"]["labels"].update({PRODUCT: product, **extra})
    return body


def bound_port(name: str, on: str, port: int) -> dict[str, Any]:
    """A pod without GPUs binding host port ``port`` on node ``on``."""
    pod = builders.gpu_pod(name, on, 0)
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": port, "hostPort": port}]
    return pod


def required_of(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
                }
            }
        }
    }


def preferred_of(*weighted: tuple[int, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": w, "preference": {"matchExpressions": t}} for w, t in weighted
                ]
            }
        }
    }


def violations(snap: snapshot.ClusterSnapshot, request: Request, plan: Plan) -> list[str]:
    """Every assignment that breaks its role's required rules, checked node by node with the
    scalar rule (not the vectorised filter under test)."""
    roles = {r.name: (i, r) for i, r in enumerate(request.roles)}
    found = []
    on_node: dict[int, list[tuple[int, str]]] = {}
    for a in plan.assignments:
        i, role = roles[a.key.role]
        labels = snap.node_labels.of(a.row)
        if not role.constraints.admits(labels, a.node):
            found.append(f"{a.key} on {a.node}: {dict(labels)}")
        if not snap.usable_rows(role.tolerations)[a.row]:
            found.append(f"{a.key} on {a.node}: an untolerated taint")
        if a.node in role.excluded:
            found.append(f"{a.key} on excluded {a.node}")
        if constraints.ports_conflict(role.constraints.host_ports, snap.host_ports.get(a.row, ())):
            found.append(f"{a.key} on {a.node}: a host port already bound there")
        for j, other in on_node.get(a.row, []):
            ports = request.roles[j].constraints.host_ports
            if constraints.ports_conflict(role.constraints.host_ports, ports):
                found.append(f"{a.key} and {other} bind the same host port on {a.node}")
        on_node.setdefault(a.row, []).append((i, str(a.key)))
    return found


# -- the property -------------------------------------------------------------------------------

LABEL_VALUES = {"pool": ["a", "b"], "mem": ["80", "141", "x"]}


@st.composite
def labelled_clusters(draw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A few nodes of mixed kinds with random labels, a few GPUs taken, and a host port bound
    here and there."""
    nodes, pods = [], []
    for i in range(draw(st.integers(2, 4))):
        kind = draw(st.sampled_from(["hgx", "tray", "pcie"]))
        gpus = draw(st.integers(4, 4 if kind == "tray" else 6))
        clique = draw(st.sampled_from([None, "k1"])) if kind == "tray" else None
        body = builders.node_object(
            f"n{i}", kind, gpus, clique=clique, rack=draw(st.sampled_from(["r1", "r2"]))
        )
        for key, values in LABEL_VALUES.items():
            value = draw(st.sampled_from([None, *values]))
            if value is not None:
                body["metadata"]["labels"][key] = value
        nodes.append(body)
        taken = draw(st.lists(st.integers(0, gpus - 1), unique=True, max_size=gpus // 2))
        if taken:
            pods.append(builders.gpu_pod(f"bg{i}", f"n{i}", sorted(taken)))
        if draw(st.integers(0, 3)) == 0:
            pods.append(bound_port(f"web{i}", f"n{i}", 8000))
    return nodes, pods


@st.composite
def role_rules(draw: Any, index: int) -> Constraints:
    spec: dict[str, Any] = {}
    pool = draw(st.sampled_from([None, None, *LABEL_VALUES["pool"]]))
    if pool is not None:
        spec["nodeSelector"] = {"pool": pool}
    choice = draw(st.sampled_from(["none", "none", "in", "gt", "notin", "two-terms", "name"]))
    if choice == "in":
        spec |= required_of([{"key": "nvidia.com/gpu.product", "operator": "In",
                              "values": draw(st.lists(st.sampled_from(list(builders.PRODUCTS.values())), min_size=1))}])  # fmt: skip
    elif choice == "gt":
        spec |= required_of([{"key": "mem", "operator": "Gt", "values": ["100"]}])
    elif choice == "notin":
        spec |= required_of([{"key": "pool", "operator": "NotIn", "values": ["a"]}])
    elif choice == "two-terms":
        spec |= required_of(
            [{"key": "mem", "operator": "Lt", "values": ["100"]}],
            [{"key": "pool", "operator": "DoesNotExist"}],
        )
    elif choice == "name":
        spec["nodeName"] = draw(st.sampled_from(["n0", "n1"]))
    if draw(st.booleans()):
        spec |= {
            "affinity": {
                **spec.get("affinity", {}),
                "nodeAffinity": {
                    **spec.get("affinity", {}).get("nodeAffinity", {}),
                    **preferred_of((draw(st.integers(1, 100)), [{"key": "mem", "operator": "Exists"}]))[
                        "affinity"
                    ]["nodeAffinity"],
                },
            }
        }  # fmt: skip
    if draw(st.integers(0, 3)) == 0:
        spec["containers"] = [{"ports": [{"containerPort": 1, "hostPort": 8000}]}]
    return constraints.parse({"containers": [{}], **spec}, PATH.format(index))


@st.composite
def constrained_requests(draw: Any) -> Request:
    request = draw(builders.small_requests(max_pods=3))
    roles = tuple(
        dataclasses.replace(
            r,
            constraints=draw(role_rules(i)),
            excluded=frozenset({"n0"} if draw(st.integers(0, 3)) == 0 else ()),
        )
        for i, r in enumerate(request.roles)
    )
    return dataclasses.replace(request, roles=roles)


@SLOW
@given(labelled_clusters(), constrained_requests())
def test_no_plan_ever_breaks_a_roles_required_rules(cluster: tuple, request: Request) -> None:
    nodes, pods = cluster
    snap = snapshot.build(nodes, pods, CONFIG)
    plan = solver.solve(snap, request)
    assert violations(snap, request, plan) == []
    best = exact.solve(snap, request)
    assert violations(snap, request, best) == []
    for placer in placers.all_placers():
        assert violations(snap, request, placer.place(snap, request)) == [], placer.name
    assert plan.feasible == best.feasible, (plan.reasons, best.to_json())
    if best.feasible:
        assert plan.cost.key() == best.cost.key(), (plan.to_json(), best.to_json())
    else:
        assert plan.reasons


# -- preferred node affinity --------------------------------------------------------------------


def _decode(
    index: int = 0, replicas: int = 1, pods: int = 1, q: int = 8, **spec: Any
) -> RoleRequest:
    return RoleRequest("decode", replicas, pods, q, constraints=rules(index, **spec))


def test_among_equal_placements_the_preferred_node_wins() -> None:
    snap = snapshot.build([node("a"), node("b"), node("c", H200), node("d")], [], CONFIG)
    liked = preferred_of((50, [{"key": PRODUCT, "operator": "In", "values": [H200]}]))
    plan = solver.solve(snap, Request(roles=(_decode(**liked),)))
    assert [a.node for a in plan.assignments] == ["c"]
    assert plan.cost.preference == 50
    assert plan.to_json()["cost"]["preference"] == 50
    best = exact.solve(snap, Request(roles=(_decode(**liked),)))
    assert [a.node for a in best.assignments] == ["c"]


def test_a_preference_never_costs_topology() -> None:
    """The prefill peer sits on rack r1; the preferred node is in rack r2: the decode replica
    stays in r1, and the plan says no preference was met."""
    nodes = [node("p", rack="r1"), node("near", rack="r1"), node("far", H200, rack="r2")]
    snap = snapshot.build(nodes, [builders.gpu_pod("bg", "p", [4, 5, 6, 7])], CONFIG)
    liked = preferred_of((100, [{"key": PRODUCT, "operator": "In", "values": [H200]}]))
    request = Request(
        roles=(RoleRequest("prefill", 1, 1, 4, constraints=rules(0, nodeName="p")),
               _decode(1, **liked)),
        traffic=(TrafficEdge(0, 1, 1.0),),
    )  # fmt: skip
    plan = solver.solve(snap, request)
    assert {a.key.role: a.node for a in plan.assignments} == {"prefill": "p", "decode": "near"}
    assert plan.cost.preference == 0
    assert exact.solve(snap, request).cost.key() == plan.cost.key()


def test_preference_also_picks_the_nodes_of_a_multi_node_replica() -> None:
    nodes = [node(f"n{i}", **({"fast": "yes"} if i in (2, 3) else {})) for i in range(5)]
    snap = snapshot.build(nodes, [], CONFIG)
    liked = preferred_of((10, [{"key": "fast", "operator": "Exists"}]))
    plan = solver.solve(snap, Request(roles=(_decode(pods=2, **liked),)))
    assert sorted(a.node for a in plan.assignments) == ["n2", "n3"]
    assert plan.cost.preference == 20


# -- host ports --------------------------------------------------------------------------------


def test_pods_with_a_host_port_never_share_a_node_nor_one_where_it_is_bound() -> None:
    snap = snapshot.build(
        [node(f"n{i}") for i in range(4)], [bound_port("web", "n0", 8000)], CONFIG
    )
    ports = {"containers": [{"ports": [{"containerPort": 8000, "hostPort": 8000}]}]}
    request = Request(
        roles=(RoleRequest("prefill", 2, 1, 1, constraints=rules(0, **ports)),
               RoleRequest("decode", 1, 1, 1, constraints=rules(1, **ports))),
    )  # fmt: skip
    plan = solver.solve(snap, request)
    assert sorted(a.node for a in plan.assignments) == ["n1", "n2", "n3"]
    assert violations(snap, request, plan) == []
    one_more = dataclasses.replace(
        request, roles=(dataclasses.replace(request.roles[0], replicas=3), request.roles[1])
    )
    refused = solver.solve(snap, one_more)
    assert not refused.feasible
    assert refused.reasons[0].message() == (
        "spec.roles[1].template.spec.containers: role decode binds hostPort 8000/TCP, so a node "
        "takes one pod of it or of role prefill; 4 pods need as many nodes and 3 nodes pass its "
        "rules"
    )


def test_a_role_with_more_host_port_pods_than_nodes_says_so() -> None:
    snap = snapshot.build([node("n0"), node("n1")], [], CONFIG)
    ports = {"containers": [{"ports": [{"containerPort": 1, "hostPort": 9000, "protocol": "UDP"}]}]}
    plan = solver.solve(snap, Request(roles=(_decode(replicas=3, q=1, **ports),)))
    assert not plan.feasible
    assert plan.reasons[0].message() == (
        "spec.roles[0].template.spec.containers: role decode binds hostPort 9000/UDP, so a node "
        "takes one pod of it; 3 pods need as many nodes and 2 nodes pass its rules"
    )


# -- infeasible, explained ---------------------------------------------------------------------


def test_a_selector_leaving_too_few_gpus_names_the_rule_the_field_and_the_numbers() -> None:
    nodes = [node(f"h{i}") for i in range(5)] + [node(f"g{i}", H200) for i in range(3)]
    pods = [builders.gpu_pod(f"bg{i}", f"g{i}", [0, 1, 2, 3]) for i in range(3)]
    snap = snapshot.build(nodes, pods, CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 1, 1, 8),
               RoleRequest("decode", 2, 2, 4, constraints=rules(1, nodeSelector={PRODUCT: H200}))),
    )  # fmt: skip
    plan = solver.solve(snap, request)
    assert not plan.feasible
    assert plan.reasons[0].message() == (
        "spec.roles[1].template.spec.nodeSelector: nodeSelector nvidia.com/gpu.product=NVIDIA-H200 "
        "leaves 3 nodes with 12 free GPUs; needs 16 for role decode "
        "(nodes left out: 5 by nodeSelector)"
    )
    assert plan.reasons[0].field == "spec.roles[1].template.spec.nodeSelector"
    assert (plan.reasons[0].needed, plan.reasons[0].available) == (16, 12)
    assert plan.to_json()["exclusions"] == {"decode": {"nodeSelector": 5}}


def test_several_rules_are_named_together_and_counted_apart() -> None:
    nodes = [
        node("a", H200, pool="x"),
        node("b", H200, pool="y"),
        node("c", H100, pool="x"),
        builders.node_object("t", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]),
    ]
    snap = snapshot.build(nodes, [], CONFIG)
    role = RoleRequest(
        "decode", 2, 1, 8,
        constraints=rules(0, nodeSelector={"pool": "x"},
                          **required_of([{"key": PRODUCT, "operator": "In", "values": [H200]}])),
    )  # fmt: skip
    found = filters.role_filter(snap, role)
    assert found.excluded == (("taints", 1), ("nodeSelector", 1), ("nodeAffinity", 1))
    assert found.usable.tolist() == [True, False, False, False]
    plan = solver.solve(snap, Request(roles=(role,)))
    assert plan.reasons[0].field == "spec.roles[0].template.spec"
    assert plan.reasons[0].detail.startswith(
        "its tolerations (untolerated NoSchedule/NoExecute taints) and nodeSelector pool=x and "
        "required node affinity nvidia.com/gpu.product in (NVIDIA-H200) leave 1 node with 8 free "
        "GPUs; needs 16 for role decode (nodes left out: 1 by taints, 1 by nodeSelector, "
        "1 by nodeAffinity)"
    )


def test_a_broken_term_is_named_when_nothing_matches() -> None:
    snap = snapshot.build([node("a")], [], CONFIG)
    role = RoleRequest(
        "decode", 1, 1, 8,
        constraints=rules(0, **required_of([{"key": "mem", "operator": "Gt", "values": ["lots"]}])),
    )  # fmt: skip
    plan = solver.solve(snap, Request(roles=(role,)))
    assert "matchExpressions[0].values[0]: 'lots' is not an integer" in plan.reasons[0].detail


def test_kubelet_rejections_exclude_their_nodes_for_that_role_only() -> None:
    snap = snapshot.build([node("a"), node("b")], [], CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 1, 1, 8, excluded=frozenset({"a"})),
               RoleRequest("decode", 1, 1, 8, excluded=frozenset({"b"}))),
    )  # fmt: skip
    plan = solver.solve(snap, request)
    assert {a.key.role: a.node for a in plan.assignments} == {"prefill": "b", "decode": "a"}
    both = Request(roles=(RoleRequest("decode", 2, 1, 8, excluded=frozenset({"b"})),))
    refused = solver.solve(snap, both)
    assert refused.reasons[0].field == "status.excludedNodes"
    assert "the kubelet rejections excluding b leaves 1 node with 8 free GPUs; needs 16" in (
        refused.reasons[0].detail
    )


def test_admits_says_which_rule_a_node_no_longer_meets() -> None:
    role = RoleRequest("decode", 1, 1, 8, constraints=rules(1, nodeSelector={PRODUCT: H200}))
    assert filters.admits(role, {PRODUCT: H200}, "n") is None
    assert filters.admits(role, {PRODUCT: H100}, "n") == (
        "node n no longer matches nodeSelector nvidia.com/gpu.product=NVIDIA-H200 "
        "(spec.roles[1].template.spec.nodeSelector)"
    )
    excluded = dataclasses.replace(role, excluded=frozenset({"n"}))
    assert "kubelet rejected" in str(filters.admits(excluded, {PRODUCT: H200}, "n"))


@pytest.mark.parametrize("placer", placers.all_placers(), ids=lambda p: p.name)
def test_every_placer_keeps_to_the_selector(placer: placers.Placer) -> None:
    snap = snapshot.build([node(f"h{i}") for i in range(3)] + [node("g", H200)], [], CONFIG)
    request = Request(roles=(_decode(q=2, replicas=4, nodeSelector={PRODUCT: H200}),))
    plan = placer.place(snap, request)
    assert plan.feasible
    assert Counter(a.node for a in plan.assignments) == {"g": 4}


def test_taints_alone_keep_the_capacity_reason() -> None:
    tainted = builders.node_object("t", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    snap = snapshot.build([node("a"), tainted], [], CONFIG)
    plan = solver.solve(snap, Request(roles=(RoleRequest("decode", 2, 1, 8),)))
    assert plan.reasons[0].constraint == "capacity"
    assert plan.reasons[0].message() == (
        "spec.roles[0]: replica 1 of role decode needs 1 more pod of 8 GPUs; the cluster has room for 0 "
        "such pods (0 GPUs) after the rest of the deployment"
    )
    assert plan.exclusions == {"decode": {"taints": 1}}

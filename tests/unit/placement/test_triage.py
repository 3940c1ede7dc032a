"""Triage decides what happens to a deployment's existing pods, as pure functions: which stay,
which go and why, which replicas a scale-down or a rolling update takes, and what the solver
keeps fixed (unbound pods, sticky GPUs)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from shorthop.placement import constraints, filters, occupancy, snapshot
from shorthop.placement.constraints import HostPort
from shorthop.placement.plan import PodKey
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.triage import (
    Decision,
    PlacedPod,
    PlacedReplica,
    PodState,
    anchor,
    decide,
    missing_pods,
)
from shorthop.topology import fake

from tests import builders

OWNER = "uid-1"
HASH = "h1"
DEPLOYMENT = "d"


def cluster(*pods: dict[str, Any], **nodes: dict[str, Any]) -> ClusterSnapshot:
    """Nodes a (HGX, 8 GPUs), b (HGX, rack r2), down (NotReady), off (cordoned), cpu (no GPUs),
    plus ``nodes`` overriding any of them."""
    cpu = builders.node_object("cpu")
    cpu["status"]["allocatable"].pop("nvidia.com/gpu")
    cpu["metadata"]["labels"].pop("nvidia.com/gpu.product")
    objects = {
        "a": builders.node_object("a"),
        "b": builders.node_object("b", rack="r2"),
        "down": builders.node_object("down", ready=False),
        "off": builders.node_object("off", cordoned=True),
        "cpu": cpu,
        **nodes,
    }
    return snapshot.build(objects.values(), list(pods), fake.CONFIG)


def request(*roles: tuple[str, int, int, int]) -> Request:
    """Roles as (name, replicas, pods per replica, GPUs per pod); prefill -> decode traffic."""
    rs = tuple(RoleRequest(*r) for r in roles)
    names = [r.name for r in rs]
    traffic = (
        (TrafficEdge(names.index("prefill"), names.index("decode"), 1.0),)
        if {"prefill", "decode"} <= set(names)
        else ()
    )
    return Request(roles=rs, traffic=traffic)


def pod(role: str, replica: int, index: int = 0, /, **changes: Any) -> PodState:
    base = PodState(
        name=PodKey(role, replica, index).name(DEPLOYMENT),
        uid=f"u-{role}-{replica}-{index}",
        node="a",
        phase="Running",
        deleting=False,
        ready=True,
        gpus=4,
        exact=(0, 1, 2, 3),
        owner_uid=OWNER,
        role=role,
        replica=replica,
        pod=index,
        template_hash=HASH,
    )
    return replace(base, **changes)


def hashes(req: Request) -> dict[str, str]:
    return {r.name: HASH for r in req.roles}


ONE = request(("r", 1, 1, 4))

# -- decide: one pod, one verdict ------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "verdict", "force", "why"),
    [
        (pod("r", 0), "keep", None, None),
        (pod("r", 0, node=None), "unbound", None, None),
        (pod("r", 0, deleting=True), "busy", None, None),
        (pod("r", 0, owner_uid="uid-0"), "removed", False, "left over from an earlier"),
        (pod("gone", 0), "removed", False, "no longer in the spec"),
        (pod("r", 0, 1), "removed", False, "no longer in the spec"),
        (pod("r", 0, replica=None), "removed", False, "no longer in the spec"),
        (
            pod("r", 0, phase="Failed", failed_reason="OutOfnvidia.com/gpu"),
            "repaired",
            False,
            "pod failed (OutOfnvidia.com/gpu)",
        ),
        (pod("r", 0, phase="Succeeded"), "repaired", False, "pod failed (Succeeded)"),
        (pod("r", 0, node="vanished"), "repaired", True, "node vanished is gone"),
        (pod("r", 0, node="down"), "repaired", True, "node down is NotReady, cordoned"),
        (pod("r", 0, node="off"), "repaired", True, "node off is NotReady, cordoned"),
        (pod("r", 0, node="cpu"), "repaired", True, "no longer a GPU node"),
    ],
    ids=[
        "bound",
        "unbound",
        "being-deleted",
        "other-owner",
        "role-gone",
        "pod-index-out-of-range",
        "no-replica-label",
        "failed",
        "succeeded",
        "node-gone",
        "node-not-ready",
        "node-cordoned",
        "node-without-gpus",
    ],
)
def test_each_pod_gets_one_verdict(
    state: PodState, verdict: str, force: bool | None, why: str | None
) -> None:
    d = decide(ONE, hashes(ONE), OWNER, [state], cluster())
    removed = {r.pod.name: r for r in d.removals}
    assert (state.slot in d.keep) == (verdict == "keep")
    assert (state.slot in d.unbound) == (verdict == "unbound")
    assert (state.name in removed) == (verdict in ("removed", "repaired"))
    assert bool(d.repairs) == (verdict == "repaired")
    if why is not None:
        assert removed[state.name].force is force
        assert why in removed[state.name].why
    # Every pod going away keeps its name busy until the deletion is seen.
    assert (state.name in d.busy_names) == (verdict in ("busy", "removed", "repaired"))
    assert d.terminating == (verdict in ("busy", "removed", "repaired"))


def test_a_name_held_by_a_pod_going_away_is_busy() -> None:
    d = decide(ONE, hashes(ONE), OWNER, [pod("r", 0, deleting=True)], cluster())
    assert d.busy(DEPLOYMENT, PodKey("r", 0, 0))
    assert not d.busy(DEPLOYMENT, PodKey("r", 0, 1))
    assert not d.busy("other", PodKey("r", 0, 0))


def test_removals_keep_the_order_of_the_pods() -> None:
    states = [pod("r", 0, owner_uid="x"), pod("r", 1, owner_uid="x"), pod("r", 2, owner_uid="x")]
    d = decide(ONE, hashes(ONE), OWNER, states, cluster())
    assert [r.pod.name for r in d.removals] == [s.name for s in states]


# -- decide: overcommitted nodes ---------------------------------------------------------------


def test_the_newest_pods_leave_an_overcommitted_node_until_it_fits() -> None:
    req = request(("r", 3, 1, 4))
    states = [pod("r", i, exact=None) for i in range(3)]
    # Our three 4-GPU pods and a foreign 2-GPU pod on an 8-GPU node: 6 GPUs too many.
    snap = cluster(builders.gpu_pod("foreign", "a", 2), *(_bound(s) for s in states))
    assert dict(snap.overcommitted) == {"a": 6}
    d = decide(req, hashes(req), OWNER, states, snap)
    assert [r.pod.name for r in d.removals] == ["d-r-2-0", "d-r-1-0"]
    assert all(r.force for r in d.removals)
    assert set(d.keep) == {PodKey("r", 0, 0)}
    assert "overcommitted" in d.repairs[0]


def _bound(state: PodState) -> dict[str, Any]:
    return builders.gpu_pod(state.name, str(state.node), state.gpus)


# -- decide: scale-down ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "wanted", "removed"),
    [
        # The nodes of each replica's two pods; a replica across two nodes costs more.
        ([("a", "a"), ("a", "a"), ("a", "b")], 2, [2]),
        ([("a", "b"), ("a", "a"), ("b", "b")], 2, [0]),
        # An incomplete (unbound) replica goes before any placed one.
        ([("a", "a"), None, ("a", "b")], 2, [1]),
        # So does one with a pod missing (a crash mid scale-down), though it holds fewer GPUs.
        ([("a", "a"), ("a", "b"), ("a",)], 2, [2]),
        # Equal costs: the highest replica id goes.
        ([("a", "a"), ("a", "a"), ("b", "b")], 1, [2, 1]),
        ([("a", "a"), ("b", "b")], 2, []),
        ([("a", "a"), ("b", "b")], 0, [1, 0]),
    ],
    ids=[
        "spread-last",
        "spread-first",
        "incomplete-first",
        "partly-missing-first",
        "ties-by-id",
        "no-surplus",
        "to-zero",
    ],
)
def test_scale_down_removes_the_replicas_whose_loss_costs_least(
    replicas: list[tuple[str, ...] | None], wanted: int, removed: list[int]
) -> None:
    req = request(("r", wanted, 2, 1))
    states, used = [], {"a": 0, "b": 0}
    for rid, nodes in enumerate(replicas):
        for index, node in enumerate(nodes or (None, None)):
            gpu = used[node or "a"]
            used[node or "a"] += 1
            states.append(pod("r", rid, index, node=node, gpus=1, exact=(gpu,)))
    d = decide(req, hashes(req), OWNER, states, cluster())
    assert d.scaled_away == tuple(("r", rid) for rid in removed)
    assert sorted({r.pod.replica for r in d.removals}) == sorted(removed)
    assert all(r.why == f"scaled r down to {wanted}" for r in d.removals)
    assert not any(k.replica in removed for k in [*d.keep, *d.unbound])


# -- decide: rolling update --------------------------------------------------------------------


TWO = request(("prefill", 1, 1, 4), ("decode", 2, 1, 4))


def _pair(**decode1: Any) -> list[PodState]:
    return [
        pod("decode", 0, node="a"),
        pod("decode", 1, node="b", **decode1),
        pod("prefill", 0, node="a", exact=(4, 5, 6, 7)),
    ]


@pytest.mark.parametrize(
    ("states", "rolled"),
    [
        (_pair(template_hash="old"), ("decode", 1)),
        (_pair(), None),
        (_pair(template_hash="old", ready=False), None),
        ([*_pair(template_hash="old"), pod("decode", 5, deleting=True)], None),
        ([*_pair(template_hash="old")[:2], pod("prefill", 0, node=None)], None),
        (_pair(template_hash="old")[:2], None),
    ],
    ids=[
        "stale-replica",
        "up-to-date",
        "not-ready",
        "old-pod-terminating",
        "unbound-pod",
        "incomplete",
    ],
)
def test_a_template_change_replaces_one_replica_at_a_time(
    states: list[PodState], rolled: tuple[str, int] | None
) -> None:
    d = decide(TWO, hashes(TWO), OWNER, states, cluster())
    assert d.rolled == rolled
    rolled_names = [r.pod.name for r in d.removals if "template" in r.why]
    assert rolled_names == ([PodKey(*rolled, 0).name(DEPLOYMENT)] if rolled else [])


# -- anchor ------------------------------------------------------------------------------------


def _decision(
    *states: PodState, req: Request = ONE, snap: ClusterSnapshot | None = None
) -> Decision:
    return decide(req, hashes(req), OWNER, list(states), snap or cluster())


def test_kept_pods_are_fixed_where_they_are() -> None:
    snap = cluster(_bound(pod("r", 0)))
    a = anchor(_decision(pod("r", 0), snap=snap), ONE, snap, (), {})
    assert a.fixed == {PodKey("r", 0, 0): (snap.index.row_of["a"], (0, 1, 2, 3))}
    assert a.taken == {}  # the snapshot already counts them


@pytest.mark.parametrize(
    ("planned", "exact", "busy", "assumed", "kept"),
    [
        ("a", (0, 1, 2, 3), (), (), True),
        ("a", (0, 1, 2, 3), (2,), (), False),
        ("a", (0, 1, 2, 3), (0, 1, 2, 3), (0, 1, 2, 3), True),
        ("off", (0, 1, 2, 3), (), (), False),
        ("vanished", (0, 1, 2, 3), (), (), False),
        ("a", None, (), (), False),
    ],
    ids=[
        "free",
        "taken",
        "held-by-its-own-assumption",
        "node-cordoned",
        "node-gone",
        "no-gpus-annotated",
    ],
)
def test_an_unbound_pod_is_bound_where_planned_only_while_its_gpus_are_free(
    planned: str,
    exact: tuple[int, ...] | None,
    busy: tuple[int, ...],
    assumed: tuple[int, ...],
    kept: bool,
) -> None:
    snap = cluster(builders.gpu_pod("other", "a", list(busy))) if busy else cluster()
    state = pod("r", 0, node=None, planned_node=planned, exact=exact)
    a = anchor(_decision(state, snap=snap), ONE, snap, (), {state.name: assumed} if assumed else {})
    assert (PodKey("r", 0, 0) in a.bind) == kept
    assert (PodKey("r", 0, 0) in a.fixed) == kept
    assert [r.pod.name for r in a.dropped] == ([] if kept else [state.name])
    if kept:
        assert a.taken == {snap.index.row_of["a"]: 0b1111}


def test_two_unbound_pods_planned_on_the_same_gpus_keep_only_the_first() -> None:
    req = request(("r", 2, 1, 4))
    first = pod("r", 0, node=None, planned_node="a")
    second = pod("r", 1, node=None, planned_node="a")
    snap = cluster()
    a = anchor(_decision(first, second, req=req, snap=snap), req, snap, (), {})
    assert set(a.bind) == {PodKey("r", 0, 0)}
    assert [r.pod.name for r in a.dropped] == [second.name]


def _previous(
    node: str = "b", gpus: tuple[int, ...] = (4, 5, 6, 7), **changes: Any
) -> PlacedReplica:
    return replace(PlacedReplica("r", 0, (PlacedPod(node, gpus),)), **changes)


@pytest.mark.parametrize(
    ("previous", "present", "sticky"),
    [
        (_previous(), [], True),
        (_previous(gpus=(6, 7, 8, 9)), [], False),
        (_previous(gpus=(6, 7)), [], False),
        (_previous(node="off"), [], False),
        (_previous(node="vanished"), [], False),
        (_previous(replica=3), [], False),
        (_previous(pods=()), [], False),
        (_previous(role="other"), [], False),
        (_previous(), [pod("r", 0, node="a")], False),
    ],
    ids=[
        "free",
        "beyond-the-node",
        "wrong-pod-size",
        "node-cordoned",
        "node-gone",
        "scaled-away",
        "pods-missing",
        "role-gone",
        "replica-still-there",
    ],
)
def test_a_replaced_replica_returns_to_its_previous_gpus_when_all_are_free(
    previous: PlacedReplica, present: list[PodState], sticky: bool
) -> None:
    snap = cluster(builders.gpu_pod("other", "b", [0, 1]))
    a = anchor(_decision(*present, snap=snap), ONE, snap, [previous], {})
    key = PodKey("r", 0, 0)
    assert (key in a.sticky) == sticky
    if sticky:
        row = snap.index.row_of["b"]
        assert a.fixed[key] == a.sticky[key] == (row, (4, 5, 6, 7))
        assert a.taken == {row: 0b1111_0000}


def test_a_sticky_replica_whose_gpus_an_unbound_pod_kept_goes_elsewhere() -> None:
    req = request(("r", 2, 1, 4))
    unbound = pod("r", 1, node=None, planned_node="b", exact=(4, 5, 6, 7))
    snap = cluster()
    a = anchor(_decision(unbound, req=req, snap=snap), req, snap, [_previous()], {})
    assert set(a.bind) == {PodKey("r", 1, 0)}
    assert a.sticky == {}


# -- missing pods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ([], True),
        ([PodKey("r", 0, 0), PodKey("r", 0, 1)], True),
        ([PodKey("r", r, p) for r in range(2) for p in range(2)], False),
        ([PodKey("r", r, p) for r in (0, 5) for p in range(2)], True),
        ([PodKey("x", r, p) for r in range(2) for p in range(2)], True),
    ],
    ids=["none", "half", "all", "one-beyond-the-replicas", "other-role"],
)
def test_missing_pods_are_counted_against_the_request(present: list[PodKey], missing: bool) -> None:
    assert missing_pods(request(("r", 2, 2, 1)), present) is missing


# -- anchor and the roles' scheduling rules ----------------------------------------------------


def _rules(snap: ClusterSnapshot, req: Request) -> dict[str, filters.RoleFilter]:
    return {r.name: filters.role_filter(snap, r) for r in req.roles}


def test_a_sticky_replica_does_not_return_to_a_node_excluded_for_its_role() -> None:
    """A kubelet rejected the replica's pod on b: placing it back there would loop."""
    snap = cluster()
    req = request(("r", 1, 1, 4))
    assert anchor(_decision(snap=snap), req, snap, [_previous()], {}, _rules(snap, req)).sticky
    excluded = Request(roles=(replace(req.roles[0], excluded=frozenset({"b"})),))
    a = anchor(_decision(req=excluded, snap=snap), excluded, snap, [_previous()], {},
               _rules(snap, excluded))  # fmt: skip
    assert a.sticky == {}
    assert a.fixed == {}


def test_an_unbound_pod_whose_node_no_longer_matches_its_selector_is_dropped() -> None:
    relabelled = builders.node_object("a")
    relabelled["metadata"]["labels"]["pool"] = "other"
    snap = cluster(a=relabelled)
    rules = constraints.parse({"nodeSelector": {"pool": "mine"}}, "spec.roles[0].template.spec")
    req = Request(roles=(RoleRequest("r", 1, 1, 4, constraints=rules),))
    state = pod("r", 0, node=None, planned_node="a")
    a = anchor(_decision(state, req=req, snap=snap), req, snap, (), {}, _rules(snap, req))
    assert a.bind == {}
    assert [r.why for r in a.dropped] == [
        "created but never bound, and a no longer passes its rules"
    ]


def test_an_unbound_pod_keeps_the_host_port_its_own_assumption_holds() -> None:
    builder = snapshot.SnapshotBuilder(fake.CONFIG)
    builder.apply_node(None, builders.node_object("a"))
    port = HostPort(8000)
    builder.assume(
        f"default/{pod('r', 0).name}", occupancy.Assumed("a", (0, 1, 2, 3), host_ports=(port,))
    )
    snap = builder.freeze()
    rules = constraints.parse(
        {"containers": [{"ports": [{"containerPort": 1, "hostPort": 8000}]}]},
        "spec.roles[0].template.spec",
    )
    req = Request(roles=(RoleRequest("r", 1, 1, 4, constraints=rules),))
    state = pod("r", 0, node=None, planned_node="a")
    a = anchor(_decision(state, req=req, snap=snap), req, snap, (), {state.name: (0, 1, 2, 3)},
               _rules(snap, req))  # fmt: skip
    assert set(a.bind) == {PodKey("r", 0, 0)}


def test_a_bound_pod_stays_when_its_node_stops_matching() -> None:
    """Required node affinity is IgnoredDuringExecution: a running pod is not moved."""
    relabelled = builders.node_object("a")
    relabelled["metadata"]["labels"]["pool"] = "other"
    snap = cluster(_bound(pod("r", 0)), a=relabelled)
    rules = constraints.parse({"nodeSelector": {"pool": "mine"}}, "spec.roles[0].template.spec")
    req = Request(roles=(RoleRequest("r", 1, 1, 4, constraints=rules),))
    decision = _decision(pod("r", 0), req=req, snap=snap)
    assert set(decision.keep) == {PodKey("r", 0, 0)}
    assert not decision.removals
    a = anchor(decision, req, snap, (), {}, _rules(snap, req))
    assert set(a.fixed) == {PodKey("r", 0, 0)}


def test_every_pod_gets_its_own_verdict_whatever_comes_before_it() -> None:
    """One deployment with a pod of every kind, in name order: each is judged as it would be
    alone (a verdict must not end the sorting of the pods after it)."""
    req = request(("r", 8, 1, 4))
    states = [
        pod("r", 0, phase="Failed", failed_reason="OOMKilled"),
        pod("r", 1, node="vanished"),
        pod("r", 2, node="down"),
        pod("r", 3, owner_uid="uid-0"),
        pod("r", 4, deleting=True),
        pod("r", 5, node=None),
        pod("r", 6, node="off"),
        pod("r", 7, exact=(4, 5, 6, 7)),
    ]
    d = decide(req, hashes(req), OWNER, states, cluster())
    removed = {r.pod.name: r for r in d.removals}
    assert sorted(removed) == sorted(states[i].name for i in (0, 1, 2, 3, 6))
    assert [removed[states[i].name].force for i in (0, 1, 2, 3, 6)] == [
        False,
        True,
        True,
        False,
        True,
    ]
    assert set(d.keep) == {states[7].slot}
    assert set(d.unbound) == {states[5].slot}
    assert len(d.repairs) == 4  # failed, node gone, NotReady, cordoned
    assert states[4].name in d.busy_names

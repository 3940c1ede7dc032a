"""placement.nearby: the deployment's home (NVLink domain, else finest shared network domain)
and the new replicas a plan put outside it, with the room the home had."""

from __future__ import annotations

from shorthop.placement import nearby, snapshot
from shorthop.placement.plan import Assignment, PodKey
from shorthop.placement.request import Request, RoleRequest
from shorthop.topology import fake

from tests import builders

REQUEST = Request(roles=(RoleRequest("prefill", 1, 1, 2), RoleRequest("decode", 2, 1, 2)))


def _cluster(extra: list[dict] | None = None) -> snapshot.ClusterSnapshot:
    """Two GB200 racks (cliques k1, k2) of two 4-GPU trays, and an HGX node in another zone."""
    nodes = [
        builders.node_object("t1", "tray", 4, clique="k1", rack="r1"),
        builders.node_object("t2", "tray", 4, clique="k1", rack="r1"),
        builders.node_object("t3", "tray", 4, clique="k2", rack="r2"),
        builders.node_object("t4", "tray", 4, clique="k2", rack="r2"),
        builders.node_object("h1", "hgx", 8, zone="z2", block="b9", rack="r9"),
    ]
    return snapshot.build(nodes, extra or [], fake.CONFIG)


def _rows(snap: snapshot.ClusterSnapshot, *names: str) -> list[int]:
    return [snap.index.row_of[n] for n in names]


def test_home_is_the_nvlink_domain_else_the_finest_shared_network_domain() -> None:
    snap = _cluster()
    found = nearby.home(snap.index, _rows(snap, "t1", "t2"))
    assert found is not None
    assert (found.tier, found.name) == ("nvlink-domain", "k1")
    assert {n for n, r in snap.index.row_of.items() if found.rows[r]} == {"t1", "t2"}
    # Two racks of one block: the block is the narrowest domain holding both.
    found = nearby.home(snap.index, _rows(snap, "t1", "t3"))
    assert found is not None
    assert (found.tier, found.name) == ("block", "b1")
    assert {n for n, r in snap.index.row_of.items() if found.rows[r]} == {"t1", "t2", "t3", "t4"}
    assert nearby.home(snap.index, _rows(snap, "t1", "h1")) is None  # only the cluster
    assert nearby.home(snap.index, []) is None


def _plan(snap: snapshot.ClusterSnapshot, decode_1: str) -> list[Assignment]:
    placed = [
        ("prefill", 0, "t1", (0, 1)),
        ("decode", 0, "t1", (2, 3)),
        ("decode", 1, decode_1, (0, 1)),
    ]
    return [
        Assignment(PodKey(role, rid, 0), node, snap.index.row_of[node], gpus)
        for role, rid, node, gpus in placed
    ]


def _kept(snap: snapshot.ClusterSnapshot) -> dict[PodKey, tuple[int, tuple[int, ...]]]:
    """Prefill 0 and decode 0 stay on t1, in clique k1."""
    row = snap.index.row_of["t1"]
    return {PodKey("prefill", 0, 0): (row, (0, 1)), PodKey("decode", 0, 0): (row, (2, 3))}


def test_a_new_replica_outside_the_home_is_reported_with_the_room_there() -> None:
    # What the plan was made on: t1 held by the kept pods, three GPUs of t2 by another pod.
    snap = _cluster(
        [
            builders.gpu_pod("p0", "t1", [0, 1]),
            builders.gpu_pod("d0", "t1", [2, 3]),
            builders.gpu_pod("bg", "t2", [0, 1, 2]),
        ]
    )
    found = nearby.away(snap, REQUEST, _plan(snap, "t3"), _kept(snap))
    assert found is not None
    assert found.replicas == (("decode", 1),)
    assert (found.home.tier, found.home.name) == ("nvlink-domain", "k1")
    assert found.needed == {"decode": 2}
    assert found.free == {"decode": 1}  # t2's last GPU
    assert found.message() == (
        "decode-1 placed outside nvlink-domain k1 where the deployment runs: "
        "1 GPU free there for role decode (2 needed)"
    )


def test_nothing_is_reported_when_new_replicas_are_home_or_there_is_no_home() -> None:
    snap = _cluster()
    kept = _kept(snap)
    assert nearby.away(snap, REQUEST, _plan(snap, "t2"), kept) is None
    assert nearby.away(snap, REQUEST, _plan(snap, "t3"), {}) is None
    # Kept pods in two zones have no home narrower than the cluster.
    spread = {**kept, PodKey("decode", 0, 0): (snap.index.row_of["h1"], (0, 1))}
    assert nearby.away(snap, REQUEST, _plan(snap, "t3"), spread) is None

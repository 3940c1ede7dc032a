"""LiveCluster keeps free-GPU bitsets right through node and pod events."""

from __future__ import annotations

import numpy as np
from shorthop.controller.live import LiveCluster
from shorthop.topology import fake

from tests import builders


def test_deleted_node_offers_nothing_and_its_row_is_clean() -> None:
    live = LiveCluster(fake.CONFIG)
    for name in ("a", "b"):
        live.apply_node(None, builders.node_object(name))
    live.apply_node("DELETED", builders.node_object("a"))
    snap = live.snapshot()
    assert "a" not in snap.index.row_of
    alive = snap.index.alive
    assert not snap.schedulable[~alive].any()
    assert int(snap.free[~alive].astype(np.int64).sum()) == 0
    assert int(snap.free_counts[snap.index.row_of["b"]]) == 8


def test_pods_take_exact_and_counted_gpus_and_overcommit_is_seen() -> None:
    live = LiveCluster(fake.CONFIG)
    live.apply_node(None, builders.node_object("n", gpus=4))
    live.apply_pod(None, builders.gpu_pod("exact", "n", [0, 1]))
    live.apply_pod(None, builders.gpu_pod("count", "n", 1))
    snap = live.snapshot()
    row = snap.index.row_of["n"]
    assert int(snap.free[row]) == 0b0100  # 0,1 exact; the counted pod takes the highest free
    assert live.snapshot().overcommitted == {}
    live.apply_pod(None, builders.gpu_pod("more", "n", 2))
    assert live.snapshot().overcommitted == {"n": 1}
    live.apply_pod("DELETED", builders.gpu_pod("more", "n", 2))
    assert live.snapshot().overcommitted == {}


def test_assumed_pods_hold_gpus_until_their_event_arrives() -> None:
    live = LiveCluster(fake.CONFIG)
    live.apply_node(None, builders.node_object("n", gpus=4))
    live.assume("default/p", "n", (0, 1, 2))
    row = live.snapshot().index.row_of["n"]
    assert int(live.snapshot().free[row]) == 0b1000
    live.apply_pod(None, builders.gpu_pod("p", "n", [0, 1, 2]))
    assert int(live.snapshot().free[row]) == 0b1000
    live.apply_pod("DELETED", builders.gpu_pod("p", "n", [0, 1, 2]))
    assert int(live.snapshot().free[row]) == 0b1111


def test_node_change_reports_who_to_wake() -> None:
    live = LiveCluster(fake.CONFIG)
    live.apply_node(None, builders.node_object("n"))
    pod = builders.gpu_pod("p", "n", [0])
    pod["metadata"]["labels"] = {"shorthop.io/deployment": "d"}
    live.apply_pod(None, pod)
    change = live.apply_node(None, builders.node_object("n", cordoned=True))
    assert change.gone_or_unusable
    assert change.deployments == {"default/d"}
    back = live.apply_node(None, builders.node_object("n"))
    assert back.gained_capacity


def test_pods_seen_before_their_node_still_hold_its_gpus() -> None:
    live = LiveCluster(fake.CONFIG)
    live.apply_pod(None, builders.gpu_pod("early", "n", [0, 1]))  # the pod informer was faster
    live.apply_node(None, builders.node_object("n", gpus=4))
    snap = live.snapshot()
    assert int(snap.free[snap.index.row_of["n"]]) == 0b1100


def test_a_heartbeat_keeps_the_cached_snapshot_and_a_real_change_does_not() -> None:
    live = LiveCluster(fake.CONFIG)
    live.apply_node(None, builders.node_object("n1"))
    before = live.snapshot()

    heartbeat = builders.node_object("n1")
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-11-23T00:00:10Z"
    change = live.apply_node("MODIFIED", heartbeat)
    assert not change.gone_or_unusable
    assert not change.gained_capacity
    assert live.snapshot() is before, "a heartbeat must not invalidate the snapshot"

    live.apply_node("MODIFIED", builders.node_object("n1", cordoned=True))
    after = live.snapshot()
    assert after is not before
    assert not after.schedulable[after.index.row_of["n1"]]

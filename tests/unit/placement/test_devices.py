"""Busy devices are exact on DRA nodes: every device any ResourceClaim's allocation names is busy,
whoever allocated it; two holders of one GPU are found; shorthop's pods whose claims went wrong
are named."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.errors import DeviceError
from shorthop.placement import devices, snapshot
from shorthop.placement.occupancy import Assumed
from shorthop.placement.snapshot import ClusterSnapshot, SnapshotBuilder
from shorthop.topology import fake

from tests import builders

CONFIG = fake.CONFIG


def _snap(*objects: dict[str, Any], gpus: int = 8) -> ClusterSnapshot:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    return snapshot.build(
        [builders.dra_node("n1", gpus=gpus)],
        by_kind.get("Pod", []),
        CONFIG,
        resource_slices=[builders.gpu_slice("n1", gpus=gpus), *by_kind.get("ResourceSlice", [])],
        claims=by_kind.get("ResourceClaim", []),
    )


def _free(snap: ClusterSnapshot) -> list[int]:
    mask = int(snap.free[snap.index.row_of["n1"]])
    return [g for g in range(8) if mask >> g & 1]


# -- reading claims ------------------------------------------------------------------------------


def test_a_claim_is_read_with_its_owner_devices_node_and_reservations() -> None:
    body = builders.claim(
        "c", [("n1", "gpu-3"), ("n1", "gpu-4")], owner=("p", "u1"), reserved=["u1"], node="n1"
    )
    record = devices.read_claim(body)
    assert record.holder == "default/p"
    assert record.owner_uid == "u1"
    assert [d.device for d in record.devices] == ["gpu-3", "gpu-4"]
    assert (record.node, record.reserved, record.wanted) == ("n1", ("u1",), 1)


def test_admin_access_results_are_not_allocations() -> None:
    body = builders.claim("c", [("n1", "gpu-3")])
    body["status"]["allocation"]["devices"]["results"][0]["adminAccess"] = True
    assert not devices.read_claim(body).allocated


@pytest.mark.parametrize(
    ("request_body", "wanted"),
    [
        ({"name": "r", "exactly": {"deviceClassName": "x", "count": 3}}, 3),
        ({"name": "r", "exactly": {"deviceClassName": "x"}}, 1),
        ({"name": "r", "deviceClassName": "x", "count": 2}, 2),  # v1beta1
        ({"name": "r", "exactly": {"deviceClassName": "x", "allocationMode": "All"}}, 64),
        (
            {"name": "r", "firstAvailable": [{"name": "a", "count": 4}, {"name": "b", "count": 2}]},
            4,
        ),
    ],
    ids=["exact", "default-count", "v1beta1", "all", "first-available"],
)
def test_what_a_claim_asks_for_in_any_version(request_body: dict[str, Any], wanted: int) -> None:
    body = builders.claim("c")
    body["spec"]["devices"]["requests"] = [request_body]
    assert devices.read_claim(body).wanted == wanted


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        ({"status": {"allocation": {"devices": {"results": "x"}}}}, "status.allocation.devices.results"),
        ({"status": {"allocation": {"devices": {"results": [{"driver": "d", "pool": "p"}]}}}},
         "status.allocation.devices.results[0].device"),
        ({"status": {"reservedFor": {}}}, "status.reservedFor"),
        ({"metadata": {"name": "c", "ownerReferences": "p"}}, "metadata.ownerReferences"),
        ({"spec": {"devices": {"requests": [{"exactly": {"count": "2"}}]}}},
         "spec.devices.requests[0].exactly.count"),
    ],
)  # fmt: skip
def test_a_malformed_claim_field_is_an_error_naming_it(damage: dict[str, Any], field: str) -> None:
    body = {**builders.claim("c"), **damage}
    with pytest.raises(DeviceError) as raised:
        devices.read_claim(body)
    assert str(raised.value).startswith(f"{field} ")


# -- busy devices --------------------------------------------------------------------------------


def test_devices_of_any_claim_are_busy_whoever_allocated_them() -> None:
    foreign = builders.claim("k-gpu", [("n1", "gpu-0"), ("n1", "gpu-5")], owner=("k", "uk"))
    orphan = builders.claim("loose", [("n1", "gpu-7")])  # no pod owns it: still allocated
    assert _free(_snap(foreign, orphan)) == [1, 2, 3, 4, 6]


def test_claims_for_other_pools_drivers_or_unknown_devices_take_nothing_here() -> None:
    snap = _snap(
        builders.claim("a", [("n2", "gpu-0")]),
        builders.claim("b", [("n1", "gpu-1")], driver="nic.example.com"),
        builders.claim("c", [("n1", "gpu-12")]),
        builders.claim("d"),  # not allocated
    )
    assert _free(snap) == list(range(8))


def test_tainted_devices_are_never_free() -> None:
    devices_ = [builders.gpu_device(i) for i in range(8)]
    devices_[6]["taints"] = [{"key": "xid", "effect": "NoSchedule"}]
    snap = snapshot.build(
        [builders.dra_node("n1")], [], CONFIG,
        resource_slices=[builders.resource_slice("n1", devices_)],
    )  # fmt: skip
    assert _free(snap) == [0, 1, 2, 3, 4, 5, 7]


def test_a_mig_slice_allocated_makes_its_gpu_busy() -> None:
    mig = builders.gpu_device(0, name="gpu-2-mig-1g.10gb-0", kind="mig")
    mig["attributes"]["parentUUID"] = builders.gpu_device(2)["attributes"]["uuid"]
    whole = builders.gpu_slice("n1")
    whole["spec"]["devices"].append(mig)
    snap = snapshot.build(
        [builders.dra_node("n1")], [], CONFIG, resource_slices=[whole],
        claims=[builders.claim("m", [("n1", "gpu-2-mig-1g.10gb-0")])],
    )  # fmt: skip
    assert 2 not in _free(snap)


def test_nothing_is_free_while_the_pool_is_incomplete_but_pods_stay_usable() -> None:
    half = builders.resource_slice("n1", [builders.gpu_device(i) for i in range(4)], count=2)
    snap = snapshot.build([builders.dra_node("n1", gpus=4)], [], CONFIG, resource_slices=[half])
    assert _free(snap) == []
    assert snap.usable("n1")


def test_a_pod_and_its_own_claim_are_one_holder() -> None:
    pod = builders.dra_pod("p", "n1", [2, 3], "p-gpus")
    own = builders.claim("p-gpus", [("n1", "gpu-2"), ("n1", "gpu-3")], owner=("p", "uid-p"))
    snap = _snap(pod, own)
    assert _free(snap) == [0, 1, 4, 5, 6, 7]
    assert (snap.contested, snap.mismatched, snap.unclaimed) == (set(), set(), set())
    assert dict(snap.overcommitted) == {}


def test_a_gpu_in_two_claims_names_shorthops_pod_as_contested() -> None:
    pod = builders.dra_pod("p", "n1", [0, 1], "p-gpus")
    own = builders.claim("p-gpus", [("n1", "gpu-0"), ("n1", "gpu-1")], owner=("p", "uid-p"))
    raced = builders.claim("k-gpu", [("n1", "gpu-1")], owner=("k", "uid-k"))
    snap = _snap(pod, own, raced)
    assert snap.contested == {"default/p", "default/k"}


def test_a_claim_holding_other_devices_than_the_pod_planned_is_a_mismatch() -> None:
    pod = builders.dra_pod("p", "n1", [0, 1], "p-gpus")
    other = builders.claim("p-gpus", [("n1", "gpu-4"), ("n1", "gpu-5")], owner=("p", "uid-p"))
    vanished = builders.claim("p-gpus", [("n1", "gpu-0"), ("n1", "gpu-9")], owner=("p", "uid-p"))
    assert _snap(pod, other).mismatched == {"default/p"}
    assert _snap(pod, vanished).mismatched == {"default/p"}


def test_a_bound_pod_without_an_allocated_claim_is_unclaimed() -> None:
    pod = builders.dra_pod("p", "n1", [0, 1], "p-gpus")
    stale = builders.claim("p-gpus", [("n1", "gpu-0")], owner=("p", "uid-earlier"))
    assert _snap(pod).unclaimed == {"default/p"}
    assert _snap(pod, builders.claim("p-gpus", owner=("p", "uid-p"))).unclaimed == {"default/p"}
    assert _snap(pod, stale).unclaimed == {"default/p"}
    assert _free(_snap(pod)) == [2, 3, 4, 5, 6, 7]  # its annotated GPUs stay taken


def test_a_pod_nominated_here_holds_the_lowest_free_gpus_its_claims_ask_for() -> None:
    """kube-scheduler nominates the pod before it writes the claim's allocation, and its
    allocator takes devices in order."""
    taken = builders.claim("x", [("n1", "gpu-0")])
    pending = builders.claim("k-gpu", owner=("k", "uid-k"), count=2)
    nominated = builders.dra_pod("k", None, None, "k-gpu", nominated="n1", phase="Pending")
    snap = _snap(taken, pending, nominated)
    assert _free(snap) == [3, 4, 5, 6, 7]
    allocated = builders.claim("k-gpu", [("n1", "gpu-1"), ("n1", "gpu-2")], owner=("k", "uid-k"))
    assert _free(_snap(taken, allocated, nominated)) == [3, 4, 5, 6, 7]


def test_an_assumed_pod_and_the_claim_it_then_writes_are_one_holder() -> None:
    builder = SnapshotBuilder(CONFIG)
    builder.apply_slice(None, builders.gpu_slice("n1"))
    builder.apply_node(None, builders.dra_node("n1"))
    builder.assume("default/p", Assumed("n1", (4, 5)))
    builder.apply_claim(
        None, builders.claim("p-gpus", [("n1", "gpu-4"), ("n1", "gpu-5")], owner=("p", "uid-p"))
    )
    snap = builder.freeze()
    assert not snap.contested
    assert builder.holders("n1") == {4: frozenset({"default/p"}), 5: frozenset({"default/p"})}


def test_a_slice_arriving_after_its_node_models_the_node_again() -> None:
    builder = SnapshotBuilder(CONFIG)
    builder.apply_node(None, builders.dra_node("n1"))
    assert builder.freeze().index.row_of == {}
    assert builder.apply_slice(None, builders.gpu_slice("n1")) == {"n1"}
    snap = builder.freeze()
    assert snap.node_devices("n1") is not None
    assert builder.apply_slice("DELETED", builders.gpu_slice("n1")) == {"n1"}
    assert builder.freeze().node_devices("n1") is None


def test_plan_devices_are_listed_in_the_order_of_the_gpus() -> None:
    snap = _snap()
    found = snap.node_devices("n1")
    assert found is not None
    refs = devices.refs(found, (5, 1))
    assert [r.to_json() for r in refs] == [
        {"driver": "gpu.nvidia.com", "pool": "n1", "device": "gpu-5"},
        {"driver": "gpu.nvidia.com", "pool": "n1", "device": "gpu-1"},
    ]


# -- what kube-scheduler will take next ----------------------------------------------------------


def _builder(*objects: dict[str, Any]) -> SnapshotBuilder:
    builder = SnapshotBuilder(CONFIG)
    builder.apply_slice(None, builders.gpu_slice("n1"))
    builder.apply_node(None, builders.dra_node("n1"))
    for o in objects:
        if o["kind"] == "ResourceClaim":
            builder.apply_claim(None, o)
        else:
            builder.apply_pod(None, o)
    return builder


def test_a_nominated_pod_is_predicted_from_what_kube_scheduler_sees() -> None:
    """GPUs shorthop has only assumed are not in any claim, so kube-scheduler's allocator may
    hand them out: the nominated pod is predicted on the lowest GPUs no claim holds, and the
    binder's last check then finds shorthop's own GPUs taken by that pod."""
    pending = builders.claim("k-gpu", owner=("k", "uid-k"), count=2)
    nominated = builders.dra_pod("k", None, None, "k-gpu", nominated="n1", phase="Pending")
    builder = _builder(pending, nominated)
    builder.assume("default/p", Assumed("n1", (0, 1)))
    held = builder.holders("n1")
    assert held[0] == {"default/p", "default/k"}
    assert held[1] == {"default/p", "default/k"}
    assert 2 not in held


def test_pending_claim_pods_name_the_first_free_devices_as_kube_scheduler_sees_them() -> None:
    taken = builders.claim("x", [("n1", "gpu-0")])
    pods = [
        (builders.claim(f"t{i}-gpu", owner=(f"t{i}", f"uid-t{i}")),
         builders.dra_pod(f"t{i}", None, None, f"t{i}-gpu", phase="Pending"))
        for i in range(3)
    ]  # fmt: skip
    builder = _builder(taken, *(o for pair in pods for o in pair))
    assert builder.next_taken("n1") == [1, 2, 3]
    # One found unschedulable by kube-scheduler takes nothing.
    stuck = pods[0][1] | {
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        }
    }
    builder.apply_pod("MODIFIED", stuck)
    assert builder.next_taken("n1") == [1, 2]
    # A pod that got its node is no longer pending.
    builder.apply_pod("DELETED", pods[1][1])
    assert builder.next_taken("n1") == [1]


def test_equally_good_gpu_subsets_are_chosen_from_the_highest_indices() -> None:
    """kube-scheduler's allocator takes the lowest free devices; shorthop keeps away from them
    when the topology cost ties."""
    from shorthop.placement import subsets

    snap = _snap()
    cls = snap.index.classes[int(snap.index.class_of[snap.index.row_of["n1"]])]
    best = subsets.table(cls).pick(0xFF, 2)
    assert best is not None
    assert best[0] == 0b11000000  # GPUs 6 and 7 (NVSwitch: every pair costs the same)
    assert subsets.table(cls).pick(0b00001111, 2) == (0b00001100, best[1])

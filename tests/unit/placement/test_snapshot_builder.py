"""The snapshot builder: any sequence of node, pod, ResourceSlice and ResourceClaim events (and
assumed pods) applied incrementally gives the same snapshot as a cold build from the final objects
(Kueue's invariant for its TAS snapshot), and the one rule of what a pod takes holds for
``shorthop plan`` and the operator alike."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shorthop.placement import occupancy, snapshot
from shorthop.placement.constraints import HostPort
from shorthop.placement.occupancy import Assumed
from shorthop.placement.snapshot import ClusterSnapshot, SnapshotBuilder
from shorthop.topology import fake

from tests import builders
from tests.hypothesis_profiles import examples

CONFIG = fake.CONFIG
NODES = ("n0", "n1", "n2", "n3")
PODS = ("p0", "p1", "p2", "p3")
SLICES = tuple(f"{n}-{part}" for n in NODES for part in "ab")
CLAIMS = ("c0", "c1", "c2", "c3")
# Sequences are cheap (objects come from fixed tables), so many of them; long ones are wanted.
SEQUENCES = settings(
    max_examples=examples(2000), suppress_health_check=[HealthCheck.data_too_large]
)

# -- objects ---------------------------------------------------------------------------------
# Drawn from fixed tables of variants (a seeded generator covers the space once), so that
# thousands of sequences run in seconds: drawing one index is cheap, building objects is not.


def _topology(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["hgx", "tray", "pcie", "cpu-only", "dra", "dra"])
    return {
        "kind": kind,
        "gpus": rng.randint(1, 4 if kind == "tray" else 8),
        "clique": rng.choice([None, "k1"]) if kind == "tray" else None,
        "rack": rng.choice(["r1", "r2"]),
        "bad_count": rng.random() < 0.1,  # a label issue
    }


def _node(rng: random.Random, name: str, topology: dict[str, Any]) -> dict[str, Any]:
    """A node of the given topology (or one the label parser leaves out) in any state."""
    if topology["kind"] == "cpu-only":
        body = builders.node_object(name, ready=rng.random() < 0.7)
        del body["metadata"]["labels"]["nvidia.com/gpu.product"]
        del body["status"]["allocatable"]["nvidia.com/gpu"]
        return body
    if topology["kind"] == "dra":
        # GPUs in a ResourceSlice (if one names the node); labels may disagree with it.
        body = builders.dra_node(name, rng.choice(["hgx", "pcie"]), topology["gpus"])
        body["status"]["conditions"][0]["status"] = rng.choice(["True", "True", "False"])
        return body
    taints = [
        {"key": rng.choice("ab"), "value": "v", "effect": effect}
        for effect in rng.sample(["NoSchedule", "NoExecute", "PreferNoSchedule"], rng.randint(0, 2))
    ]
    body = builders.node_object(
        name,
        topology["kind"],
        topology["gpus"],
        clique=topology["clique"],
        rack=topology["rack"],
        ready=rng.random() < 0.7,
        cordoned=rng.random() < 0.2,
        taints=taints,
    )
    allocatable = body["status"]["allocatable"]
    allocatable["cpu"] = rng.choice(["64", "2", "500m", "junk"])
    # Labels node selectors read, changed without relabelling the topology.
    body["metadata"]["labels"]["pool"] = rng.choice(["a", "b"])
    if rng.random() < 0.5:
        body["metadata"]["labels"]["memory"] = rng.choice(["80", "141"])
    if rng.random() < 0.3:
        del allocatable["memory"]  # the default applies
    if rng.random() < 0.4:
        allocatable["rdma/ib"] = rng.choice(["1", "4", "junk"])  # other resources: counted
    if rng.random() < 0.2:
        allocatable["hugepages-2Mi"] = rng.choice(["0", "1Gi"])
    if topology["bad_count"]:
        body["metadata"]["labels"]["nvidia.com/gpu.count"] = "x"
    return body


def _variants(rng: random.Random, name: str) -> list[dict[str, Any]]:
    """A few topologies, each in several states: state changes without relabelling are what
    the operator sees most."""
    return [_node(rng, name, t) for t in [_topology(rng) for _ in range(6)] for _ in range(6)]


def _slice(rng: random.Random, name: str) -> dict[str, Any]:
    """One slice of a node's pool: whole or half of a pool, of two generations, tainted or MIG
    devices, another driver's, or one that cannot be read."""
    node = name.rpartition("-")[0]
    gpus = rng.randint(1, 8)
    devices = [
        builders.gpu_device(
            i,
            numa=rng.choice([None, i % 2]),
            root=rng.choice([None, f"pci0000:{i // 2:02x}"]),
            taints=[{"key": "xid", "effect": "NoSchedule"}] if rng.random() < 0.1 else None,
        )
        for i in range(gpus)
    ]
    if rng.random() < 0.2:
        mig = builders.gpu_device(0, name="gpu-0-mig-1g.10gb-0", kind="mig")
        mig["attributes"]["parentUUID"] = devices[0]["attributes"]["uuid"]
        devices.append(mig)
    half = rng.random() < 0.3
    if half:  # the pool is split over two slices (a, b): each lists its half of the devices
        part = name.endswith("-b")
        devices = [d for i, d in enumerate(devices) if (i % 2 == 1) == part]
    body = builders.resource_slice(
        node,
        devices,
        name=name,
        generation=rng.choice([1, 1, 2]),
        count=2 if half else 1,
        driver=rng.choice([builders.DRIVER] * 5 + ["nic.example.com"]),
    )
    if rng.random() < 0.05:
        body["spec"]["devices"] = "broken"
    return body


def _claim(rng: random.Random, name: str) -> dict[str, Any]:
    """A claim allocated to devices of any node's pool (some not published), owned by a pod or
    not, being deleted, or not allocated yet."""
    allocated = [
        (rng.choice(NODES), f"gpu-{rng.randint(0, 9)}") for _ in range(rng.choice([0, 1, 1, 2, 4]))
    ]
    owner = rng.choice([None, *((p, f"uid-{p}") for p in PODS)])
    return builders.claim(
        name,
        sorted(set(allocated)),
        owner=owner,
        count=rng.randint(1, 4),
        reserved=[owner[1]] if owner and rng.random() < 0.8 else [],
        node=rng.choice([None, *NODES]),
        deleting=rng.random() < 0.1,
    )


def _resources(gpus: int, cpu: str | None, rdma: int = 0) -> dict[str, Any]:
    resources: dict[str, Any] = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    if cpu is not None:
        resources.setdefault("requests", {})["cpu"] = cpu
    if rdma:
        resources.setdefault("limits", {})["rdma/ib"] = str(rdma)
    return {"resources": resources}


def _pod(rng: random.Random, name: str) -> dict[str, Any]:
    """A pod anywhere (a known node, an unknown one, unbound) with any GPU claim."""
    if rng.random() < 0.3:
        # A pod using a ResourceClaim: shorthop's (GPUs annotated) or another scheduler's,
        # bound or nominated to a node.
        node = rng.choice([*NODES, None])
        return builders.dra_pod(
            name,
            node,
            rng.choice([None, sorted(rng.sample(range(8), rng.randint(1, 4)))]),
            rng.choice(CLAIMS),
            nominated=None if node else rng.choice([None, *NODES]),
            phase=rng.choice(["Running", "Pending", "Succeeded"]),
        )
    gpus = rng.randint(0, 10)
    exact = rng.choice(
        [None, None, [0, 1], sorted(rng.sample(range(10), rng.randint(1, 9))), list(range(gpus))]
    )
    ports = [
        {"containerPort": 1, "hostPort": port, "protocol": rng.choice(["TCP", "UDP"])}
        for port in rng.sample([8000, 8001, 9000], rng.choice([0, 0, 1, 2]))
    ]
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": {}},
        "spec": {
            "nodeName": rng.choice([*NODES, "ghost", None]),
            "containers": [
                {
                    **_resources(gpus, rng.choice([None, "1", "250m"]), rng.choice([0, 0, 1, 2])),
                    "ports": ports,
                }
            ],
            "initContainers": [
                _resources(rng.randint(0, 6), "2") for _ in range(rng.choice([0, 0, 1, 2]))
            ],
        },
        "status": {"phase": rng.choice(["Running", "Running", "Pending", "Succeeded", "Failed"])},
    }
    if exact:
        pod["metadata"]["annotations"]["shorthop.io/gpus"] = ",".join(map(str, exact))
    return pod


_RNG = random.Random(20261128)
NODE_VARIANTS = {n: _variants(_RNG, n) for n in NODES}
POD_VARIANTS = {p: [_pod(_RNG, p) for _ in range(80)] for p in PODS}
SLICE_VARIANTS = {s: [_slice(_RNG, s) for _ in range(24)] for s in SLICES}
CLAIM_VARIANTS = {c: [_claim(_RNG, c) for _ in range(40)] for c in CLAIMS}


@dataclass(frozen=True)
class Event:
    # node, node-deleted, pod, pod-deleted, slice, slice-deleted, claim, claim-deleted,
    # assume, forget, freeze
    kind: str
    name: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    assumed: Assumed | None = None


ASSUMED_GPUS = ((), (0,), (0, 1), (6, 7), (2, 3, 4, 5))
ASSUMED_PORTS = ((), (HostPort(8000),), (HostPort(9000, "UDP"),))
KINDS = (
    "node", "node", "node-deleted", "pod", "pod", "pod", "pod-deleted", "assume", "forget",
    "slice", "slice", "slice-deleted", "claim", "claim", "claim-deleted",
)  # fmt: skip


def event(code: int) -> Event:
    """One event from one integer (hypothesis draws and shrinks integers cheaply)."""
    code, kind = divmod(code, len(KINDS) + 1)
    if kind == len(KINDS):
        return Event("freeze")
    code, which = divmod(code, 24)
    node, pod = NODES[which % len(NODES)], PODS[which % len(PODS)]
    name, claim = SLICES[which % len(SLICES)], CLAIMS[which % len(CLAIMS)]
    if KINDS[kind] == "slice":
        return Event("slice", name, SLICE_VARIANTS[name][code % len(SLICE_VARIANTS[name])])
    if KINDS[kind] == "slice-deleted":
        return Event("slice-deleted", name)
    if KINDS[kind] == "claim":
        return Event("claim", claim, CLAIM_VARIANTS[claim][code % len(CLAIM_VARIANTS[claim])])
    if KINDS[kind] == "claim-deleted":
        return Event("claim-deleted", claim)
    if KINDS[kind] == "node":
        return Event("node", node, NODE_VARIANTS[node][code % len(NODE_VARIANTS[node])])
    if KINDS[kind] == "pod":
        return Event("pod", pod, POD_VARIANTS[pod][code % len(POD_VARIANTS[pod])])
    if KINDS[kind] == "assume":
        gpus = ASSUMED_GPUS[code % len(ASSUMED_GPUS)]
        ports = ASSUMED_PORTS[code // 10 % len(ASSUMED_PORTS)]
        other = (("rdma/ib", 1),) if code % 3 == 0 else ()
        assumed = Assumed(node, gpus, 1000 * (code // 5 % 2), 0, ports, other)
        return Event("assume", pod, assumed=assumed)
    return Event(KINDS[kind], node if KINDS[kind] == "node-deleted" else pod)


EVENTS = st.lists(st.integers(0, 2**16).map(event), max_size=30)


# -- the model: the final objects ------------------------------------------------------------


@dataclass
class Final:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    assumed: dict[str, Assumed] = field(default_factory=dict)
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, event: Event, live: SnapshotBuilder) -> None:
        key = f"default/{event.name}"
        if event.kind == "slice":
            self.slices[event.name] = event.body
            live.apply_slice("MODIFIED", event.body)
        elif event.kind == "slice-deleted":
            self.slices.pop(event.name, None)
            live.apply_slice("DELETED", {"metadata": {"name": event.name}})
        elif event.kind == "claim":
            self.claims[event.name] = event.body
            live.apply_claim("MODIFIED", event.body)
        elif event.kind == "claim-deleted":
            self.claims.pop(event.name, None)
            live.apply_claim("DELETED", {"metadata": {"name": event.name, "namespace": "default"}})
        elif event.kind == "node":
            self.nodes[event.name] = event.body
            live.apply_node("MODIFIED", event.body)
        elif event.kind == "node-deleted":
            self.nodes.pop(event.name, None)
            live.apply_node("DELETED", {"metadata": {"name": event.name}})
        elif event.kind == "pod":
            self.pods[event.name] = event.body
            if event.body["spec"].get("nodeName"):
                self.assumed.pop(key, None)  # seen bound: no longer assumed
            live.apply_pod("MODIFIED", event.body)
        elif event.kind == "pod-deleted":
            self.pods.pop(event.name, None)
            self.assumed.pop(key, None)
            live.apply_pod("DELETED", {"metadata": {"name": event.name, "namespace": "default"}})
        elif event.kind == "assume":
            assert event.assumed is not None
            self.assumed[key] = event.assumed
            live.assume(key, event.assumed)
        elif event.kind == "forget":
            self.assumed.pop(key, None)
            live.forget(key)
        else:
            live.freeze()

    def cold(self) -> ClusterSnapshot:
        builder = SnapshotBuilder(CONFIG)
        for body in self.slices.values():
            builder.apply_slice(None, body)
        for body in self.nodes.values():
            builder.apply_node(None, body)
        for body in self.claims.values():
            builder.apply_claim(None, body)
        for body in self.pods.values():
            builder.apply_pod(None, body)
        for key, held in self.assumed.items():
            builder.assume(key, held)
        return builder.freeze()


def by_node(snap: ClusterSnapshot) -> dict[str, tuple[Any, ...]]:
    """Every per-row fact, keyed by node name (rows are numbered differently by an index that
    has seen nodes come and go)."""
    return {
        name: (
            int(snap.free[row]),
            int(snap.free_counts[row]),
            tuple(int(h) for h in snap.headroom[row]),
            bool(snap.schedulable[row]),
            int(snap.foreign[row]),
            snap.taints.get(row, ()),
            snap.index.topologies[row],
            dict(snap.node_labels.of(row)),
            snap.host_ports.get(row, ()),
            # other resources left (a name no node offers and no pod asks for any more: 0)
            {n: int(left[row]) for n, left in snap.other.items() if int(left[row])},
        )
        for name, row in snap.index.row_of.items()
    }


def assert_same(incremental: ClusterSnapshot, cold: ClusterSnapshot) -> None:
    assert by_node(incremental) == by_node(cold)
    assert incremental.unavailable == cold.unavailable
    assert incremental.issues == cold.issues
    assert dict(incremental.overcommitted) == dict(cold.overcommitted)
    assert incremental.contested == cold.contested
    assert incremental.mismatched == cold.mismatched
    assert incremental.unclaimed == cold.unclaimed
    # Rows of nodes that left the index offer nothing.
    gone = ~incremental.index.alive
    assert not incremental.schedulable[gone].any()
    assert not incremental.free[gone].astype(bool).any()
    assert not incremental.free_counts[gone].any()
    assert set(incremental.taints) <= set(incremental.index.row_of.values())
    assert set(incremental.host_ports) <= set(incremental.index.row_of.values())
    # The label table's index answers like the labels it holds (built lazily, maybe reused).
    for snap in (incremental, cold):
        for value, rows in snap.node_labels.values("pool").items():
            assert all(snap.node_labels.of(int(r))["pool"] == value for r in rows)


@SEQUENCES
@given(EVENTS, st.booleans())
def test_events_applied_incrementally_give_the_cold_build(
    sequence: list[Event], read_each: bool
) -> None:
    """``read_each``: a snapshot is frozen after every event (the operator reads between
    events), else only where the sequence says (several events pile up between reads)."""
    live = SnapshotBuilder(CONFIG)
    final = Final()
    for event in sequence:
        final.apply(event, live)
        if read_each:
            live.freeze()
    assert_same(live.freeze(), final.cold())
    if not final.assumed:
        cold = snapshot.build(
            final.nodes.values(),
            final.pods.values(),
            CONFIG,
            resource_slices=final.slices.values(),
            claims=final.claims.values(),
        )
        assert_same(live.freeze(), cold)


# -- the rule, case by case ------------------------------------------------------------------


def _one_node(*pods: dict[str, Any], gpus: int = 8) -> ClusterSnapshot:
    return snapshot.build([builders.node_object("n", gpus=gpus)], list(pods), CONFIG)


def test_a_heartbeat_keeps_the_frozen_snapshot_and_a_readiness_change_too() -> None:
    builder = SnapshotBuilder(CONFIG)
    node = builders.node_object("n")
    builder.apply_node(None, node)
    pod = builders.gpu_pod("p", "n", [0, 1])
    builder.apply_pod(None, pod)
    before = builder.freeze()
    beat = copy.deepcopy(node)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:00Z"
    assert not builder.apply_node("MODIFIED", beat)
    ready = copy.deepcopy(pod)
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert not builder.apply_pod("MODIFIED", ready)
    assert builder.freeze() is before


def test_init_containers_count_when_larger_than_the_containers_together() -> None:
    pod = builders.gpu_pod("p", "n", 2)
    pod["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "1", "memory": "1Gi"}
    pod["spec"]["initContainers"] = [{"resources": {"requests": {"cpu": "3"}}}]
    snap = _one_node(pod)
    cpu, memory, slots = snap.headroom[0]
    assert (cpu, memory, slots) == (64_000 - 3_000, 512 * 2**30 - 2**30, 109)


def test_a_limit_without_a_request_counts_as_the_request() -> None:
    pod = builders.gpu_pod("p", "n", 1)
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "2"
    assert int(_one_node(pod).headroom[0][0]) == 62_000


def test_a_template_and_the_pod_made_from_it_take_the_same() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "4", "memory": "1Gi"}}}],
    }
    usage = occupancy.pod_usage({"metadata": {"name": "p"}, "spec": {**spec, "nodeName": "n"}})
    assert occupancy.resource_request(spec) == (usage.cpu_millis, usage.memory_bytes)
    assert (usage.cpu_millis, usage.memory_bytes) == (4000, 2 * 2**30)


def test_counted_pods_are_capped_at_the_node_and_overcommit_is_reported() -> None:
    snap = _one_node(builders.gpu_pod("big", "n", 12), gpus=8)
    assert int(snap.foreign[0]) == 8
    assert int(snap.free_counts[0]) == 0
    assert dict(snap.overcommitted) == {"n": 4}


def test_an_annotation_that_does_not_fit_the_pod_or_node_counts_instead() -> None:
    wrong_length = builders.gpu_pod("a", "n", 2)
    wrong_length["metadata"]["annotations"]["shorthop.io/gpus"] = "0"
    out_of_range = builders.gpu_pod("b", "n", [3, 9])
    snap = _one_node(wrong_length, out_of_range, gpus=8)
    assert int(snap.foreign[0]) == 4
    assert int(snap.free[0]) == 0b0000_1111  # the highest four taken


def test_finished_pods_and_pods_elsewhere_take_nothing() -> None:
    done = builders.gpu_pod("done", "n", [0, 1], phase="Succeeded")
    unbound = builders.gpu_pod("unbound", "n", [2, 3])
    del unbound["spec"]["nodeName"]
    snap = _one_node(done, unbound)
    assert int(snap.free_counts[0]) == 8
    assert int(snap.headroom[0][2]) == 110


def test_unavailable_nodes_say_why_and_offer_nothing() -> None:
    snap = snapshot.build(
        [
            builders.node_object("down", ready=False),
            builders.node_object("cordoned", cordoned=True),
            {**builders.node_object("cpu"), "status": {"allocatable": {"cpu": "8"}}},
        ],
        [],
        CONFIG,
    )
    assert snap.unavailable["cordoned"] == "node cordoned is cordoned"
    assert snap.unavailable["down"] == "node down is not Ready"
    assert "nvidia.com/gpu] is absent" in snap.unavailable["cpu"]
    assert not snap.schedulable.any()
    assert np.all(snap.free == 0)
    assert snap.known("cpu")
    assert not snap.usable("cpu")
    assert not snap.known("elsewhere")


def test_with_taken_marks_gpus_used_without_touching_the_original() -> None:
    snap = _one_node()
    taken = snap.with_taken({0: 0b11})
    assert (int(taken.free[0]), int(taken.free_counts[0])) == (0b1111_1100, 6)
    assert (int(snap.free[0]), int(snap.free_counts[0])) == (0xFF, 8)
    assert snap.with_taken({}) is snap


def test_host_ports_of_active_and_assumed_pods_are_bound_on_their_node() -> None:
    web = builders.gpu_pod("web", "n", 1)
    web["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    done = builders.gpu_pod("done", "n", 1, phase="Failed")
    done["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 9090}]
    builder = SnapshotBuilder(CONFIG)
    builder.apply_node(None, builders.node_object("n"))
    for pod in (web, done):
        builder.apply_pod(None, pod)
    builder.assume("default/next", Assumed("n", (5,), host_ports=(HostPort(53, "UDP"),)))
    snap = builder.freeze()
    assert snap.host_ports == {0: (HostPort(53, "UDP"), HostPort(8080))}
    builder.forget("default/next")
    builder.apply_pod("DELETED", web)
    assert builder.freeze().host_ports == {}


def test_node_labels_are_kept_and_a_relabelled_node_gives_a_new_table() -> None:
    builder = SnapshotBuilder(CONFIG)
    node = builders.node_object("n")
    builder.apply_node(None, node)
    first = builder.freeze()
    assert first.node_labels.of(0)["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    builder.apply_pod(None, builders.gpu_pod("p", "n", [0]))
    assert builder.freeze().node_labels is first.node_labels, "pods do not rebuild the table"
    relabelled = copy.deepcopy(node)
    relabelled["metadata"]["labels"]["pool"] = "b"
    assert builder.apply_node("MODIFIED", relabelled)
    assert builder.freeze().node_labels.of(0)["pool"] == "b"

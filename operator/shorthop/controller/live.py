"""The operator's live view of the cluster: watch events in, snapshots and pod records out.

``LiveCluster`` feeds every node, pod, ResourceSlice and ResourceClaim event to one long-lived
:class:`~shorthop.placement.snapshot.SnapshotBuilder` (the rules of what a pod takes and what a
node offers live there, shared with ``shorthop plan``), keeps the DeviceClasses, and keeps what
only the shell needs: the
pod records the reconciler reads (by deployment and by node), which deployments an event
concerns, and the expiry of *assumed* pods — pods the operator has just bound whose watch event
has not arrived yet (as kube-scheduler does), so two reconciles in a row never hand out the same
GPUs. Thread-safe: the informer threads write, the reconcile workers read.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shorthop.placement import devices, occupancy, snapshot
from shorthop.placement.constraints import HostPort
from shorthop.placement.triage import PodState
from shorthop.topology import labels, slices
from shorthop.topology.levels import TopologyConfig

DEPLOYMENT_LABEL = "shorthop.io/deployment"
ROLE_LABEL = "shorthop.io/role"
REPLICA_LABEL = "shorthop.io/replica"
POD_LABEL = "shorthop.io/pod"
TEMPLATE_LABEL = "shorthop.io/template-hash"
PLANNED_NODE_ANNOTATION = "shorthop.io/planned-node"
PEERS_ANNOTATION = "shorthop.io/peers"  # paired peers the pod was told: role-replica,...
ASSUME_SECONDS = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PodRecord(PodState):
    """One pod as the operator knows it: what triage reads, and where it belongs."""

    key: str  # namespace/name
    deployment: str | None  # namespace/name of the owning InferenceDeployment
    usage: occupancy.PodUsage  # what it takes on its node


def _as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _shared(value: Any) -> str | None:
    """One string object for a value many pods repeat (namespace, phase, role, deployment,
    template hash, owner): 100,000 records then hold a few thousand strings, not a million."""
    return None if value is None else sys.intern(str(value))


def parse_peers(value: Any) -> tuple[tuple[str, int], ...]:
    """``prefill-0,prefill-2`` -> ``(("prefill", 0), ("prefill", 2))``; what does not parse is
    skipped (the annotation is informational to everyone but shorthop)."""
    if not isinstance(value, str):
        return ()
    out = []
    for item in value.split(","):
        role, _, replica = item.strip().rpartition("-")
        if role and replica.isdigit():
            out.append((role, int(replica)))
    return tuple(out)


def pod_record(body: Mapping[str, Any]) -> PodRecord:
    meta = occupancy.as_map(body.get("metadata"))
    status = occupancy.as_map(body.get("status"))
    pod_labels = occupancy.as_map(meta.get("labels"))
    annotations = occupancy.as_map(meta.get("annotations"))
    owners = [
        o
        for o in occupancy.as_list(meta.get("ownerReferences"))
        if isinstance(o, Mapping) and o.get("kind") == "InferenceDeployment"
    ]
    usage = occupancy.pod_usage(body)
    namespace, _, name = usage.key.partition("/")
    deployment = pod_labels.get(DEPLOYMENT_LABEL)
    conditions = occupancy.as_list(status.get("conditions"))
    return PodRecord(
        key=usage.key,
        namespace=sys.intern(namespace),
        name=name,
        uid=str(meta.get("uid", "")),
        node=usage.node,
        phase=sys.intern(str(status.get("phase") or "Pending")),
        deleting=bool(meta.get("deletionTimestamp")),
        ready=any(
            isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
            for c in conditions
        ),
        gpus=usage.gpus,
        exact=usage.exact,
        deployment=_shared(f"{namespace}/{deployment}") if deployment else None,
        owner_uid=_shared(owners[0].get("uid")) if owners else None,
        role=_shared(pod_labels.get(ROLE_LABEL)),
        replica=_as_int(pod_labels.get(REPLICA_LABEL)),
        pod=_as_int(pod_labels.get(POD_LABEL)),
        template_hash=_shared(pod_labels.get(TEMPLATE_LABEL)),
        failed_reason=_shared(status.get("reason")),
        planned_node=_shared(annotations.get(PLANNED_NODE_ANNOTATION)),
        peers=parse_peers(annotations.get(PEERS_ANNOTATION)),
        claims=usage.claims,
        usage=usage,
    )


@dataclass(frozen=True, slots=True)
class NodeChange:
    """What a node event changed, so the caller knows whom to wake up."""

    name: str
    gone_or_unusable: bool  # deleted, NotReady, cordoned, or left out
    gained_capacity: bool
    deployments: frozenset[str] = frozenset()  # deployments with pods on the node


@dataclass(frozen=True, slots=True)
class ClaimChange:
    """What a ResourceClaim event changed."""

    changed: bool  # a GPU of a known pool is concerned
    freed: bool  # it holds fewer devices than before
    deployment: str | None  # the deployment of the pod that owns it, if shorthop's


class LiveCluster:
    """Mutable cluster state; see the module docstring."""

    def __init__(self, config: TopologyConfig, *, driver: str = slices.DEFAULT_DRIVER) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._builder = snapshot.SnapshotBuilder(config, driver=driver)
        self._classes: dict[str, Mapping[str, Any]] = {}
        self._pods: dict[str, PodRecord] = {}
        self._by_deployment: dict[str, set[str]] = defaultdict(set)
        self._node_pods: dict[str, set[str]] = defaultdict(set)
        self._assumed_until: dict[str, float] = {}  # pod key -> monotonic expiry
        self.synced = threading.Event()

    # -- events ----------------------------------------------------------------------------

    def apply_node(self, event: str | None, body: Mapping[str, Any]) -> NodeChange:
        name = occupancy.node_name(body)
        with self._lock:
            offer = None if event == "DELETED" else self._builder.offer(body)
            if offer is not None and self._builder.node(name) == offer:
                # A heartbeat (kubelet/kwok status every few seconds per node): nothing shorthop
                # reads changed, so the cached snapshot stays valid.
                return NodeChange(name, False, False)
            before = self._builder.usable(name)
            before_free = self._builder.free_count(name)
            affected = frozenset(self.deployments_on(name))
            if offer is None:
                changed = self._builder.remove_node(name)
            else:
                changed = self._builder.put_node(offer)
            if not changed:
                return NodeChange(name, False, False)  # deleted before it was ever seen
            after = self._builder.usable(name)
            gained = (after and not before) or self._builder.free_count(name) > before_free
            return NodeChange(name, before and not after, gained, affected)

    def apply_pod(self, event: str | None, body: Mapping[str, Any]) -> PodRecord:
        record = pod_record(body)
        key = record.key
        with self._lock:
            old = self._pods.pop(key, None)
            if old is not None:
                if old.node:
                    self._node_pods[old.node].discard(key)
                if old.deployment:
                    self._by_deployment[old.deployment].discard(key)
            if event == "DELETED":
                self._builder.remove_pod(key)
                self._assumed_until.pop(key, None)
                return record
            self._pods[key] = record
            if record.node:
                self._node_pods[record.node].add(key)
                self._assumed_until.pop(key, None)
            if record.deployment:
                self._by_deployment[record.deployment].add(key)
            self._builder.put_pod(record.usage)
        return record

    def apply_slice(self, event: str | None, body: Mapping[str, Any]) -> list[NodeChange]:
        """A ResourceSlice event: the nodes modelled again because of it."""
        with self._lock:
            changed = self._builder.apply_slice(event, body)
            return [
                NodeChange(
                    name,
                    not self._builder.usable(name),
                    self._builder.free_count(name) > 0,
                    frozenset(self.deployments_on(name)),
                )
                for name in changed
            ]

    def apply_claim(self, event: str | None, body: Mapping[str, Any]) -> ClaimChange:
        meta = occupancy.as_map(body.get("metadata"))
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        with self._lock:
            before = self._builder.claim(key)
            changed = self._builder.apply_claim(event, body)
            after = self._builder.claim(key)
            record = after or before
            pod = self._pods.get(record.holder) if record is not None else None
            held = len(after.devices) if after else 0
            return ClaimChange(
                changed,
                before is not None and held < len(before.devices),
                pod.deployment if pod is not None else None,
            )

    def apply_device_class(self, event: str | None, body: Mapping[str, Any]) -> None:
        name = str(occupancy.as_map(body.get("metadata")).get("name") or "")
        with self._lock:
            if event == "DELETED":
                self._classes.pop(name, None)
            else:
                self._classes[name] = body

    def device_class(self, name: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._classes.get(name)

    def node_devices(self, node: str) -> slices.NodeDevices | None:
        """The GPU index -> device map of a DRA node (None for other nodes)."""
        with self._lock:
            offer = self._builder.node(node)
            topology = offer.parsed.topology if offer is not None else None
            return topology.devices if topology is not None else None

    def taken_by_others(self, pod_key: str, node: str, gpus: Sequence[int]) -> list[int]:
        """The GPUs among ``gpus`` of a DRA node that someone other than the pod holds now (a
        claim of another scheduler written since the plan, a pod it is binding there) or that
        another scheduler's pending pods would take first."""
        with self._lock:
            held = self._builder.holders(node)
            soon = set(self._builder.next_taken(node))
            return [g for g in gpus if held.get(g, frozenset()) - {pod_key} or g in soon]

    def claims_of(self, pod_key: str) -> list[devices.ClaimRecord]:
        """The ResourceClaims the pod owns."""
        with self._lock:
            return self._builder.claims_of(pod_key)

    def assume(
        self,
        key: str,
        node: str,
        gpus: tuple[int, ...],
        cpu_millis: int = 0,
        memory_bytes: int = 0,
        *,
        host_ports: tuple[HostPort, ...] = (),
        other: occupancy.Amounts = (),
    ) -> None:
        """Count GPUs (and host ports, other resources) as taken by a pod the operator is
        binding, until its event arrives."""
        with self._lock:
            assumed = occupancy.Assumed(node, gpus, cpu_millis, memory_bytes, host_ports, other)
            self._builder.assume(key, assumed)
            self._assumed_until[key] = time.monotonic() + ASSUME_SECONDS

    def forget(self, key: str) -> None:
        with self._lock:
            self._builder.forget(key)
            self._assumed_until.pop(key, None)

    # -- reads -----------------------------------------------------------------------------

    def pods_of(self, deployment: str) -> list[PodRecord]:
        with self._lock:
            return sorted(
                (self._pods[k] for k in self._by_deployment.get(deployment, ()) if k in self._pods),
                key=lambda p: p.name,
            )

    def pod_count(self) -> int:
        with self._lock:
            return len(self._pods)

    def pod_keys(self) -> list[str]:
        """The ``namespace/name`` of every pod held (the pod informer's record of what it saw)."""
        with self._lock:
            return list(self._pods)

    def pod(self, key: str) -> PodRecord | None:
        with self._lock:
            return self._pods.get(key)

    def assumed_gpus(self, key: str, node: str | None) -> tuple[int, ...]:
        """The GPUs held for pod ``key`` on ``node``: assumed for it, or held by its own
        allocated ResourceClaims (a pod whose claim was written before a crash)."""
        with self._lock:
            entry = self._builder.assumed(key)
            held = set(entry.gpus) if entry is not None and entry.node == node else set()
            found = self.node_devices(node) if node is not None else None
            if found is not None:
                own = [c for c in self._builder.claims_of(key) if c.allocated]
                gpus = devices.claim_gpus(found, own) if own else None
                held.update(gpus or ())
            return tuple(sorted(held))

    def deployments_on(self, node: str) -> set[str]:
        with self._lock:
            found = (
                self._pods[k].deployment for k in self._node_pods.get(node, ()) if k in self._pods
            )
            return {d for d in found if d}

    def overcommitted(self, node: str) -> int:
        """GPUs bound on ``node`` beyond what it has (another scheduler's bind raced ours)."""
        with self._lock:
            return self._builder.overcommitted(node)

    def issues(self) -> list[labels.NodeIssue]:
        with self._lock:
            return self._builder.issues()

    def snapshot(self) -> snapshot.ClusterSnapshot:
        """The current state as an immutable snapshot (cached until something changes)."""
        with self._lock:
            self._expire_assumed()
            return self._builder.freeze()

    # -- internals -------------------------------------------------------------------------

    def _expire_assumed(self) -> None:
        now = time.monotonic()
        for key in [k for k, until in self._assumed_until.items() if until < now]:
            del self._assumed_until[key]
            self._builder.forget(key)

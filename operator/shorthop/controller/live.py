"""The operator's live view of the cluster, fed by watch events and read as snapshots.

``LiveCluster`` keeps, per node, its parsed topology and availability, and per pod what it
occupies; the topology index is updated incrementally (``IndexBuilder``) and every node's free-GPU
bitset is recomputed only when one of its pods or the node itself changes. ``snapshot()`` then
costs a few array copies, so a reconcile on a 10,000-node cluster does not re-read the cluster.

Pods the operator has just bound but whose watch event has not arrived yet are *assumed* (as
kube-scheduler does), so two reconciles in a row never hand out the same GPUs. Thread-safe: kopf's
event handlers write from the event loop, the reconcile worker reads from its thread.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shorthop import quantity
from shorthop.placement import snapshot as snap
from shorthop.topology import labels
from shorthop.topology.index import IndexBuilder, TopologyIndex
from shorthop.topology.levels import TopologyConfig

DEPLOYMENT_LABEL = "shorthop.io/deployment"
ROLE_LABEL = "shorthop.io/role"
REPLICA_LABEL = "shorthop.io/replica"
POD_LABEL = "shorthop.io/pod"
TEMPLATE_LABEL = "shorthop.io/template-hash"
PLANNED_NODE_ANNOTATION = "shorthop.io/planned-node"
ASSUME_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class PodRecord:
    """What the operator needs to know about one pod."""

    key: str  # namespace/name
    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str
    deleting: bool
    ready: bool
    gpus: int
    exact: tuple[int, ...] | None  # shorthop's GPU annotation
    cpu_millis: int
    memory_bytes: int
    deployment: str | None  # namespace/name of the owning InferenceDeployment
    owner_uid: str | None
    role: str | None
    replica: int | None
    pod: int | None
    template_hash: str | None
    failed_reason: str | None = None
    planned_node: str | None = None

    @property
    def active(self) -> bool:
        return self.phase not in ("Succeeded", "Failed")


def pod_record(body: Mapping[str, Any]) -> PodRecord:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    pod_labels = meta.get("labels") or {}
    owners = [
        o for o in meta.get("ownerReferences") or [] if o.get("kind") == "InferenceDeployment"
    ]
    ns, name = str(meta.get("namespace", "default")), str(meta.get("name"))
    deployment = pod_labels.get(DEPLOYMENT_LABEL)

    def as_int(value: Any) -> int | None:
        return int(value) if isinstance(value, str) and value.isdigit() else None

    cpu, mem = snap.resource_request(spec)
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    exact = snap.parse_gpu_annotation(
        str((meta.get("annotations") or {}).get(snap.GPU_ANNOTATION, ""))
    )
    return PodRecord(
        key=f"{ns}/{name}",
        namespace=ns,
        name=name,
        uid=str(meta.get("uid", "")),
        node=spec.get("nodeName"),
        phase=str(status.get("phase") or "Pending"),
        deleting=bool(meta.get("deletionTimestamp")),
        ready=ready,
        gpus=snap.gpu_request(spec),
        exact=exact,
        cpu_millis=cpu,
        memory_bytes=mem,
        deployment=f"{ns}/{deployment}" if deployment else None,
        owner_uid=str(owners[0].get("uid")) if owners else None,
        role=pod_labels.get(ROLE_LABEL),
        replica=as_int(pod_labels.get(REPLICA_LABEL)),
        pod=as_int(pod_labels.get(POD_LABEL)),
        template_hash=pod_labels.get(TEMPLATE_LABEL),
        failed_reason=status.get("reason"),
        planned_node=(meta.get("annotations") or {}).get(PLANNED_NODE_ANNOTATION),
    )


_NodeParts = tuple[dict[int, tuple[labels.Taint, ...]], dict[str, str], list[labels.NodeIssue]]


@dataclass
class _Node:
    parsed: labels.ParsedNode
    allocatable: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class NodeChange:
    """What a node event changed, so the caller knows whom to wake up."""

    name: str
    gone_or_unusable: bool  # deleted, NotReady, cordoned, or left out
    gained_capacity: bool
    deployments: frozenset[str] = frozenset()  # deployments with pods on the node


class LiveCluster:
    """Mutable cluster state; see the module docstring."""

    def __init__(self, config: TopologyConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._builder = IndexBuilder(config)
        self._nodes: dict[str, _Node] = {}
        self._pods: dict[str, PodRecord] = {}
        self._assumed: dict[str, tuple[str, tuple[int, ...], int, int, float]] = {}
        self._by_deployment: dict[str, set[str]] = defaultdict(set)
        self._node_pods: dict[str, set[str]] = defaultdict(set)
        self._rows = 0
        self._free = np.zeros(0, dtype=np.uint64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._foreign = np.zeros(0, dtype=np.int32)
        self._headroom = np.zeros((0, 3), dtype=np.int64)
        self._schedulable = np.zeros(0, dtype=np.bool_)
        self._overcommit: dict[str, int] = {}
        self._node_version = 0
        self._parts: tuple[tuple[int, int], _NodeParts] | None = None
        self._cached: snap.ClusterSnapshot | None = None
        self.synced = threading.Event()

    # -- events ----------------------------------------------------------------------------

    def apply_node(self, event: str | None, body: Mapping[str, Any]) -> NodeChange:
        name = str((body.get("metadata") or {}).get("name"))
        if event != "DELETED":
            parsed = labels.parse_node(body, self.config)
            alloc = ((body.get("status") or {}).get("allocatable")) or {}
            allocatable = (
                quantity.parse(alloc.get("cpu", "1000000"), milli=True) or 0,
                quantity.parse(alloc.get("memory", "1Ei")) or 0,
                quantity.parse(alloc.get("pods", "110")) or 0,
            )
        with self._lock:
            old = self._nodes.get(name)
            if event != "DELETED" and old == _Node(parsed, allocatable):
                # A heartbeat (kubelet/kwok status every few seconds per node): nothing shorthop
                # reads changed, so the cached snapshot stays valid.
                return NodeChange(name, False, False)
            self._node_version += 1
            before = self._usable(name)
            before_free = self._free_of(name)
            affected = frozenset(self.deployments_on(name))
            old_row = self._builder.row(name)
            if event == "DELETED":
                # Its pods stay known: they still exist in the API and must be cleaned up.
                self._nodes.pop(name, None)
                self._builder.remove(name)
                self._clear_row(old_row)
            else:
                self._nodes[name] = _Node(parsed, allocatable)
                if parsed.topology is None:
                    self._builder.remove(name)
                    self._clear_row(old_row)
                elif old is None or old.parsed.topology != parsed.topology:
                    self._builder.upsert(parsed.topology)
                self._grow()
                self._recompute(name)
            self._cached = None
            after = self._usable(name)
            gained = (after and not before) or self._free_of(name) > before_free
            return NodeChange(name, before and not after, gained, affected)

    def apply_pod(self, event: str | None, body: Mapping[str, Any]) -> PodRecord:
        record = pod_record(body)
        with self._lock:
            old = self._pods.pop(record.key, None)
            if old is not None:
                if old.node:
                    self._node_pods[old.node].discard(record.key)
                if old.deployment:
                    self._by_deployment[old.deployment].discard(record.key)
            if event != "DELETED":
                self._pods[record.key] = record
                if record.node:
                    # Kept per node name even before the node itself is seen (the two
                    # informers start in parallel).
                    self._node_pods[record.node].add(record.key)
                if record.deployment:
                    self._by_deployment[record.deployment].add(record.key)
                if record.node:
                    self._assumed.pop(record.key, None)
            else:
                self._assumed.pop(record.key, None)
            for node in {old.node if old else None, record.node} - {None}:
                self._recompute(str(node))
            self._cached = None
        return record

    def assume(
        self, key: str, node: str, gpus: tuple[int, ...], cpu_millis: int = 0, memory_bytes: int = 0
    ) -> None:
        """Count GPUs as taken by a pod the operator is binding, until its event arrives."""
        with self._lock:
            self._assumed[key] = (
                node,
                gpus,
                cpu_millis,
                memory_bytes,
                time.monotonic() + ASSUME_SECONDS,
            )
            self._recompute(node)
            self._cached = None

    def forget(self, key: str) -> None:
        with self._lock:
            entry = self._assumed.pop(key, None)
            if entry is not None:
                self._recompute(entry[0])
                self._cached = None

    # -- reads -----------------------------------------------------------------------------

    def pods_of(self, deployment: str) -> list[PodRecord]:
        with self._lock:
            return sorted(
                (self._pods[k] for k in self._by_deployment.get(deployment, ()) if k in self._pods),
                key=lambda p: p.name,
            )

    def pod(self, key: str) -> PodRecord | None:
        with self._lock:
            return self._pods.get(key)

    def assumed_gpus(self, key: str, node: str | None) -> tuple[int, ...]:
        """The GPUs assumed for pod ``key`` on ``node`` (none when it has no assumption there)."""
        with self._lock:
            entry = self._assumed.get(key)
            return entry[1] if entry is not None and entry[0] == node else ()

    def node_usable(self, name: str | None) -> bool:
        with self._lock:
            return name is not None and self._usable(name)

    def node_exists(self, name: str | None) -> bool:
        with self._lock:
            return name is not None and name in self._nodes

    def overcommitted(self, node: str | None) -> int:
        """GPUs bound on ``node`` beyond what it has (0 when it is not overcommitted)."""
        with self._lock:
            return self._overcommit.get(str(node), 0)

    def deployments_on(self, node: str) -> set[str]:
        with self._lock:
            found = (
                self._pods[k].deployment for k in self._node_pods.get(node, ()) if k in self._pods
            )
            return {d for d in found if d}

    def issues(self) -> list[labels.NodeIssue]:
        with self._lock:
            return [i for n in self._nodes.values() for i in n.parsed.issues]

    def snapshot(self) -> snap.ClusterSnapshot:
        """The current state as an immutable snapshot (cached until something changes)."""
        with self._lock:
            self._expire_assumed()
            if self._cached is not None:
                return self._cached
            index = self._builder.freeze()
            rows = len(index.names)
            self._grow()
            taints, unavailable, issues = self._node_parts(index)
            free, schedulable = self._free[:rows].copy(), self._schedulable[:rows].copy()
            headroom, foreign = self._headroom[:rows].copy(), self._foreign[:rows].copy()
            counts = self._counts[:rows].copy()
            for array in (free, schedulable, headroom, foreign, counts):
                array.setflags(write=False)
            self._cached = snap.ClusterSnapshot(
                index=index,
                free=free,
                schedulable=schedulable,
                headroom=headroom,
                taints=taints,
                foreign=foreign,
                issues=tuple(issues),
                unavailable=unavailable,
                free_counts=counts,
            )
            return self._cached

    # -- internals -------------------------------------------------------------------------

    def _node_parts(self, index: TopologyIndex) -> _NodeParts:
        """Taints, unavailable nodes and label issues: they change only with node events, so
        they are recomputed only then."""
        if self._parts is not None and self._parts[0] == (self._node_version, index.generation):
            return self._parts[1]
        taints: dict[int, tuple[labels.Taint, ...]] = {}
        unavailable: dict[str, str] = {}
        issues: list[labels.NodeIssue] = []
        for name, node in self._nodes.items():
            issues.extend(node.parsed.issues)
            row = index.row_of.get(name)
            if row is None:
                excluded = [i.message() for i in node.parsed.issues if i.excluded]
                unavailable[name] = excluded[0] if excluded else "no GPUs"
                continue
            if not node.parsed.state.ready:
                unavailable[name] = f"node {name} is not Ready"
            elif node.parsed.state.unschedulable:
                unavailable[name] = f"node {name} is cordoned"
            effects = ("NoSchedule", "NoExecute")
            hard = tuple(t for t in node.parsed.state.taints if t.effect in effects)
            if hard:
                taints[row] = hard
        self._parts = ((self._node_version, index.generation), (taints, unavailable, issues))
        return taints, unavailable, issues

    def _usable(self, name: str) -> bool:
        node = self._nodes.get(name)
        if node is None or node.parsed.topology is None:
            return False
        return node.parsed.state.ready and not node.parsed.state.unschedulable

    def _free_of(self, name: str) -> int:
        row = self._builder.row(name)
        return int(self._counts[row]) if row is not None and row < len(self._counts) else 0

    def _grow(self) -> None:
        size = self._builder.size
        if size <= len(self._free):
            return
        extra = max(size - len(self._free), len(self._free))
        self._free = np.concatenate([self._free, np.zeros(extra, dtype=np.uint64)])
        self._counts = np.concatenate([self._counts, np.zeros(extra, dtype=np.int64)])
        self._foreign = np.concatenate([self._foreign, np.zeros(extra, dtype=np.int32)])
        self._headroom = np.concatenate([self._headroom, np.zeros((extra, 3), dtype=np.int64)])
        self._schedulable = np.concatenate([self._schedulable, np.zeros(extra, dtype=np.bool_)])

    def _recompute(self, name: str) -> None:
        """Free GPUs, headroom and schedulability of one node from its pods."""
        row = self._builder.row(name)
        node = self._nodes.get(name)
        if row is None or node is None or node.parsed.topology is None:
            if row is not None and row < len(self._free):
                self._free[row], self._counts[row], self._schedulable[row] = 0, 0, False
            return
        self._grow()
        gpus = node.parsed.topology.gpus
        mask = (1 << gpus) - 1
        cpu, mem, pods = node.allocatable
        counted = 0
        bound = 0  # GPUs requested by every active pod on the node (and assumed ones)
        on_node = self._node_pods.get(name, set())
        for key in on_node:
            pod = self._pods.get(key)
            if pod is None or not pod.active:
                continue
            cpu, mem, pods = cpu - pod.cpu_millis, mem - pod.memory_bytes, pods - 1
            if pod.gpus <= 0:
                continue
            bound += pod.gpus
            if pod.exact is not None and len(pod.exact) == pod.gpus and max(pod.exact) < gpus:
                mask &= ~snap.mask_of(pod.exact)
            else:
                counted += pod.gpus
        for key, (node_name, exact, a_cpu, a_mem, _) in self._assumed.items():
            if node_name == name and key not in on_node:
                mask &= ~snap.mask_of(exact)
                bound += len(exact)
                cpu, mem, pods = cpu - a_cpu, mem - a_mem, pods - 1
        left = counted
        for g in range(gpus - 1, -1, -1):
            if left == 0:
                break
            if mask >> g & 1:
                mask &= ~(1 << g)
                left -= 1
        # More GPUs bound than the node has: a bind raced with another scheduler. The
        # reconciler moves its own pods off such nodes.
        if bound > gpus:
            self._overcommit[name] = bound - gpus
        else:
            self._overcommit.pop(name, None)
        usable = (
            node.parsed.state.ready
            and not node.parsed.state.unschedulable
            and gpus <= snap.MAX_GPUS_PER_NODE
        )
        self._free[row] = np.uint64(mask if usable else 0)
        self._counts[row] = mask.bit_count() if usable else 0
        self._foreign[row] = counted
        self._headroom[row] = (cpu, mem, pods)
        self._schedulable[row] = usable

    def _clear_row(self, row: int | None) -> None:
        """A row whose node left the index offers nothing (the builder may reuse it later)."""
        if row is not None and row < len(self._free):
            self._free[row], self._counts[row], self._schedulable[row] = 0, 0, False
            self._foreign[row] = 0
            self._headroom[row] = 0

    def _expire_assumed(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._assumed.items() if v[4] < now]:
            node = self._assumed.pop(key)[0]
            self._recompute(node)
            self._cached = None

"""The per-cycle cluster state: which GPUs are free on which node, as bitsets.

Built from Node and Pod objects (plain mappings, as ``kubectl get -o yaml`` or the API return them)
over a shared :class:`~shorthop.topology.index.TopologyIndex`. Rules (the ``shorthop plan``
contract):

- a pod occupies GPUs when it has ``spec.nodeName``, is not ``Succeeded``/``Failed`` and requests
  ``nvidia.com/gpu`` (the larger of its containers' sum and any init container);
- a pod carrying shorthop's annotation (``shorthop.io/gpus: "0,1,2,3"``) occupies exactly those
  indices; any other GPU pod occupies a count, taken from the highest free indices (the device
  plugin picks real indices, so this only keeps counts right);
- nodes that are NotReady, cordoned, or left out by the topology parser offer nothing; nodes with
  ``NoSchedule``/``NoExecute`` taints offer GPUs only to requests that tolerate them;
- CPU, memory and pod-count headroom are tracked too, so a pod is never planned onto a node whose
  kubelet would reject it.

The snapshot is immutable; the solver works on copies of ``free``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shorthop import quantity
from shorthop.topology import labels
from shorthop.topology.index import IndexBuilder, TopologyIndex
from shorthop.topology.levels import TopologyConfig

GPU_ANNOTATION = "shorthop.io/gpus"
MAX_GPUS_PER_NODE = labels.MAX_GPUS_PER_NODE  # one uint64 bitset per node
_INT64 = 2**63 - 1
_GPU_INDEX = re.compile(r"[0-9]{1,4}")  # ASCII digits: str.isdigit() also accepts "²"
CPU, MEMORY, PODS = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str | None = None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None

    def tolerates(self, taint: labels.Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.key is None or self.key == "":
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or (self.value or "") == taint.value


def _map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else empty: snapshot files and pod templates may hold
    anything where a mapping belongs."""
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def tolerations_of(pod_spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    out = []
    for t in _list(_map(pod_spec).get("tolerations")):
        if isinstance(t, Mapping):
            out.append(
                Toleration(
                    _str(t.get("key")),
                    str(t.get("operator") or "Equal"),
                    _str(t.get("value")),
                    _str(t.get("effect")),
                )
            )
    return tuple(out)


def gpu_request(pod_spec: Mapping[str, Any]) -> int:
    """GPUs a pod needs: max(sum over containers, max over init containers)."""

    def of(container: Any) -> int:
        if not isinstance(container, Mapping):
            return 0
        resources = _map(container.get("resources"))
        for kind in ("limits", "requests"):
            value = _map(resources.get(kind)).get(labels.GPU_RESOURCE)
            if value is not None:
                return quantity.parse(value) or 0
        return 0

    pod_spec = _map(pod_spec)
    main = sum(of(c) for c in _list(pod_spec.get("containers")))
    init = max((of(c) for c in _list(pod_spec.get("initContainers"))), default=0)
    return max(main, init)


def resource_request(pod_spec: Mapping[str, Any]) -> tuple[int, int]:
    """(CPU millicores, memory bytes) a pod requests, init containers included."""

    def of(container: Any) -> tuple[int, int]:
        if not isinstance(container, Mapping):
            return (0, 0)
        requests = _map(_map(container.get("resources")).get("requests"))
        return (
            quantity.parse(requests.get("cpu", 0), milli=True) or 0,
            quantity.parse(requests.get("memory", 0)) or 0,
        )

    pod_spec = _map(pod_spec)
    main = [of(c) for c in _list(pod_spec.get("containers"))]
    init = [of(c) for c in _list(pod_spec.get("initContainers"))]
    return (
        max(sum(c for c, _ in main), max((c for c, _ in init), default=0)),
        max(sum(m for _, m in main), max((m for _, m in init), default=0)),
    )


def parse_gpu_annotation(value: str) -> tuple[int, ...] | None:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(_GPU_INDEX.fullmatch(p) for p in parts):
        return None
    return tuple(int(p) for p in parts)


def mask_of(gpus: Iterable[int]) -> int:
    m = 0
    for g in gpus:
        m |= 1 << g
    return m


def bits(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(MAX_GPUS_PER_NODE) if mask >> i & 1)


@dataclass(frozen=True, eq=False)
class ClusterSnapshot:
    """Free GPUs per node (row of ``index``) for one planning cycle. Read-only."""

    index: TopologyIndex
    free: NDArray[np.uint64]  # [rows] bitset of free GPUs (0 where the node offers nothing)
    schedulable: NDArray[np.bool_]  # [rows] present, Ready, not cordoned
    headroom: NDArray[np.int64]  # [rows, 3] CPU millicores, memory bytes, pods left
    taints: dict[int, tuple[labels.Taint, ...]]  # rows with NoSchedule/NoExecute taints
    foreign: NDArray[np.int32]  # [rows] GPUs taken by other pods (count)
    issues: tuple[labels.NodeIssue, ...]
    unavailable: dict[str, str] = field(default_factory=dict)  # node -> why it offers nothing
    free_counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def free_count(self) -> NDArray[np.int64]:
        return self.free_counts

    def usable_rows(self, tolerations: tuple[Toleration, ...] = ()) -> NDArray[np.bool_]:
        """Rows a pod with these tolerations may use."""
        usable = self.schedulable.copy()
        for row, taints in self.taints.items():
            if not all(any(t.tolerates(taint) for t in tolerations) for taint in taints):
                usable[row] = False
        return usable


def build(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    config: TopologyConfig,
    *,
    builder: IndexBuilder | None = None,
) -> ClusterSnapshot:
    """Snapshot from Node and Pod objects. Pass a long-lived ``builder`` to update its index
    incrementally instead of building a new one (the controller does)."""
    builder = builder or IndexBuilder(config)
    parsed = [labels.parse_node(n, config) for n in nodes]
    seen: set[str] = set()
    issues: list[labels.NodeIssue] = []
    unavailable: dict[str, str] = {}
    for p in parsed:
        issues.extend(p.issues)
        seen.add(p.name)
        if p.topology is None:
            builder.remove(p.name)
            reasons = [i.message() for i in p.issues if i.excluded]
            unavailable[p.name] = reasons[0] if reasons else "no GPUs"
        else:
            builder.upsert(p.topology)
    for name in builder.node_names() - seen:
        builder.remove(name)
    index = builder.freeze()
    rows = len(index.names)
    schedulable = np.zeros(rows, dtype=np.bool_)
    free = np.zeros(rows, dtype=np.uint64)
    headroom = np.zeros((rows, 3), dtype=np.int64)
    taints: dict[int, tuple[labels.Taint, ...]] = {}
    node_objects = {
        str(_map(n.get("metadata")).get("name")): n for n in nodes if isinstance(n, Mapping)
    }
    for p in parsed:
        row = index.row_of.get(p.name)
        if row is None:
            continue
        gpus = index.gpus(row)
        if gpus > MAX_GPUS_PER_NODE:
            unavailable[p.name] = (
                f"node {p.name}: {gpus} GPUs; shorthop models at most {MAX_GPUS_PER_NODE} per node"
            )
            continue
        if not p.state.ready:
            unavailable[p.name] = f"node {p.name} is not Ready"
            continue
        if p.state.unschedulable:
            unavailable[p.name] = f"node {p.name} is cordoned"
            continue
        schedulable[row] = True
        free[row] = np.uint64((1 << gpus) - 1)
        hard = tuple(t for t in p.state.taints if t.effect in ("NoSchedule", "NoExecute"))
        if hard:
            taints[row] = hard
        allocatable = _map(_map(_map(node_objects.get(p.name)).get("status")).get("allocatable"))
        headroom[row] = (
            quantity.parse(allocatable.get("cpu", "1000000"), milli=True) or 0,
            quantity.parse(allocatable.get("memory", "1Ei")) or 0,
            quantity.parse(allocatable.get("pods", "110")) or 0,
        )

    foreign = np.zeros(rows, dtype=np.int32)
    pending_counts: list[tuple[int, int]] = []
    for pod in pods:
        if not isinstance(pod, Mapping):
            continue
        spec, status, meta = (_map(pod.get(k)) for k in ("spec", "status", "metadata"))
        node_name = spec.get("nodeName")
        if not node_name or status.get("phase") in ("Succeeded", "Failed"):
            continue
        row = index.row_of.get(str(node_name))
        if row is None:
            continue
        cpu, mem = resource_request(spec)
        # In Python ints, saturated: requests summed over containers may exceed an int64.
        left = headroom[row].tolist()
        headroom[row] = [
            max(-_INT64, min(_INT64, h - r)) for h, r in zip(left, (cpu, mem, 1), strict=True)
        ]
        wanted = gpu_request(spec)
        if wanted <= 0:
            continue
        exact = parse_gpu_annotation(str(_map(meta.get("annotations")).get(GPU_ANNOTATION, "")))
        if exact is not None and len(exact) == wanted and max(exact) < index.gpus(row):
            free[row] = np.uint64(int(free[row]) & ~mask_of(exact))
        else:
            # A pod cannot hold more GPUs than its node has (the count is an int32).
            pending_counts.append((row, min(wanted, index.gpus(row))))
    # Counted pods take the highest free indices after the exact ones are marked.
    for row, count in pending_counts:
        foreign[row] += count
        m, left = int(free[row]), count
        for g in range(index.gpus(row) - 1, -1, -1):
            if left == 0:
                break
            if m >> g & 1:
                m &= ~(1 << g)
                left -= 1
        free[row] = np.uint64(m)
    free[~schedulable] = np.uint64(0)
    counts = np.array([int(m).bit_count() for m in free.tolist()], dtype=np.int64)
    for array in (free, schedulable, headroom, foreign, counts):
        array.setflags(write=False)
    return ClusterSnapshot(
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

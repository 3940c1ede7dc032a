"""What a pod takes on its node and what a node offers: the one rule, read from API objects.

Every reader of pods and nodes goes through here: the snapshot builder (the operator's live view
and ``shorthop plan`` alike), the placement request (a role's pod template) and the operator's
pod records. Objects are plain mappings as ``kubectl get -o yaml`` or the API return them; a
value of the wrong shape where a mapping or list belongs counts as absent, never as a crash.

Rules
-----
- **A container's request** of a resource is its ``requests`` value, else its ``limits`` value
  (the API server defaults a missing request to the limit); for ``nvidia.com/gpu`` the limit is
  read first (extended resources must have equal request and limit). Malformed or negative
  quantities count as 0.
- **A pod's request** is Kubernetes' own (the sidecar rule of KEP-753, as the scheduler and the
  kubelet's admission count it): the sum over its containers and its sidecars (init containers
  with ``restartPolicy: Always``, which keep running), or, if larger, the peak of the init phase
  (each other init container runs alone beside the sidecars declared before it); for GPUs, CPU
  and memory alike. Pod-level ``spec.resources`` requests of CPU or memory replace the
  containers' figure (a template's pod-level limit stands in for a missing request as the API
  server defaults it), and ``spec.overhead`` (the RuntimeClass's) is added. The same for a
  role's pod template as for a running pod.
- **A pod occupies its node** when it has ``spec.nodeName`` and is not ``Succeeded`` or
  ``Failed``: it takes one pod slot, its CPU and memory, and its GPUs.
- **DRA pods**: a pod that references ResourceClaims (``spec.resourceClaims``), requests no
  ``nvidia.com/gpu`` and carries shorthop's annotation is one shorthop bound on a DRA node: it
  takes the annotated GPUs (its claim holds the same devices; see ``placement.devices``).
- **Which GPUs**: a pod carrying shorthop's annotation (``shorthop.io/gpus: "0,1,2,3"``) with as
  many indices as it requests, all below the node's GPU count, takes exactly those; any other GPU
  pod takes a count, capped at the node's GPU count, from the highest indices still free once the
  exact ones are marked (the device plugin picks real indices, so this only keeps counts right).
- **Other resources** (extended resources such as ``rdma/ib``, hugepages, ephemeral storage):
  a pod's request of each is summed by the same rule; a node offers its ``allocatable`` amount of
  each (missing: none, as for the kubelet).
- **A node offers** its ``status.allocatable`` CPU, memory and pod slots (missing: 1,000,000
  cores, 1 EiB, 110 pods; malformed: 0).
- **Host ports** a pod binds (``hostPort``, read by ``constraints.host_ports_of``) are kept with
  what it takes: no other pod may bind a conflicting one on its node.

Pure; no I/O. Callers: :mod:`~shorthop.placement.snapshot`, :mod:`~shorthop.placement.request`,
``controller.live``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shorthop import quantity
from shorthop.placement import constraints
from shorthop.topology import labels, slices
from shorthop.topology.levels import TopologyConfig

GPU_ANNOTATION = "shorthop.io/gpus"
DEFAULT_ALLOCATABLE = {"cpu": "1000000", "memory": "1Ei", "pods": "110"}
_GPU_INDEX = re.compile(r"[0-9]{1,4}")  # ASCII digits: str.isdigit() also accepts "²"
_DONE = ("Succeeded", "Failed")


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else empty: snapshot files and pod templates may hold
    anything where a mapping belongs."""
    if type(value) is dict:  # the common case, without the ABC check (hot: every pod event)
        return value
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


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


def tolerations_of(pod_spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    out = []
    for t in as_list(as_map(pod_spec).get("tolerations")):
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


_LIMIT_FIRST = ("limits", "requests")
_REQUEST_FIRST = ("requests", "limits")


def _amount(
    resources: Mapping[str, Any], name: str, order: tuple[str, str], milli: bool = False
) -> int:
    for kind in order:
        value = as_map(resources.get(kind)).get(name)
        if value is not None:
            return _quantity(value, milli=milli)
    return 0


def _amounts(container: Any) -> tuple[int, int, int] | None:
    """(GPUs, CPU millicores, memory bytes) one container requests; None without resources."""
    if not isinstance(container, Mapping):
        return None
    resources = as_map(container.get("resources"))
    if not resources:
        return None
    return (
        _amount(resources, labels.GPU_RESOURCE, _LIMIT_FIRST),
        _amount(resources, "cpu", _REQUEST_FIRST, milli=True),
        _amount(resources, "memory", _REQUEST_FIRST),
    )


def requests(pod_spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """(GPUs, CPU millicores, memory bytes) a pod (or pod template) requests, as the scheduler and
    the kubelet count them: the containers' sum plus the sidecars' (init containers with
    ``restartPolicy: Always`` keep running beside them), or the peak of the init phase if higher
    (an init container runs beside the sidecars declared before it); pod-level
    ``resources.requests`` of CPU or memory replace the containers' figure; ``spec.overhead``
    (set from the RuntimeClass) is added. One pass (hot: every pod event).

    >>> requests({"containers": [{"resources": {"requests": {"cpu": "1"}}}],
    ...           "initContainers": [
    ...               {"restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
    ...               {"resources": {"requests": {"cpu": "2"}}}],
    ...           "overhead": {"cpu": "250m", "memory": "64Mi"}})
    (0, 2750, 67108864)
    """
    spec = as_map(pod_spec)
    gpus = cpu = memory = 0
    for container in as_list(spec.get("containers")):
        amounts = _amounts(container)
        if amounts is not None:
            gpus, cpu, memory = gpus + amounts[0], cpu + amounts[1], memory + amounts[2]
    inits = as_list(spec.get("initContainers"))
    if inits:
        side = (0, 0, 0)  # the sidecars declared so far: they run beside what follows
        peak = (0, 0, 0)  # the most any step of the init phase holds
        for container in inits:
            amounts = _amounts(container)
            if amounts is None:
                continue
            step = (side[0] + amounts[0], side[1] + amounts[1], side[2] + amounts[2])
            if container.get("restartPolicy") == "Always":
                side = step
                gpus, cpu, memory = gpus + amounts[0], cpu + amounts[1], memory + amounts[2]
            peak = (max(peak[0], step[0]), max(peak[1], step[1]), max(peak[2], step[2]))
        gpus, cpu, memory = max(gpus, peak[0]), max(cpu, peak[1]), max(memory, peak[2])
    pod_level = as_map(spec.get("resources"))
    if pod_level:
        cpu = _pod_level(spec, pod_level, "cpu", cpu, milli=True)
        memory = _pod_level(spec, pod_level, "memory", memory)
    overhead = as_map(spec.get("overhead"))
    if overhead:
        cpu += _quantity(overhead.get("cpu"), milli=True)
        memory += _quantity(overhead.get("memory"))
    return gpus, cpu, memory


def _named(spec: Mapping[str, Any], name: str) -> bool:
    """Whether some container or init container of ``spec`` names ``name`` in its resources."""
    return any(
        name in as_map(as_map(as_map(c).get("resources")).get(kind))
        for key in ("containers", "initContainers")
        for c in as_list(spec.get(key))
        for kind in _REQUEST_FIRST
    )


def _pod_level(
    spec: Mapping[str, Any],
    resources: Mapping[str, Any],
    name: str,
    containers: int,
    milli: bool = False,
) -> int:
    """A pod's request of ``name`` with pod-level ``resources``: its pod-level request; else, as
    the API server defaults it, the containers' when some container names it, else the
    pod-level limit; else the containers'."""
    request = as_map(resources.get("requests")).get(name)
    if request is not None:
        return _quantity(request, milli=milli)
    limit = as_map(resources.get("limits")).get(name)
    if limit is not None and not _named(spec, name):
        return _quantity(limit, milli=milli)
    return containers


def _quantity(value: Any, milli: bool = False) -> int:
    if value is None:
        return 0
    return max(0, quantity.parse(value, milli=milli) or 0)


# Counted on their own: CPU and memory in the headroom, GPUs as bitsets, pod slots per node.
_OWN_COLUMNS = frozenset({"cpu", "memory", "pods", labels.GPU_RESOURCE})
Amounts = tuple[tuple[str, int], ...]  # (resource name, amount), by name: other resources


def other_requests(pod_spec: Mapping[str, Any]) -> Amounts:
    """What a pod (or pod template) requests of every resource besides CPU, memory and
    ``nvidia.com/gpu`` (extended resources such as ``rdma/ib``, ``hugepages-2Mi``,
    ``ephemeral-storage``): summed as :func:`requests` sums, integers (bytes for sizes); the
    kubelet refuses a pod on a node without enough of any. Empty for most pods (one cheap scan).

    >>> other_requests({"containers": [{"resources": {"limits": {"rdma/ib": "1"}}}],
    ...                 "initContainers": [{"restartPolicy": "Always",
    ...                                     "resources": {"requests": {"rdma/ib": "1"}}}]})
    (('rdma/ib', 2),)
    """
    spec = as_map(pod_spec)
    names: set[str] = set()
    for key in ("containers", "initContainers"):
        for c in as_list(spec.get(key)):
            resources = as_map(as_map(c).get("resources"))
            for kind in _REQUEST_FIRST:
                names.update(n for n in as_map(resources.get(kind)) if n not in _OWN_COLUMNS)
    pod_level = as_map(spec.get("resources"))
    for kind in _REQUEST_FIRST:  # of the others, only hugepages may be set for the whole pod
        names.update(n for n in as_map(pod_level.get(kind)) if str(n).startswith("hugepages-"))
    overhead = {n: v for n, v in as_map(spec.get("overhead")).items() if n not in _OWN_COLUMNS}
    if not names and not overhead:
        return ()
    out = []
    for name in sorted(names | set(overhead), key=str):  # odd files may hold non-string keys
        total, side, peak = 0, 0, 0
        for c in as_list(spec.get("containers")):
            total += _amount(as_map(as_map(c).get("resources")), name, _REQUEST_FIRST)
        for c in as_list(spec.get("initContainers")):
            amount = _amount(as_map(as_map(c).get("resources")), name, _REQUEST_FIRST)
            step = side + amount
            if as_map(c).get("restartPolicy") == "Always":
                side, total = step, total + amount
            peak = max(peak, step)
        total = max(total, peak)
        if str(name).startswith("hugepages-") and pod_level:
            total = _pod_level(spec, pod_level, name, total)
        total += _quantity(overhead.get(name))
        if total:
            out.append((str(name), total))
    return tuple(out)


def gpu_request(pod_spec: Mapping[str, Any]) -> int:
    """GPUs a pod (or pod template) requests.

    >>> gpu_request({"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}] * 2,
    ...              "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": "3"}}}]})
    4
    """
    return requests(pod_spec)[0]


def resource_request(pod_spec: Mapping[str, Any]) -> tuple[int, int]:
    """(CPU millicores, memory bytes) a pod (or pod template) requests.

    >>> resource_request({"containers": [{"resources": {"requests": {"cpu": "500m"}}},
    ...                                  {"resources": {"limits": {"memory": "1Gi"}}}],
    ...                   "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]})
    (2000, 1073741824)
    """
    _, cpu, memory = requests(pod_spec)
    return cpu, memory


def parse_gpu_annotation(value: str) -> tuple[int, ...] | None:
    """The indices of shorthop's GPU annotation, or None when it is not a list of indices."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(_GPU_INDEX.fullmatch(p) for p in parts):
        return None
    return tuple(int(p) for p in parts)


@dataclass(frozen=True, slots=True)
class PodUsage:
    """What one pod takes: its node, GPUs (a count, and exact indices when annotated), CPU and
    memory. ``active`` is False once it has Succeeded or Failed (it then takes nothing)."""

    key: str  # namespace/name
    node: str | None
    active: bool
    gpus: int
    exact: tuple[int, ...] | None
    cpu_millis: int
    memory_bytes: int
    host_ports: tuple[constraints.HostPort, ...] = ()
    uid: str = ""
    claims: tuple[str, ...] = ()  # names of the ResourceClaims it references
    # An unbound pod with claims that a scheduler is binding to this node (the scheduler sets
    # status.nominatedNodeName before it writes the claims' allocations).
    nominated: str | None = None
    unschedulable: bool = False  # PodScheduled False, reason Unschedulable: no scheduler fits it
    other: Amounts = ()  # other resources it requests (other_requests)

    def exact_on(self, node_gpus: int) -> tuple[int, ...] | None:
        """The exact indices when they describe this pod on a node of ``node_gpus`` GPUs."""
        exact = self.exact
        if exact is not None and len(exact) == self.gpus and max(exact) < node_gpus:
            return exact
        return None


@dataclass(frozen=True, slots=True)
class Assumed:
    """GPUs, CPU and memory held for a pod whose bind has not been seen yet (the operator bound
    it; the snapshot counts it until its watch event arrives)."""

    node: str
    gpus: tuple[int, ...]
    cpu_millis: int = 0
    memory_bytes: int = 0
    host_ports: tuple[constraints.HostPort, ...] = ()
    other: Amounts = ()  # other resources (other_requests)


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = as_map(pod.get("metadata"))
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def pod_usage(pod: Mapping[str, Any], key: str | None = None) -> PodUsage:
    """The usage of one Pod object (``key`` defaults to its namespace/name)."""
    meta, spec, status = (as_map(pod.get(k)) for k in ("metadata", "spec", "status"))
    node = spec.get("nodeName")
    gpus, cpu, memory = requests(spec)
    exact = parse_gpu_annotation(str(as_map(meta.get("annotations")).get(GPU_ANNOTATION, "")))
    claims = claim_names(pod)
    if gpus == 0 and claims and exact is not None:
        gpus = len(exact)  # a DRA pod: its GPUs come through its claim
    nominated = status.get("nominatedNodeName") if claims and not node else None
    unschedulable = any(
        isinstance(c, Mapping)
        and c.get("type") == "PodScheduled"
        and c.get("status") == "False"
        and c.get("reason") == "Unschedulable"
        for c in as_list(status.get("conditions"))
    )
    return PodUsage(
        key=pod_key(pod) if key is None else key,
        # One string per node, shared by its pods' records (100,000 pods, 10,000 nodes).
        node=sys.intern(str(node)) if node else None,
        active=status.get("phase") not in _DONE,
        gpus=gpus,
        exact=exact,
        cpu_millis=cpu,
        memory_bytes=memory,
        host_ports=constraints.host_ports_of(spec),
        uid=str(meta.get("uid") or ""),
        claims=claims,
        nominated=str(nominated) if nominated else None,
        unschedulable=unschedulable and bool(claims) and not node,
        other=other_requests(spec),
    )


def claim_names(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """The ResourceClaims a pod uses: named ones (``resourceClaimName``), and those made from a
    template for it (``status.resourceClaimStatuses``)."""
    names = []
    for entry in as_list(as_map(pod.get("spec")).get("resourceClaims")):
        name = as_map(entry).get("resourceClaimName")
        if isinstance(name, str) and name:
            names.append(name)
    for entry in as_list(as_map(pod.get("status")).get("resourceClaimStatuses")):
        name = as_map(entry).get("resourceClaimName")
        if isinstance(name, str) and name:
            names.append(name)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class NodeOffer:
    """What one node offers: its parsed labels and state, and its allocatable CPU millicores,
    memory bytes and pod slots. Equal offers mean nothing shorthop reads has changed (a
    heartbeat)."""

    parsed: labels.ParsedNode
    allocatable: tuple[int, int, int]
    # The node's labels as they are (node selectors and affinity read them); read-only.
    node_labels: Mapping[str, str] = field(default_factory=dict)
    other: Amounts = ()  # allocatable of every other resource (rdma/ib, hugepages-2Mi, ...)

    @property
    def name(self) -> str:
        return self.parsed.name

    @property
    def usable(self) -> bool:
        """In the topology, Ready and not cordoned."""
        state = self.parsed.state
        return self.parsed.topology is not None and state.ready and not state.unschedulable


def node_name(node: Mapping[str, Any]) -> str:
    """The node's name, as the label parser reads it."""
    return str(as_map(node.get("metadata")).get("name") or "?")


def node_offer(
    node: Mapping[str, Any], config: TopologyConfig, inventory: slices.Inventory | None = None
) -> NodeOffer:
    """Parse one Node object (with its ResourceSlice inventory on a DRA node)."""
    allocatable = as_map(as_map(node.get("status")).get("allocatable"))

    def amount(name: str, milli: bool = False) -> int:
        value = allocatable.get(name, DEFAULT_ALLOCATABLE[name])
        return quantity.parse(value, milli=milli) or 0

    parsed = labels.parse_node(node, config, inventory)
    allocatable_amounts = (amount("cpu", milli=True), amount("memory"), amount("pods"))
    other = tuple(
        (str(n), max(0, quantity.parse(v) or 0))
        for n, v in sorted(allocatable.items(), key=lambda item: str(item[0]))
        if n not in _OWN_COLUMNS
    )
    return NodeOffer(parsed, allocatable_amounts, labels_of(node), other)


def labels_of(node: Mapping[str, Any]) -> dict[str, str]:
    """The node's labels (values of another type, which no API server stores, as strings)."""
    found = as_map(as_map(node.get("metadata")).get("labels"))
    return {str(k): v if isinstance(v, str) else str(v) for k, v in found.items()}

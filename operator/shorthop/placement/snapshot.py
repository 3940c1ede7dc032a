"""The per-cycle cluster state (free GPUs per node, as bitsets) and the one builder that makes it.

:class:`SnapshotBuilder` takes events — nodes and pods added, modified or deleted, and pods
*assumed* (bound by the operator, their watch event not seen yet) — and :meth:`~SnapshotBuilder.
freeze` hands out an immutable :class:`ClusterSnapshot` over a shared
:class:`~shorthop.topology.index.TopologyIndex`. The operator keeps one builder for its whole life
(``controller.live`` feeds it watch events); ``shorthop plan`` and ``shorthop topology`` make a
cold one with :func:`build`. Both therefore follow the same rules, those of
:mod:`~shorthop.placement.occupancy` (which GPUs, CPU and memory a pod takes, what a node offers),
plus:

- nodes that are NotReady, cordoned, or left out by the label parser offer nothing, and
  ``unavailable`` says why; nodes with ``NoSchedule``/``NoExecute`` taints offer GPUs only to
  requests that tolerate them;
- CPU, memory and pod-slot headroom is tracked for every node in the index (allocatable minus
  what its pods take, saturated to int64), and so is every other resource a node offers or a pod
  requests (``other``: extended resources, hugepages, ephemeral storage), so a pod is never
  planned where its kubelet would reject it;
- ``overcommitted`` names the nodes where more GPUs are bound (and assumed) than they have: a
  bind raced with another scheduler;
- label ``issues`` are listed in node-name order;
- every node's labels (a :class:`~shorthop.placement.constraints.LabelTable` by row, rebuilt only
  when a node changes) and the host ports its pods (and assumed pods) bind, so
  ``placement.filters`` can apply node selectors, node affinity and host ports.

Incremental (the invariant that ``tests/unit/placement/test_snapshot_builder.py`` checks): any
sequence of events gives the same snapshot as a cold build from the final objects. Events only
mark the nodes they touch; :meth:`~SnapshotBuilder.freeze` recomputes those rows, reuses the
node-level parts (taints, unavailable, issues) until a node changes, and returns the same object
while nothing changed (a node heartbeat changes nothing shorthop reads).

Dynamic Resource Allocation slots in the same way: slice and claim events mark the nodes they
touch, and :class:`~shorthop.placement.drastate.DraState` (its docstring has the rules) says
which GPUs of a DRA node are busy and which of shorthop's pods are in trouble there.

Pure: no I/O, no clock, not thread-safe (``controller.live`` locks around it).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import constraints, devices, occupancy, other_resources
from shorthop.placement.bitsets import mask_of
from shorthop.placement.constraints import HostPort, LabelTable
from shorthop.placement.drastate import DraState
from shorthop.placement.occupancy import Assumed, Toleration
from shorthop.topology import labels, slices
from shorthop.topology.index import IndexBuilder, TopologyIndex
from shorthop.topology.levels import TopologyConfig

MAX_GPUS_PER_NODE = labels.MAX_GPUS_PER_NODE  # one uint64 bitset per node
_INT64 = 2**63 - 1
HARD_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True, eq=False)
class ClusterSnapshot:
    """Free GPUs per node (row of ``index``) for one planning cycle. Read-only; the solver
    works on copies of ``free``."""

    index: TopologyIndex
    free: NDArray[np.uint64]  # [rows] bitset of free GPUs (0 where the node offers nothing)
    schedulable: NDArray[np.bool_]  # [rows] present, Ready, not cordoned
    headroom: NDArray[np.int64]  # [rows, 3] CPU millicores, memory bytes, pods left
    taints: dict[int, tuple[labels.Taint, ...]]  # rows with NoSchedule/NoExecute taints
    foreign: NDArray[np.int32]  # [rows] GPUs taken by pods without exact indices (count)
    issues: tuple[labels.NodeIssue, ...]
    unavailable: dict[str, str] = field(default_factory=dict)  # node -> why it offers nothing
    free_counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    overcommitted: Mapping[str, int] = field(default_factory=dict)  # node -> GPUs bound beyond
    node_labels: LabelTable = field(default_factory=lambda: LabelTable((), ()))
    host_ports: Mapping[int, tuple[HostPort, ...]] = field(default_factory=dict)  # rows with any
    # DRA nodes (pod keys, namespace/name): see placement.drastate.
    contested: frozenset[str] = frozenset()
    mismatched: frozenset[str] = frozenset()
    unclaimed: frozenset[str] = frozenset()
    # Per other resource (rdma/ib, hugepages-2Mi, ...): [rows] amount left (other_resources)
    other: Mapping[str, NDArray[np.int64]] = field(default_factory=dict)

    def node_devices(self, node: str | None) -> slices.NodeDevices | None:
        """The GPU index -> device map of a DRA node (None elsewhere)."""
        row = self.index.row_of.get(str(node)) if node is not None else None
        topology = self.index.topologies[row] if row is not None else None
        return topology.devices if topology is not None else None

    def usable_rows(self, tolerations: tuple[Toleration, ...] = ()) -> NDArray[np.bool_]:
        """Rows a pod with these tolerations may use."""
        usable = self.schedulable.copy()
        for row, taints in self.taints.items():
            if not all(any(t.tolerates(taint) for t in tolerations) for taint in taints):
                usable[row] = False
        return usable

    def known(self, node: str | None) -> bool:
        """The node exists (whether or not it offers anything)."""
        return node is not None and (node in self.index.row_of or node in self.unavailable)

    def usable(self, node: str | None) -> bool:
        """The node is in the topology, Ready and not cordoned."""
        row = self.index.row_of.get(str(node)) if node is not None else None
        return row is not None and bool(self.schedulable[row])

    def with_taken(self, taken: Mapping[int, int]) -> ClusterSnapshot:
        """This snapshot with more GPUs marked used (row -> mask): pods kept on GPUs the cache
        still shows free (unbound pods, sticky placements)."""
        return self._with_free(taken, lambda free, mask: free & ~mask) if taken else self

    def with_released(
        self,
        gpus: Mapping[int, int],
        pods: Mapping[int, tuple[int, int, int]],
        other: Mapping[int, occupancy.Amounts] | None = None,
    ) -> ClusterSnapshot:
        """This snapshot with some pods gone: their GPUs (row -> mask) free again and their CPU,
        memory and pod slots (row -> (millicores, bytes, pods)) back in the headroom, and their
        other resources (row -> amounts)."""
        headroom = self.headroom.copy()
        for row, back in pods.items():
            headroom[row] += back
        headroom.setflags(write=False)
        released = self._with_free(gpus, lambda free, mask: free | mask)
        left = other_resources.released(self.other, other or {}, len(self.free))
        return dataclasses.replace(released, headroom=headroom, other=left)

    def _with_free(
        self, masks: Mapping[int, int], combine: Callable[[int, int], int]
    ) -> ClusterSnapshot:
        free = self.free.copy()
        counts = self.free_counts.copy()
        for row, mask in masks.items():
            free[row] = np.uint64(combine(int(free[row]), mask))
            counts[row] = int(free[row]).bit_count()
        for array in (free, counts):
            array.setflags(write=False)
        return dataclasses.replace(self, free=free, free_counts=counts)


_NodeParts = tuple[
    dict[int, tuple[labels.Taint, ...]], dict[str, str], tuple[labels.NodeIssue, ...]
]


class SnapshotBuilder:
    """Cluster state kept up to date by events; see the module docstring.

    Event methods take API objects as plain mappings (``None``/``ADDED``/``MODIFIED``/
    ``DELETED`` as a watch reports them) or, for pods, their parsed :class:`~shorthop.placement.
    occupancy.PodUsage`. Reads (:meth:`freeze`, :meth:`usable`, :meth:`free_count`) first bring
    the rows they need up to date.
    """

    def __init__(
        self,
        config: TopologyConfig,
        *,
        index: IndexBuilder | None = None,
        driver: str = slices.DEFAULT_DRIVER,
    ) -> None:
        self.config = config
        self.driver = driver
        self._index = index or IndexBuilder(config)
        self._dra = DraState(driver)
        self._nodes: dict[str, occupancy.NodeOffer] = {}
        self._pods: dict[str, occupancy.PodUsage] = {}
        self._assumed: dict[str, Assumed] = {}
        # Kept per node name even before the node is seen (pods and nodes arrive in any order).
        self._node_pods: dict[str, set[str]] = defaultdict(set)
        self._node_assumed: dict[str, set[str]] = defaultdict(set)
        self._dirty: set[str] = set()
        self._free = np.zeros(0, dtype=np.uint64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._foreign = np.zeros(0, dtype=np.int32)
        self._headroom = np.zeros((0, 3), dtype=np.int64)
        self._other = other_resources.Columns()
        self._schedulable = np.zeros(0, dtype=np.bool_)
        self._overcommit: dict[str, int] = {}
        self._ports: dict[str, tuple[HostPort, ...]] = {}  # nodes whose pods bind host ports
        self._labels: tuple[tuple[int, int], LabelTable] | None = None
        self._node_version = 0
        self._parts: tuple[tuple[int, int], _NodeParts] | None = None
        self._cached: ClusterSnapshot | None = None

    # -- events ----------------------------------------------------------------------------

    def apply_node(self, event: str | None, node: Mapping[str, Any]) -> bool:
        """A node was listed, added, modified or deleted; False when nothing the snapshot
        reads changed (a status heartbeat)."""
        if event == "DELETED":
            return self.remove_node(occupancy.node_name(node))
        return self.put_node(self.offer(node))

    def offer(self, node: Mapping[str, Any]) -> occupancy.NodeOffer:
        """What a Node object offers, with the ResourceSlices seen for it."""
        inventory = self._dra.slices.inventory(occupancy.node_name(node))
        return occupancy.node_offer(node, self.config, inventory)

    def apply_slice(self, event: str | None, obj: Mapping[str, Any]) -> set[str]:
        """A ResourceSlice was listed, added, modified or deleted; returns the nodes whose
        model changed. One that cannot be read makes its pool unusable (an issue says why)."""
        touched = self._dra.put_slice(event, obj)
        return {n for n in sorted(touched) if self._remodel(n)}

    def apply_claim(self, event: str | None, obj: Mapping[str, Any]) -> bool:
        """A ResourceClaim was listed, added, modified or deleted; False when no GPU of a known
        node is concerned."""
        nodes = self._dra.put_claim(event, obj)
        for node in nodes or ():
            self._touch(node)
        return bool(nodes)

    def claim(self, key: str) -> devices.ClaimRecord | None:
        return self._dra.claims.get(key)

    def claims_of(self, pod_key: str) -> list[devices.ClaimRecord]:
        """The claims a pod owns."""
        return self._dra.claims.of_holder(pod_key)

    def holders(self, name: str) -> Mapping[int, frozenset[str]]:
        """Who holds each busy GPU of a DRA node now (pods, claims, assumptions)."""
        self._flush()
        return self._dra.holders(name)

    def next_taken(self, name: str) -> list[int]:
        """GPUs another scheduler's pending pods would take first on a DRA node."""
        self._flush()
        return self._dra.next_taken(name)

    def put_node(self, offer: occupancy.NodeOffer) -> bool:
        name = offer.name
        old = self._nodes.get(name)
        if old == offer:
            return False
        self._nodes[name] = offer
        if offer.parsed.topology is None:
            self._leave_index(name)
        elif old is None or old.parsed.topology != offer.parsed.topology:
            self._index.upsert(offer.parsed.topology)
        self._node_changed(name)
        return True

    def _remodel(self, name: str) -> bool:
        """Model a known node again after its slices changed."""
        offer = self._nodes.get(name)
        facts = offer.parsed.facts if offer is not None else None
        if offer is None or facts is None:
            return False
        parsed = labels.derive(facts, self.config, self._dra.slices.inventory(name))
        return self.put_node(dataclasses.replace(offer, parsed=parsed))

    def remove_node(self, name: str) -> bool:
        """Its pods stay known: they still exist in the API (and must be cleaned up)."""
        if self._nodes.pop(name, None) is None:
            return False
        self._leave_index(name)
        self._node_changed(name)
        return True

    def apply_pod(self, event: str | None, pod: Mapping[str, Any]) -> bool:
        """A pod was listed, added, modified or deleted; False when what it takes is unchanged
        (readiness, labels, status messages)."""
        if event == "DELETED":
            return self.remove_pod(occupancy.pod_key(pod))
        return self.put_pod(occupancy.pod_usage(pod))

    def put_pod(self, usage: occupancy.PodUsage) -> bool:
        key = usage.key
        old = self._pods.get(key)
        # A pod seen bound is no longer assumed.
        changed = self._drop_assumed(key) if usage.node else False
        if old == usage:
            return changed
        if old is not None and old.node != usage.node and old.node:
            self._node_pods[old.node].discard(key)
            self._touch(old.node)
        self._pods[key] = usage
        if usage.node:
            self._node_pods[usage.node].add(key)
            self._touch(usage.node)
        for node in self._dra.nominate(old, usage):
            self._touch(node)
        return True

    def remove_pod(self, key: str) -> bool:
        changed = self._drop_assumed(key)
        old = self._pods.pop(key, None)
        if old is None:
            return changed
        if old.node:
            self._node_pods[old.node].discard(key)
            self._touch(old.node)
        for node in self._dra.nominate(old, None):
            self._touch(node)
        return True

    def assume(self, key: str, assumed: Assumed) -> None:
        """Count GPUs (and CPU, memory, a pod slot) as taken by pod ``key`` on ``assumed.node``
        until the pod is seen bound or deleted, or :meth:`forget` is called."""
        self._drop_assumed(key)
        self._assumed[key] = assumed
        self._node_assumed[assumed.node].add(key)
        self._touch(assumed.node)

    def forget(self, key: str) -> bool:
        """Release an assumption (the bind failed, or it was never seen); False when none."""
        return self._drop_assumed(key)

    # -- reads -----------------------------------------------------------------------------

    def node(self, name: str) -> occupancy.NodeOffer | None:
        return self._nodes.get(name)

    def assumed(self, key: str) -> Assumed | None:
        return self._assumed.get(key)

    def usable(self, name: str) -> bool:
        """The node is in the topology, Ready and not cordoned."""
        offer = self._nodes.get(name)
        return offer is not None and offer.usable

    def free_count(self, name: str) -> int:
        """Free GPUs on the node now (0 when it offers nothing)."""
        self._flush()
        row = self._index.row(name)
        return int(self._counts[row]) if row is not None and row < len(self._counts) else 0

    def overcommitted(self, name: str) -> int:
        """GPUs bound (and assumed) on the node beyond what it has; 0 when none."""
        self._flush()
        return self._overcommit.get(name, 0)

    def issues(self) -> list[labels.NodeIssue]:
        return [i for offer in self._nodes.values() for i in offer.parsed.issues]

    def freeze(self) -> ClusterSnapshot:
        """The current state as an immutable snapshot; the same object while nothing changed."""
        if self._cached is not None:
            return self._cached
        index = self._index.freeze()
        self._grow()
        self._flush()
        rows = len(index.names)
        taints, unavailable, issues = self._node_parts(index)
        free, schedulable = self._free[:rows].copy(), self._schedulable[:rows].copy()
        headroom, foreign = self._headroom[:rows].copy(), self._foreign[:rows].copy()
        counts = self._counts[:rows].copy()
        for array in (free, schedulable, headroom, foreign, counts):
            array.setflags(write=False)
        self._cached = ClusterSnapshot(
            index=index,
            free=free,
            schedulable=schedulable,
            headroom=headroom,
            taints=taints,
            foreign=foreign,
            issues=issues,
            unavailable=unavailable,
            free_counts=counts,
            overcommitted=dict(self._overcommit),
            contested=self._dra.flagged(0),
            mismatched=self._dra.flagged(1),
            unclaimed=self._dra.flagged(2),
            node_labels=self._label_table(index),
            host_ports={
                index.row_of[n]: ports for n, ports in self._ports.items() if n in index.row_of
            },
            other=self._other.frozen(rows),
        )
        return self._cached

    # -- internals -------------------------------------------------------------------------

    def _touch(self, name: str) -> None:
        self._dirty.add(name)
        self._cached = None

    def _node_changed(self, name: str) -> None:
        self._node_version += 1
        self._touch(name)

    def _drop_assumed(self, key: str) -> bool:
        entry = self._assumed.pop(key, None)
        if entry is None:
            return False
        self._node_assumed[entry.node].discard(key)
        self._touch(entry.node)
        return True

    def _leave_index(self, name: str) -> None:
        """A row whose node left the index offers nothing (the index may reuse it later)."""
        row = self._index.row(name)
        if row is None:
            return
        self._index.remove(name)
        if row < len(self._free):
            self._free[row], self._counts[row], self._schedulable[row] = 0, 0, False
            self._foreign[row] = 0
            self._headroom[row] = 0
            self._other.clear(row)
        self._overcommit.pop(name, None)
        self._dra.forget_node(name)

    def _grow(self) -> None:
        size = self._index.size
        if size <= len(self._free):
            return
        extra = max(size - len(self._free), len(self._free))
        self._free = np.concatenate([self._free, np.zeros(extra, dtype=np.uint64)])
        self._counts = np.concatenate([self._counts, np.zeros(extra, dtype=np.int64)])
        self._foreign = np.concatenate([self._foreign, np.zeros(extra, dtype=np.int32)])
        self._headroom = np.concatenate([self._headroom, np.zeros((extra, 3), dtype=np.int64)])
        self._schedulable = np.concatenate([self._schedulable, np.zeros(extra, dtype=np.bool_)])
        self._other.grow(len(self._free))

    def _flush(self) -> None:
        if not self._dirty:
            return
        self._grow()
        for name in self._dirty:
            self._recompute(name)
            self._recompute_ports(name)
        self._dirty.clear()

    def _recompute(self, name: str) -> None:
        """Free GPUs, headroom, foreign count and overcommit of one node from its pods (and, on
        a DRA node, its claims)."""
        row = self._index.row(name)
        offer = self._nodes.get(name)
        if row is None or offer is None or offer.parsed.topology is None:
            self._overcommit.pop(name, None)
            self._dra.forget_node(name)
            return
        topology = offer.parsed.topology
        gpus = topology.gpus
        mask = (1 << gpus) - 1
        cpu, memory, slots = offer.allocatable
        counted = 0
        bound = 0  # GPUs requested by the node's active pods and assumed ones
        node_devices = topology.devices
        # GPU -> holders, and shorthop's pods holding GPUs through claims: on DRA nodes only.
        held: dict[int, set[str]] | None = defaultdict(set) if node_devices else None
        claimed: list[occupancy.PodUsage] = []
        on_node = self._node_pods.get(name, set())
        taken: list[occupancy.Amounts] = []  # other resources of its pods and assumed ones
        for key in on_node:
            pod = self._pods[key]
            if not pod.active:
                continue
            cpu, memory, slots = cpu - pod.cpu_millis, memory - pod.memory_bytes, slots - 1
            taken.append(pod.other)
            if pod.gpus <= 0:
                continue
            bound += pod.gpus
            exact = pod.exact_on(gpus)
            if exact is not None:
                mask &= ~mask_of(exact)
                if held is not None:
                    for g in exact:
                        held[g].add(key)
                    if pod.claims:
                        claimed.append(pod)
            else:
                # A pod cannot hold more GPUs than its node has.
                counted += min(pod.gpus, gpus)
        for key in self._node_assumed.get(name, ()):
            if key in on_node:
                continue  # seen bound here: counted above
            assumed = self._assumed[key]
            mask &= ~mask_of(assumed.gpus)
            if held is not None:
                for g in assumed.gpus:
                    held[g].add(key)
            bound += len(assumed.gpus)
            cpu, memory, slots = cpu - assumed.cpu_millis, memory - assumed.memory_bytes, slots - 1
            taken.append(assumed.other)
        if node_devices is not None and held is not None:
            mask = self._dra.fold(name, node_devices, mask, held, claimed)
        else:
            self._dra.forget_node(name)
        # Counted pods take the highest free indices, after the exact ones are marked.
        left = counted
        for g in range(gpus - 1, -1, -1):
            if left == 0:
                break
            if mask >> g & 1:
                mask &= ~(1 << g)
                left -= 1
        # On a DRA node exact GPUs are counted once whoever holds them (a pod and its claim,
        # two claims); two holders of one GPU are reported as contested instead.
        over = bound - gpus if held is None else len(held) + counted - gpus
        if over > 0:
            self._overcommit[name] = over
        else:
            self._overcommit.pop(name, None)
        usable = offer.usable
        free = mask if usable and (node_devices is None or node_devices.complete) else 0
        self._free[row] = np.uint64(free)
        self._counts[row] = free.bit_count()
        self._foreign[row] = counted
        # Requests summed over pods may pass an int64 (Python ints until here).
        self._headroom[row] = [max(-_INT64, min(_INT64, v)) for v in (cpu, memory, slots)]
        self._other.set_row(row, other_resources.left(offer.other, taken))
        self._schedulable[row] = usable

    def _recompute_ports(self, name: str) -> None:
        """The host ports bound on one node: its active pods' and those assumed there."""
        on_node = self._node_pods.get(name, set())
        found = [p for key in on_node if self._pods[key].active for p in self._pods[key].host_ports]
        for key in self._node_assumed.get(name, ()):
            if key not in on_node:
                found.extend(self._assumed[key].host_ports)
        if found:
            self._ports[name] = tuple(sorted(set(found)))
        else:
            self._ports.pop(name, None)

    def _label_table(self, index: TopologyIndex) -> LabelTable:
        """Every row's node labels; they change only with node events, so the table (and the
        inverted indexes it builds) lives until one comes."""
        if self._labels is not None and self._labels[0] == (self._node_version, index.generation):
            return self._labels[1]
        by_row: list[Mapping[str, str] | None] = [None] * len(index.names)
        for name, row in index.row_of.items():
            offer = self._nodes.get(name)
            by_row[row] = offer.node_labels if offer is not None else {}
        table = constraints.LabelTable(index.names, by_row)
        self._labels = ((self._node_version, index.generation), table)
        return table

    def _node_parts(self, index: TopologyIndex) -> _NodeParts:
        """Taints, unavailable nodes and label issues: they change only with node events, so
        they are recomputed only then."""
        if self._parts is not None and self._parts[0] == (self._node_version, index.generation):
            return self._parts[1]
        taints: dict[int, tuple[labels.Taint, ...]] = {}
        unavailable: dict[str, str] = {}
        issues: list[labels.NodeIssue] = []
        for name in sorted(self._nodes):
            parsed = self._nodes[name].parsed
            issues.extend(parsed.issues)
            row = index.row_of.get(name)
            if row is None:
                excluded = [i.message() for i in parsed.issues if i.excluded]
                unavailable[name] = excluded[0] if excluded else "no GPUs"
                continue
            if not parsed.state.ready:
                unavailable[name] = f"node {name} is not Ready"
            elif parsed.state.unschedulable:
                unavailable[name] = f"node {name} is cordoned"
            hard = tuple(t for t in parsed.state.taints if t.effect in HARD_EFFECTS)
            if hard:
                taints[row] = hard
        parts = (taints, unavailable, tuple(issues))
        self._parts = ((self._node_version, index.generation), parts)
        return parts


def build(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    config: TopologyConfig,
    *,
    builder: IndexBuilder | None = None,
    resource_slices: Iterable[Mapping[str, Any]] = (),
    claims: Iterable[Mapping[str, Any]] = (),
    driver: str = slices.DEFAULT_DRIVER,
) -> ClusterSnapshot:
    """A snapshot from Node and Pod objects (and ResourceSlices and ResourceClaims): a cold
    :class:`SnapshotBuilder` fed every object once. Pass a long-lived index ``builder`` to update
    its index incrementally instead of building a new one (the benchmarks do); nodes it holds
    that are not in ``nodes`` leave it. A later object of the same name replaces an earlier one;
    a pod without a name is its own."""
    nodes = [n for n in nodes if isinstance(n, Mapping)]
    if builder is not None:
        for name in builder.node_names() - {occupancy.node_name(n) for n in nodes}:
            builder.remove(name)
    snapshot = SnapshotBuilder(config, index=builder, driver=driver)
    for obj in resource_slices:
        if isinstance(obj, Mapping):
            snapshot.apply_slice(None, obj)
    for node in nodes:
        snapshot.apply_node(None, node)
    for obj in claims:
        if isinstance(obj, Mapping):
            snapshot.apply_claim(None, obj)
    for i, pod in enumerate(pods):
        if not isinstance(pod, Mapping):
            continue
        named = occupancy.as_map(pod.get("metadata")).get("name")
        snapshot.put_pod(occupancy.pod_usage(pod, None if named else f"#{i}"))
    return snapshot.freeze()

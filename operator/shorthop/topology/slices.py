"""GPUs published through Dynamic Resource Allocation: ResourceSlices read into device inventories.

A DRA driver publishes a node's devices in ResourceSlices (``resource.k8s.io``). The NVIDIA DRA
driver (kubernetes-sigs/dra-driver-nvidia-gpu, see docs/topology.md) uses driver
``gpu.nvidia.com``, one pool per node named after the node (``spec.pool.name``, every slice
with ``spec.nodeName``), one device per GPU named ``gpu-<minor>``, and per device the attributes
``type`` (``gpu``, ``mig`` or ``vfio``), ``uuid``, ``productName``, ``architecture``, ... plus
the standard ``resource.kubernetes.io/pciBusID``, ``resource.kubernetes.io/pcieRoot`` and
``resource.kubernetes.io/numaNode`` (an ``int``, or a one-element ``ints`` list), and capacity
``memory``. MIG slices carry ``parentUUID``; VFIO functions the GPU's own ``uuid``.

This module reads those objects (any served version: ``v1`` and ``v1beta2`` list attributes on
the device, ``v1beta1`` under ``basic``) into :class:`SliceRecord`, and :class:`SliceIndex`
keeps them and answers, per node, the :class:`Inventory` of its pool of the configured driver,
by the rules kube-scheduler's allocator uses: only the newest ``spec.pool.generation`` counts,
and a pool offers devices only when all ``resourceSliceCount`` slices of that generation are
there (see :func:`pool_devices`) and no device name repeats. :func:`order_gpus` decides which
device is GPU index ``i``. Callers:
``labels`` (a node modelled from its inventory), ``placement.snapshot`` (slice events),
``snapshotfile`` (checks a file's slices). Pure; malformed objects raise
:class:`~shorthop.errors.DeviceError` naming the field.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shorthop import quantity
from shorthop.errors import DeviceError

DEFAULT_DRIVER = "gpu.nvidia.com"
STANDARD = "resource.kubernetes.io/"
PCI_BUS_ID = STANDARD + "pciBusID"
PCIE_ROOT = STANDARD + "pcieRoot"
NUMA_NODE = STANDARD + "numaNode"
GPU_TYPE = "gpu"
# Device taints the allocator honours: a device tainted so is not handed out (unhealthy GPUs).
HARD_TAINT_EFFECTS = ("NoSchedule", "NoExecute")
_BDF = re.compile(r"^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
_MINOR = re.compile(r"^gpu-([0-9]{1,6})$")


@dataclass(frozen=True, slots=True)
class Device:
    """One published device, with the attributes shorthop reads (``None``: not published)."""

    name: str
    kind: str | None  # the driver's ``type`` attribute
    uuid: str | None = None
    parent_uuid: str | None = None  # MIG slices: the GPU they are cut from
    product: str | None = None
    architecture: str | None = None
    pci_bus_id: str | None = None
    pcie_root: str | None = None
    numa: int | None = None
    memory_bytes: int | None = None
    tainted: bool = False  # a NoSchedule/NoExecute device taint

    @property
    def whole_gpu(self) -> bool:
        return self.kind == GPU_TYPE


@dataclass(frozen=True, slots=True)
class SliceRecord:
    """One ResourceSlice as read; ``devices`` is empty for a slice of shared counters."""

    name: str
    driver: str
    pool: str
    generation: int
    count: int  # spec.pool.resourceSliceCount
    node: str | None  # spec.nodeName (None for slices not local to one node)
    devices: tuple[Device, ...] = ()


@dataclass(frozen=True, slots=True)
class Inventory:
    """What one node publishes in its pool of the configured driver, at the pool's newest
    generation; ``problem`` says why none of it can be used (incomplete pool, repeated device
    names, unreadable slices, several pools)."""

    driver: str
    pool: str
    devices: tuple[Device, ...] = ()
    problem: str | None = None
    complete: bool = True  # False while the driver replaces the pool's slices: nothing is free


@dataclass(frozen=True, slots=True)
class NodeDevices:
    """How a DRA node's GPU indices map to devices (kept in its ``NodeTopology``).

    ``names[i]`` is the device of GPU index ``i``; ``aliases`` maps the pool's other devices
    (MIG slices, VFIO functions) to the GPU index they use; ``tainted`` lists the indices the
    driver tainted (never free); ``order`` says how indices were assigned.
    """

    driver: str
    pool: str
    names: tuple[str, ...]
    aliases: tuple[tuple[str, int], ...] = ()
    tainted: tuple[int, ...] = ()
    order: str = "PCI bus id"
    complete: bool = True  # the pool is whole: its free devices may be allocated
    _lookup: dict[str, int] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        lookup = {name: i for i, name in enumerate(self.names)}
        for name, i in self.aliases:
            lookup.setdefault(name, i)
        object.__setattr__(self, "_lookup", lookup)

    def index_of(self, device: str) -> int | None:
        """The GPU index a device (a GPU, or a MIG slice/VFIO function of one) uses."""
        return self._lookup.get(device)

    def devices_of(self, gpus: Iterable[int]) -> tuple[str, ...]:
        """The device names of GPU indices (in the order given)."""
        return tuple(self.names[g] for g in gpus)


# -- reading objects ----------------------------------------------------------------------------


def field_map(value: Any, where: str) -> Mapping[str, Any]:
    """A field that must be a mapping (absent: empty); else a DeviceError naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DeviceError(f"{where} is a {type(value).__name__}, not a mapping")
    return value


def field_list(value: Any, where: str) -> list[Any]:
    """A field that must be a list (absent: empty); else a DeviceError naming ``where``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise DeviceError(f"{where} is a {type(value).__name__}, not a list")
    return value


def _text(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DeviceError(f"{where} is {value!r}, not a string")
    return value


def _name(value: Any, where: str) -> str:
    found = _text(value, where)
    if found is None:
        raise DeviceError(f"{where} is missing")
    return found


def _whole(value: Any, where: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdecimal():
            return int(value.strip())
        raise DeviceError(f"{where} is {value!r}, not a whole number")
    if value < 0:
        raise DeviceError(f"{where} is {value}, below 0")
    return value


def _attribute(value: Any, where: str) -> Any:
    """The value of one DeviceAttribute (``{string: x}``, ``{int: 1}``, ``{ints: [1]}``...)."""
    attr = field_map(value, where)
    for kind in ("string", "int", "bool", "version", "strings", "ints", "bools", "versions"):
        if kind in attr:
            return attr[kind]
    return None


def _attr_text(attrs: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _attribute(attrs.get(key), f"{where}.attributes[{key}]")
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    return None if value is None else str(value)


def _attr_int(attrs: Mapping[str, Any], key: str, where: str) -> int | None:
    at = f"{where}.attributes[{key}]"
    value = _attribute(attrs.get(key), at)
    if isinstance(value, list):
        # The list form (DRAListTypeAttributes): the driver publishes one NUMA node.
        value = value[0] if len(value) == 1 else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeviceError(f"{at} is {value!r}, not an integer")
    return value


def _capacity_bytes(capacity: Mapping[str, Any], where: str) -> int | None:
    raw = capacity.get("memory")
    if raw is None:
        return None
    # v1/v1beta2: {value: 80Gi}; the first alpha API held the bare quantity.
    value = raw.get("value") if isinstance(raw, Mapping) else raw
    parsed = quantity.parse(value) if value is not None else None
    if parsed is None:
        raise DeviceError(f"{where}.capacity[memory] is {raw!r}, not a quantity")
    return parsed


def _device(raw: Any, where: str) -> Device:
    body = field_map(raw, where)
    name = _name(body.get("name"), f"{where}.name")
    # v1beta1 nests attributes and capacity under `basic`.
    holder = field_map(body.get("basic"), f"{where}.basic") if "basic" in body else body
    attrs = field_map(holder.get("attributes"), f"{where}.attributes")
    capacity = field_map(holder.get("capacity"), f"{where}.capacity")
    taints = field_list(body.get("taints") or holder.get("taints"), f"{where}.taints")
    return Device(
        name=name,
        kind=_attr_text(attrs, "type", where),
        uuid=_attr_text(attrs, "uuid", where),
        parent_uuid=_attr_text(attrs, "parentUUID", where),
        product=_attr_text(attrs, "productName", where),
        architecture=_attr_text(attrs, "architecture", where),
        pci_bus_id=_attr_text(attrs, PCI_BUS_ID, where),
        pcie_root=_attr_text(attrs, PCIE_ROOT, where),
        numa=_attr_int(attrs, NUMA_NODE, where),
        memory_bytes=_capacity_bytes(capacity, where),
        tainted=any(
            isinstance(t, Mapping) and t.get("effect") in HARD_TAINT_EFFECTS for t in taints
        ),
    )


def read_slice(obj: Mapping[str, Any]) -> SliceRecord:
    """Read one ResourceSlice object (as the API or ``kubectl get -o yaml`` gives it).

    Raises
    ------
    DeviceError
        A field shorthop reads has the wrong shape; the message names the field.

    Examples
    --------
    >>> s = read_slice({"metadata": {"name": "n1-gpu"}, "spec": {"driver": "gpu.nvidia.com",
    ...     "nodeName": "n1", "pool": {"name": "n1", "generation": 1, "resourceSliceCount": 1},
    ...     "devices": [{"name": "gpu-0", "attributes": {"type": {"string": "gpu"}}}]}})
    >>> s.node, s.pool, [d.name for d in s.devices if d.whole_gpu]
    ('n1', 'n1', ['gpu-0'])
    """
    meta = field_map(obj.get("metadata"), "metadata")
    name = _name(meta.get("name"), "metadata.name")
    spec = field_map(obj.get("spec"), "spec")
    driver = _name(spec.get("driver"), "spec.driver")
    pool = field_map(spec.get("pool"), "spec.pool")
    pool_name = _name(pool.get("name"), "spec.pool.name")
    devices = tuple(
        _device(d, f"spec.devices[{i}]")
        for i, d in enumerate(field_list(spec.get("devices"), "spec.devices"))
    )
    return SliceRecord(
        name=name,
        driver=driver,
        pool=pool_name,
        generation=_whole(pool.get("generation"), "spec.pool.generation", 0),
        count=max(1, _whole(pool.get("resourceSliceCount"), "spec.pool.resourceSliceCount", 1)),
        node=_text(spec.get("nodeName"), "spec.nodeName"),
        devices=devices,
    )


# -- pools and inventories ----------------------------------------------------------------------


def pool_devices(records: Sequence[SliceRecord]) -> tuple[tuple[Device, ...], str | None, bool]:
    """The devices of one pool from all its slices, the problem that makes it unusable (repeated
    device names, disagreeing slice counts), and whether it is complete.

    Complete (all ``resourceSliceCount`` slices of the newest generation are there): the devices
    of that generation, in slice name order; older slices are obsolete. Incomplete (the driver is
    replacing its slices one by one): every slice's devices, the newest record of a device name
    winning, so the node stays modelled; the allocator hands out nothing from such a pool, and
    neither does shorthop (the caller offers no free GPUs there until it is complete).
    """
    if not records:
        return (), "has no slices", False
    newest = max(r.generation for r in records)
    current = sorted((r for r in records if r.generation == newest), key=lambda r: r.name)
    counts = {r.count for r in current}
    if len(counts) > 1:
        return (
            (),
            (
                f"has slices of generation {newest} that disagree on resourceSliceCount "
                f"({sorted(counts)})"
            ),
            False,
        )
    complete = len(current) == counts.pop()
    if not complete:
        current = sorted(records, key=lambda r: (-r.generation, r.name))
    devices: list[Device] = []
    seen: set[str] = set()
    for record in current:
        for device in record.devices:
            if device.name in seen:
                if not complete:
                    continue  # an older record of a device a newer slice lists
                return (), f"lists device {device.name!r} twice", False
            seen.add(device.name)
            devices.append(device)
    if not complete:
        devices.sort(key=lambda d: d.name)
    return tuple(devices), None, complete


class SliceIndex:
    """The ResourceSlices of one driver seen so far, by name; answers each node's
    :class:`Inventory`. Updates return the nodes whose inventory may have changed. Not
    thread-safe (its owner locks)."""

    def __init__(self, driver: str = DEFAULT_DRIVER) -> None:
        self.driver = driver
        self._slices: dict[str, SliceRecord] = {}
        self._broken: dict[str, tuple[str, str | None, str]] = {}  # name -> (pool, node, error)
        self._pool_slices: dict[str, set[str]] = defaultdict(set)
        self._node_slices: dict[str, set[str]] = defaultdict(set)

    def put(self, record: SliceRecord) -> set[str]:
        """Add or replace a slice (slices of other drivers are only forgotten)."""
        touched = self.remove(record.name)
        if record.driver != self.driver:
            return touched
        self._slices[record.name] = record
        self._index(record.name, record.pool, record.node)
        return touched | self._nodes_of_pool(record.pool)

    def put_broken(
        self, name: str, driver: str | None, pool: str | None, node: str | None, error: str
    ) -> set[str]:
        """A slice that cannot be read; when it is one of this driver's, its pool is unusable
        until it is fixed or removed."""
        touched = self.remove(name)
        if driver != self.driver or pool is None:
            return touched
        self._broken[name] = (pool, node, error)
        self._index(name, pool, node)
        return touched | self._nodes_of_pool(pool)

    def remove(self, name: str) -> set[str]:
        record = self._slices.get(name)
        broken = self._broken.get(name)
        if record is not None:
            pool, node = record.pool, record.node
        elif broken is not None:
            pool, node = broken[0], broken[1]
        else:
            return set()
        touched = self._nodes_of_pool(pool) | ({node} if node else set())
        self._slices.pop(name, None)
        self._broken.pop(name, None)
        self._unindex(name, pool, node)
        return touched

    def _index(self, name: str, pool: str, node: str | None) -> None:
        self._pool_slices[pool].add(name)
        if node:
            self._node_slices[node].add(name)

    def _unindex(self, name: str, pool: str, node: str | None) -> None:
        for table, key in ((self._pool_slices, pool), (self._node_slices, node)):
            if key is None:
                continue
            names = table.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del table[key]

    def _records(self, pool: str) -> list[SliceRecord]:
        return [self._slices[n] for n in self._pool_slices.get(pool, ()) if n in self._slices]

    def _nodes_of_pool(self, pool: str) -> set[str]:
        nodes: set[str] = set()
        for name in self._pool_slices.get(pool, ()):
            record = self._slices.get(name)
            node = record.node if record is not None else self._broken[name][1]
            if node:
                nodes.add(node)
        return nodes

    def pools_of(self, node: str) -> list[str]:
        """Pools whose newest slices (or unreadable ones) name the node, sorted."""
        found = set()
        for name in self._node_slices.get(node, ()):
            if name in self._broken:
                found.add(self._broken[name][0])
                continue
            pool = self._slices[name].pool
            records = self._records(pool)
            newest = max(r.generation for r in records)
            if any(r.node == node and r.generation == newest for r in records):
                found.add(pool)
        return sorted(found)

    def node_of(self, pool: str) -> str | None:
        """The node the pool's newest slices name (None for pools not local to one node)."""
        records = self._records(pool)
        if not records:
            return None
        newest = max(r.generation for r in records)
        nodes = {r.node for r in records if r.generation == newest}
        return nodes.pop() if len(nodes) == 1 else None

    def inventory(self, node: str) -> Inventory | None:
        """The node's devices in its pool of this driver, or None when it publishes none."""
        pools = self.pools_of(node)
        if not pools:
            return None
        if len(pools) > 1:
            return Inventory(
                self.driver,
                pools[0],
                problem=f"publishes its devices in {len(pools)} pools ({', '.join(pools)})",
            )
        pool = pools[0]
        broken = sorted(n for n in self._pool_slices.get(pool, ()) if n in self._broken)
        if broken:
            error = self._broken[broken[0]][2]
            return Inventory(
                self.driver,
                pool,
                problem=f"has a ResourceSlice {broken[0]} that cannot be read ({error})",
            )
        devices, problem, complete = pool_devices(self._records(pool))
        return Inventory(self.driver, pool, devices, problem, complete)


def index_by_node(
    records: Iterable[SliceRecord], driver: str = DEFAULT_DRIVER
) -> dict[str, Inventory]:
    """Every node's inventory from a set of slices (a cold build)."""
    index = SliceIndex(driver)
    nodes: set[str] = set()
    for record in records:
        nodes |= index.put(record)
    out = {}
    for node in sorted(nodes):
        inventory = index.inventory(node)
        if inventory is not None:
            out[node] = inventory
    return out


# -- GPU indices --------------------------------------------------------------------------------


def bus_key(pci_bus_id: str | None) -> tuple[int, int, int, int] | None:
    """A PCI address (``0000:65:00.0``) as numbers, for ordering; None when it is not one.

    >>> bus_key("0000:1b:00.0") < bus_key("0000:9D:00.0")
    True
    """
    match = _BDF.match((pci_bus_id or "").strip())
    if match is None:
        return None
    domain, bus, device, function = match.groups()
    return (int(domain, 16), int(bus, 16), int(device, 16), int(function, 16))


def minor_of(name: str) -> int | None:
    match = _MINOR.match(name)
    return int(match[1]) if match else None


def order_gpus(
    gpus: Sequence[Device], uuids: Sequence[str | None] | None = None
) -> tuple[tuple[Device, ...], str]:
    """Which device is GPU index ``i``, and how that was decided.

    With the node agent's UUID per index (``uuids``, from the ``shorthop.io/gpu-topology``
    annotation) listing every device's UUID, its order wins: the matrix the agent publishes
    uses the same indices. Otherwise PCI bus order, which is the order ``nvidia-smi`` numbers
    GPUs in (and so the order of a pasted ``nvidia-smi topo -m``); devices without a PCI
    address go last, by the minor number in their name (``gpu-<minor>``), then by name.
    """
    if uuids:
        position = {u: i for i, u in enumerate(uuids) if u}
        if len(gpus) == len(uuids) and all(d.uuid in position for d in gpus):
            return tuple(sorted(gpus, key=lambda d: position[str(d.uuid)])), "node agent UUIDs"

    def key(d: Device) -> tuple[int, tuple[int, int, int, int], int, str]:
        bus = bus_key(d.pci_bus_id)
        minor = minor_of(d.name)
        return (
            0 if bus is not None else 1,
            bus or (0, 0, 0, 0),
            minor if minor is not None else 1 << 30,
            d.name,
        )

    ordered = tuple(sorted(gpus, key=key))
    basis = "PCI bus id" if all(bus_key(d.pci_bus_id) for d in gpus) else "device name"
    return ordered, basis


def node_devices(inventory: Inventory, ordered: Sequence[Device], basis: str) -> NodeDevices:
    """The index map of a node whose GPUs are ``ordered``: other devices of the pool that use
    one of them (same ``uuid``, ``parentUUID`` or PCI address) become aliases."""
    by_uuid = {d.uuid: i for i, d in enumerate(ordered) if d.uuid}
    by_bus = {bus_key(d.pci_bus_id): i for i, d in enumerate(ordered) if bus_key(d.pci_bus_id)}
    names = {d.name for d in ordered}
    aliases = []
    for device in inventory.devices:
        if device.name in names:
            continue
        index = by_uuid.get(device.parent_uuid or "") if device.parent_uuid else None
        if index is None and device.uuid:
            index = by_uuid.get(device.uuid)
        if index is None and bus_key(device.pci_bus_id) is not None:
            index = by_bus.get(bus_key(device.pci_bus_id))
        if index is not None:
            aliases.append((device.name, index))
    return NodeDevices(
        driver=inventory.driver,
        pool=inventory.pool,
        names=tuple(d.name for d in ordered),
        aliases=tuple(sorted(aliases)),
        tainted=tuple(i for i, d in enumerate(ordered) if d.tainted),
        order=basis,
        complete=inventory.complete,
    )

"""What the node agent reads about one node's GPUs and NICs, and what it publishes from it.

The agent (``shorthop.agent``) asks NVML and sysfs; this module is the pure part: a
:class:`NodeReading` holds the answers (``None`` wherever the driver said "not supported" or the
read failed), :func:`to_matrix` turns them into the :class:`~shorthop.topology.smi.TopoMatrix`
that ``nvidia-smi topo -m`` would print, and :func:`encode` / :func:`decode` are the versioned
JSON form of the ``shorthop.io/gpu-topology`` node annotation. Callers: the agent, ``labels``
(decode) and tests. No I/O.

How the answers become matrix cells:

- GPU pair: ``NV<n>`` when NVLink joins them, where ``n`` counts the active links from one to the
  other plus, on NVSwitch systems, the smaller of the two GPUs' counts of active links to a switch
  (every GPU on the switch fabric reaches every other one: ``NV18`` on HGX H100/H200). Otherwise
  NVML's PCIe common ancestor: INTERNAL/SINGLE -> ``PIX``, MULTIPLE -> ``PXB``, HOSTBRIDGE ->
  ``PHB``, NODE -> ``NODE``, SYSTEM -> ``SYS``.
- GPU-NIC and NIC-NIC: from the two devices' PCI paths in sysfs (:func:`pcie_relation`).
- Anything unknown is the conservative ``SYS`` (across sockets), or ``NODE`` when both devices
  are known to sit on one NUMA node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shorthop.errors import TopologyError
from shorthop.topology import smi

FORMAT_VERSION = 1
# nvmlGpuTopologyLevel_t -> the nvidia-smi code for two different GPUs.
NVML_LEVELS = {0: "PIX", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
FABRIC_COMPLETED = 3  # NVML_GPU_FABRIC_STATE_COMPLETED
_BDF = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")


def bus_id(raw: str | bytes | None) -> str | None:
    """A PCI address in sysfs form (``0000:18:00.0``), from NVML's ``00000000:18:00.0``, bytes
    or str, any case; ``None`` when it is not one.

    >>> bus_id(b"00000000:1B:00.0")
    '0000:1b:00.0'
    """
    if raw is None:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    match = _BDF.match(text.strip().rstrip("\x00"))
    if match is None:
        return None
    domain, bus, device, function = match.groups()
    return f"{int(domain or '0', 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{function}"


@dataclass(frozen=True, slots=True)
class NvLink:
    """One active NVLink of a GPU: where it goes (``gpu``, ``switch``, ``npu`` or ``unknown``)."""

    link: int
    remote_bus_id: str | None
    remote_type: str


@dataclass(frozen=True, slots=True)
class Fabric:
    """NVML's GPU fabric info: the multi-node NVLink domain (an NVL72 rack) the GPU belongs to."""

    cluster_uuid: str
    clique_id: int
    state: int
    status: int

    @property
    def clique(self) -> str | None:
        """``<cluster UUID>.<clique id>`` as GPU Feature Discovery labels it, when the fabric is
        attached (registration completed, no error, a non-zero cluster UUID)."""
        attached = self.state == FABRIC_COMPLETED and self.status == 0
        if not attached or set(self.cluster_uuid) <= {"0", "-"}:
            return None
        return f"{self.cluster_uuid}.{self.clique_id}"


@dataclass(frozen=True, slots=True)
class GpuReading:
    """What was learnt about one GPU; ``None`` is "unknown", ``nvlinks=None`` means NVLink
    state could not be read (not supported), ``()`` that no link is active."""

    index: int
    uuid: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    numa_node: int | None = None  # the PCI function's NUMA node: nvidia-smi's NUMA Affinity
    cpu_affinity: str | None = None
    gpu_numa_id: int | None = None  # the GPU memory's own NUMA node (coherent systems only)
    pci_path: tuple[str, ...] | None = None
    nvlinks: tuple[NvLink, ...] | None = None
    fabric: Fabric | None = None


@dataclass(frozen=True, slots=True)
class NicReading:
    """An RDMA device (``/sys/class/infiniband/<name>``) and where it sits on PCIe."""

    name: str
    pci_bus_id: str | None = None
    numa_node: int | None = None
    pci_path: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class NodeReading:
    """One full reading of a node. ``ancestors[(i, j)]`` (``i < j``) is NVML's
    ``nvmlGpuTopologyLevel_t`` for the pair, absent where NVML did not answer."""

    source: str  # "nvml", "nvidia-smi" or "fake-nvml"
    gpus: tuple[GpuReading, ...]
    ancestors: Mapping[tuple[int, int], int] = field(default_factory=dict)
    nics: tuple[NicReading, ...] = ()
    driver: str | None = None
    notes: tuple[str, ...] = ()  # what was unknown and why, for the log

    def clique(self) -> str | None:
        """The node's NVLink domain: the one clique all fabric-attached GPUs agree on, else
        ``None`` (none attached, or they disagree, as GPU Feature Discovery decides)."""
        cliques = {g.fabric.clique for g in self.gpus if g.fabric and g.fabric.clique}
        return cliques.pop() if len(cliques) == 1 else None


def pcie_relation(
    a: tuple[str, ...] | None,
    b: tuple[str, ...] | None,
    numa_a: int | None = None,
    numa_b: int | None = None,
) -> str:
    """The nvidia-smi code between two PCI devices from their sysfs paths.

    A path lists the root complex (``pci0000:00``) then every PCI function from the root port
    down to the device itself, as ``/sys/devices`` nests them. Different root complexes: ``NODE``
    on one NUMA node, ``SYS`` across (or unknown). Same root complex: ``PHB`` when only the root
    complex is shared, ``PIX`` when each device sits at most one bridge below the deepest shared
    bridge (one PCIe switch, or functions of one device), else ``PXB``.

    >>> sw = ("pci0000:00", "0000:00:01.0", "0000:01:00.0")
    >>> pcie_relation((*sw, "0000:02:00.0", "0000:03:00.0"), (*sw, "0000:02:01.0", "0000:04:00.0"))
    'PIX'
    >>> pcie_relation(("pci0000:00", "0000:00:01.0", "0000:01:00.0"),
    ...               ("pci0000:80", "0000:80:01.0", "0000:81:00.0"), 0, 1)
    'SYS'
    """
    same_numa = numa_a is not None and numa_a == numa_b
    if not a or not b:
        return "NODE" if same_numa else "SYS"
    if a[0] != b[0]:
        return "NODE" if same_numa else "SYS"
    common = 0
    while common < min(len(a), len(b)) - 1 and a[common] == b[common]:
        common += 1
    if common <= 1:
        return "PHB"
    below_a = len(a) - common - 1  # bridges between the shared one and the device
    below_b = len(b) - common - 1
    return "PIX" if below_a <= 1 and below_b <= 1 else "PXB"


def nvlink_counts(reading: NodeReading) -> dict[tuple[int, int], int]:
    """Bonded NVLinks per GPU pair ``(i, j)``, ``i < j``: direct links, plus the switch fabric."""
    by_bus = {g.pci_bus_id: g.index for g in reading.gpus if g.pci_bus_id}
    counts: dict[tuple[int, int], int] = {}
    to_switch: dict[int, int] = {}
    for gpu in reading.gpus:
        for link in gpu.nvlinks or ():
            if link.remote_type == "switch":
                to_switch[gpu.index] = to_switch.get(gpu.index, 0) + 1
                continue
            other = by_bus.get(link.remote_bus_id) if link.remote_bus_id else None
            if other is None or other == gpu.index:
                continue
            pair = (min(gpu.index, other), max(gpu.index, other))
            counts[pair] = counts.get(pair, 0) + 1
    # Each direct link was counted from both ends; a link seen from one end only still counts.
    counts = {pair: (n + 1) // 2 for pair, n in counts.items()}
    switched = sorted(to_switch)
    for x, i in enumerate(switched):
        for j in switched[x + 1 :]:
            counts[(i, j)] = counts.get((i, j), 0) + min(to_switch[i], to_switch[j])
    return counts


def _gpu_pair(
    reading: NodeReading, i: int, j: int, nvlinks: Mapping[tuple[int, int], int]
) -> smi.Link:
    if i == j:
        return smi.Link("X")
    pair = (min(i, j), max(i, j))
    if nvlinks.get(pair):
        return smi.Link("NV", nvlinks[pair])
    level = reading.ancestors.get(pair)
    if level in NVML_LEVELS:
        return smi.Link(NVML_LEVELS[level])
    a, b = reading.gpus[i], reading.gpus[j]
    return smi.Link(pcie_relation(a.pci_path, b.pci_path, a.numa_node, b.numa_node))


def to_matrix(reading: NodeReading) -> smi.TopoMatrix:
    """The ``nvidia-smi topo -m`` matrix of a reading (NICs in PCI address order, as nvidia-smi
    lists them).

    Raises
    ------
    TopologyError
        GPUs not indexed 0..n-1.
    """
    gpus = reading.gpus
    if [g.index for g in gpus] != list(range(len(gpus))):
        raise TopologyError(f"GPU indices {[g.index for g in gpus]} are not 0..{len(gpus) - 1}")
    nvlinks = nvlink_counts(reading)
    nics = sorted(reading.nics, key=lambda n: (n.pci_bus_id or "~", n.name))
    gpu_rows = tuple(
        tuple(_gpu_pair(reading, i, j, nvlinks) for j in range(len(gpus))) for i in range(len(gpus))
    )
    gpu_nic = tuple(
        tuple(
            smi.Link(pcie_relation(g.pci_path, n.pci_path, g.numa_node, n.numa_node)) for n in nics
        )
        for g in gpus
    )
    nic_nic = tuple(
        tuple(
            smi.Link("X")
            if k == m
            else smi.Link(pcie_relation(a.pci_path, b.pci_path, a.numa_node, b.numa_node))
            for m, b in enumerate(nics)
        )
        for k, a in enumerate(nics)
    )
    return smi.TopoMatrix(
        gpus=len(gpus),
        nics=tuple(n.name for n in nics),
        gpu=gpu_rows,
        gpu_nic=gpu_nic,
        cpu_affinity=tuple(g.cpu_affinity for g in gpus),
        numa_affinity=tuple(g.numa_node for g in gpus),
        legend=dict(smi.LEGEND),
        nic_nic=nic_nic,
    )


@dataclass(frozen=True, slots=True)
class Published:
    """The structured annotation, decoded."""

    version: int
    source: str
    matrix: smi.TopoMatrix
    uuids: tuple[str | None, ...]
    pci_bus_ids: tuple[str | None, ...]
    clique: str | None
    driver: str | None


def encode(reading: NodeReading, matrix: smi.TopoMatrix | None = None) -> str:
    """The ``shorthop.io/gpu-topology`` annotation: compact JSON with sorted keys, so that an
    unchanged node gives byte-identical text (the agent patches only on change)."""
    matrix = matrix or to_matrix(reading)
    by_name = {n.name: n for n in reading.nics}
    nics = [by_name.get(name) or NicReading(name) for name in matrix.nics]
    body: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "source": reading.source,
        "driver": reading.driver,
        "clique": reading.clique(),
        "gpus": [
            {
                "index": g.index,
                "uuid": g.uuid,
                "name": g.name,
                "pciBusId": g.pci_bus_id,
                "numaNode": g.numa_node,
                "gpuNumaId": g.gpu_numa_id,
                "cpuAffinity": g.cpu_affinity,
                "links": [str(link) for link in matrix.gpu[g.index]],
                "nicLinks": [str(link) for link in matrix.gpu_nic[g.index]],
            }
            for g in reading.gpus
        ],
        "nics": [
            {
                "name": n.name,
                "pciBusId": n.pci_bus_id,
                "numaNode": n.numa_node,
                "links": [str(link) for link in matrix.nic_nic[k]] if matrix.nic_nic else [],
            }
            for k, n in enumerate(nics)
        ],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise TopologyError(
            f"{where}.{key} is {value!r}; expected {getattr(kind, '__name__', kind)}"
        )
    return value


def decode(text: str) -> Published:
    """Read the ``shorthop.io/gpu-topology`` annotation back.

    Raises
    ------
    TopologyError
        Not JSON, an unknown ``version``, a field of the wrong type, or a matrix that breaks the
        rules ``smi.parse`` enforces (symmetric, ``X`` on the diagonal, known link codes).
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TopologyError(f"is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TopologyError("is not a JSON object")
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise TopologyError(
            f"version is {version!r}; this shorthop reads version {FORMAT_VERSION} "
            "(upgrade the operator or the node agent so that they match)"
        )
    gpus = _field(data, "gpus", list, "") or []
    nics = _field(data, "nics", list, "") or []
    if not gpus:
        raise TopologyError("gpus is empty")
    for i, gpu in enumerate(gpus):
        if not isinstance(gpu, dict) or gpu.get("index") != i:
            raise TopologyError(f"gpus[{i}] must be an object with index {i}")
    for k, nic in enumerate(nics):
        if not isinstance(nic, dict) or not isinstance(nic.get("name"), str):
            raise TopologyError(f"nics[{k}] must be an object with a name")

    def links(row: Any, where: str, size: int) -> tuple[smi.Link, ...]:
        if not isinstance(row, list) or len(row) != size:
            raise TopologyError(f"{where} must list {size} links")
        return tuple(smi.parse_link(str(cell), where) for cell in row)

    numa = [_field(g, "numaNode", int, f"gpus[{g['index']}]") for g in gpus]
    nic_links = [n.get("links") or [] for n in nics]
    matrix = smi.TopoMatrix(
        gpus=len(gpus),
        nics=tuple(n["name"] for n in nics),
        gpu=tuple(links(g.get("links"), f"gpus[{i}].links", len(gpus)) for i, g in enumerate(gpus)),
        gpu_nic=tuple(
            links(g.get("nicLinks") or [], f"gpus[{i}].nicLinks", len(nics))
            for i, g in enumerate(gpus)
        ),
        cpu_affinity=tuple(_field(g, "cpuAffinity", str, f"gpus[{i}]") for i, g in enumerate(gpus)),
        numa_affinity=tuple(numa),
        legend=dict(smi.LEGEND),
        nic_nic=tuple(links(row, f"nics[{k}].links", len(nics)) for k, row in enumerate(nic_links))
        if nics and all(nic_links)
        else (),
    )
    # The same rules as for a pasted capture: symmetric, X on the diagonal and nowhere else.
    smi.check(matrix)
    return Published(
        version=FORMAT_VERSION,
        source=str(data.get("source") or "unknown"),
        matrix=matrix,
        uuids=tuple(_field(g, "uuid", str, f"gpus[{i}]") for i, g in enumerate(gpus)),
        pci_bus_ids=tuple(_field(g, "pciBusId", str, f"gpus[{i}]") for i, g in enumerate(gpus)),
        clique=_field(data, "clique", str, ""),
        driver=_field(data, "driver", str, ""),
    )

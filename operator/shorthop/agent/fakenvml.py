"""A fake NVML binding driven by recorded answers, and a fake sysfs tree to go with it. Tests only.

:class:`FakeNvml` has the names ``agent.reader`` calls on ``pynvml`` (functions, constants,
``NVMLError`` and its ``NVMLError_NotSupported``-style subclasses, the fabric-info structures)
and answers from a recording, a JSON object in the format of the real NVML probe in
``tests/fixtures/gfd/h200x1-nvml-probe.json``, extended::

    {"driver": "580.159.04",
     "gpus": [{"index": 0, "name": "NVIDIA H200", "uuid": "GPU-...", "pci": "00000000:18:00.0",
               "numa": 0,                           # or "ERR NVMLError_NotSupported: ..."
               "nvlink": {"0": {"state": 1, "remote": "00000000:19:00.0", "type": 0},
                          "1": 0},                  # inactive; unlisted: InvalidArgument
               "fabric": {"clusterUuid": "...", "cliqueId": 0, "state": 0, "status": 0},
               "fabric_v": "ERR TypeError: ..."}],  # any answer may be "ERR <type>: text"
     "topology": [[0, 40], [40, 0]],                # nvmlDeviceGetTopologyCommonAncestor
     "sysfs": {"pci": {"0000:18:00.0": {"path": ["pci0000:00", ..., "0000:18:00.0"],
                                        "numa": 0, "cpus": "0-55"}},
               "infiniband": {"mlx5_0": "0000:1a:00.0"}}}

:func:`recording_from_matrix` derives such a recording from an ``nvidia-smi topo -m`` capture (a
PCIe tree that reproduces its relations, NVLinks that reproduce its ``NV#`` cells), so every real
capture becomes a fake node; :func:`write_sysfs` lays out the ``sysfs`` part as a directory tree
for ``agent.sysfs.Sysfs``. The agent loads this module only through the hidden test option
``--fake-nvml`` (see ``commands/node_agent.py``), which it refuses inside a pod.
"""

from __future__ import annotations

import ctypes
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shorthop.topology import hardware, smi

NVML_NVLINK_MAX_LINKS = 18
NVML_LEVEL = {"PIX": 10, "PXB": 20, "PHB": 30, "NODE": 40, "SYS": 50}
_ORDER = {"PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}
NVSWITCH_BUS = "0000:fe:00.0"


class NVMLError(Exception):
    """Base of the fake's errors, like ``pynvml.NVMLError``."""


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_InvalidArgument(NVMLError):
    pass


class NVMLError_Unknown(NVMLError):
    pass


class c_nvmlGpuFabricInfo_t(ctypes.Structure):
    _fields_ = [
        ("clusterUuid", ctypes.c_uint8 * 16),
        ("status", ctypes.c_uint),
        ("cliqueId", ctypes.c_uint32),
        ("state", ctypes.c_uint),
    ]


class c_nvmlGpuFabricInfoV_t(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("clusterUuid", ctypes.c_uint8 * 16),
        ("status", ctypes.c_uint),
        ("cliqueId", ctypes.c_uint32),
        ("state", ctypes.c_uint),
        ("healthMask", ctypes.c_uint32),
    ]


class _PciInfo:
    def __init__(self, bus: str) -> None:
        self.busId = bus.encode()
        self.busIdLegacy = bus[4:].encode()


def _raise_if_error(answer: Any) -> Any:
    """Recorded ``"ERR <type>: <text>"`` answers raise that error; values pass through."""
    if isinstance(answer, str) and answer.startswith("ERR "):
        kind, _, text = answer[4:].partition(":")
        if kind == "TypeError":
            raise TypeError(text.strip())
        error = {
            "NVMLError_NotSupported": NVMLError_NotSupported,
            "NVMLError_InvalidArgument": NVMLError_InvalidArgument,
        }.get(kind, NVMLError_Unknown)
        raise error(text.strip() or kind)
    return answer


def _uuid_bytes(text: str) -> bytes:
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        digits = "".join(c for c in text if c in "0123456789abcdefABCDEF")[:32]
        return bytes.fromhex(digits.ljust(32, "0"))


class FakeNvml:
    """An object with ``pynvml``'s names, answering from ``recording``. Handles are indices."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVML_NVLINK_MAX_LINKS = NVML_NVLINK_MAX_LINKS
    c_nvmlGpuFabricInfo_t = c_nvmlGpuFabricInfo_t
    c_nvmlGpuFabricInfoV_t = c_nvmlGpuFabricInfoV_t

    def __init__(self, recording: Mapping[str, Any]) -> None:
        self.recording = recording
        self.gpus: list[Mapping[str, Any]] = list(recording.get("gpus") or [])
        self.initialised = 0
        self.calls: list[str] = []

    def _gpu(self, handle: int) -> Mapping[str, Any]:
        if not isinstance(handle, int) or not 0 <= handle < len(self.gpus):
            raise NVMLError_InvalidArgument(f"no GPU handle {handle!r}")
        if self.initialised <= 0:
            raise NVMLError_Unknown("Uninitialized")
        return self.gpus[handle]

    def nvmlInit(self) -> None:
        _raise_if_error(self.recording.get("init"))
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(_raise_if_error(self.recording.get("driver", "ERR NVMLError_NotSupported: x")))

    def nvmlDeviceGetCount(self) -> int:
        if self.initialised <= 0:
            raise NVMLError_Unknown("Uninitialized")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._gpu(index)
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return str(_raise_if_error(self._gpu(handle).get("uuid")))

    def nvmlDeviceGetName(self, handle: int) -> str:
        return str(_raise_if_error(self._gpu(handle).get("name")))

    def nvmlDeviceGetPciInfo(self, handle: int) -> _PciInfo:
        return _PciInfo(str(_raise_if_error(self._gpu(handle).get("pci"))))

    def nvmlDeviceGetNumaNodeId(self, handle: int) -> int:
        return int(_raise_if_error(self._gpu(handle).get("numa", "ERR NVMLError_NotSupported: x")))

    def nvmlDeviceGetTopologyCommonAncestor(self, a: int, b: int) -> int:
        self._gpu(a)
        self._gpu(b)
        levels = self.recording.get("topology")
        if not levels:
            raise NVMLError_NotSupported("Not Supported")
        return int(_raise_if_error(levels[a][b]))

    def _link(self, handle: int, link: int) -> Any:
        links = _raise_if_error(self._gpu(handle).get("nvlink", "ERR NVMLError_NotSupported: x"))
        if str(link) not in links:
            raise NVMLError_InvalidArgument(f"link {link}")
        return _raise_if_error(links[str(link)])

    def nvmlDeviceGetNvLinkState(self, handle: int, link: int) -> int:
        answer = self._link(handle, link)
        return int(answer.get("state", 1)) if isinstance(answer, Mapping) else int(answer)

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: int, link: int) -> _PciInfo:
        answer = self._link(handle, link)
        if not isinstance(answer, Mapping):
            raise NVMLError_InvalidArgument("link inactive")
        return _PciInfo(str(answer["remote"]))

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, handle: int, link: int) -> int:
        answer = self._link(handle, link)
        if not isinstance(answer, Mapping):
            raise NVMLError_InvalidArgument("link inactive")
        return int(_raise_if_error(answer.get("type", 0)))

    def _fabric(self, handle: int, key: str, info: Any) -> int:
        answer = _raise_if_error(self._gpu(handle).get(key, "ERR NVMLError_NotSupported: x"))
        target = getattr(info, "_obj", info)  # ctypes.byref(struct) -> struct
        if not isinstance(target, (c_nvmlGpuFabricInfo_t, c_nvmlGpuFabricInfoV_t)):
            raise TypeError(f"{key}: expected a pointer to a fabric info structure")
        raw = _uuid_bytes(str(answer.get("clusterUuid", "")))
        ctypes.memmove(target.clusterUuid, raw, 16)
        target.cliqueId = int(answer.get("cliqueId", 0))
        target.state = int(answer.get("state", 0))
        target.status = int(answer.get("status", 0))
        return 0

    def nvmlDeviceGetGpuFabricInfo(self, handle: int, info: Any) -> int:
        return self._fabric(handle, "fabric", info)

    def nvmlDeviceGetGpuFabricInfoV(self, handle: int, info: Any) -> int:
        return self._fabric(handle, "fabric_v", info)


def load(path: str | Path) -> FakeNvml:
    """A fake from a recording file (JSON)."""
    return FakeNvml(json.loads(Path(path).read_text()))


# -- recordings derived from nvidia-smi captures -------------------------------------------------


class _Groups:
    """Union-find over device ids."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def labels(self) -> list[int]:
        roots: dict[int, int] = {}
        return [roots.setdefault(self.find(x), len(roots)) for x in range(len(self.parent))]


def _relations(matrix: smi.TopoMatrix) -> dict[tuple[int, int], str]:
    """Known PCIe codes between devices (GPUs 0..g-1, then NICs); NVLink pairs are unknown."""
    g = matrix.gpus
    known: dict[tuple[int, int], str] = {}
    for i in range(g):
        for j in range(g):
            if i != j and matrix.gpu[i][j].code != "NV":
                known[(i, j)] = matrix.gpu[i][j].code
        for k, link in enumerate(matrix.gpu_nic[i]):
            known[(i, g + k)] = known[(g + k, i)] = link.code
    for k, row in enumerate(matrix.nic_nic):
        for m, link in enumerate(row):
            if k != m:
                known[(g + k, g + m)] = link.code
    return known


def recording_from_matrix(
    matrix: smi.TopoMatrix, *, name: str = "NVIDIA GPU", clique: tuple[str, int] | None = None
) -> dict[str, Any]:
    """NVML answers and a sysfs layout under which the agent reads back ``matrix``.

    The PCIe tree nests devices by how close the capture says they are: one NUMA node per group
    closer than ``SYS`` (and per GPU NUMA affinity), one host bridge per group closer than
    ``NODE``, one root port per group closer than ``PHB``, one PCIe switch per group at ``PIX``;
    each device hangs off its own switch port. GPUs get PCI addresses in index order and NICs in
    the capture's order after them (nvidia-smi lists both by address). Pairs of GPUs where every
    pair is ``NV<k>`` (three GPUs or more) get ``k`` links each to an NVSwitch, any other ``NV#``
    pair direct links. ``clique`` gives every GPU fabric info (cluster UUID, clique id).
    """
    g, n = matrix.gpus, matrix.gpus + len(matrix.nics)
    known = _relations(matrix)
    numa = list(matrix.numa_affinity)
    levels = {}
    for threshold in ("NODE", "PHB", "PXB", "PIX"):
        groups = _Groups(n)
        for (a, b), code in known.items():
            if _ORDER[code] <= _ORDER[threshold]:
                groups.join(a, b)
        levels[threshold] = groups.labels()
    # A NIC's NUMA node: its group's GPUs' when that node is the group's alone; otherwise a node
    # of its own, so that captures where nvidia-smi's SYS/NODE disagrees with the NUMA Affinity
    # column (seen on a real A100 board) read back as printed.
    group_numa: dict[int, set[int | None]] = {}
    for i in range(g):
        group_numa.setdefault(levels["NODE"][i], set()).add(numa[i])
    owners: dict[int | None, int] = {}
    for values in group_numa.values():
        for value in values:
            owners[value] = owners.get(value, 0) + 1
    device_numa = {
        group: next(iter(values))
        for group, values in group_numa.items()
        if len(values) == 1 and None not in values and owners[next(iter(values))] == 1
    }
    buses = [f"0000:{x + 1:02x}:00.0" for x in range(n)]
    pci: dict[str, dict[str, Any]] = {}
    for x in range(n):
        host, port, switch = levels["PHB"][x], levels["PXB"][x], levels["PIX"][x]
        path = [
            f"pci{0x1000 + host:04x}:00",
            f"{0x1000 + host:04x}:00:{port % 32:02x}.{port // 32 % 8}",
            f"{0x2000 + switch // 256:04x}:{switch % 256:02x}:00.0",
            f"{0x3000 + x // 32:04x}:{switch % 256:02x}:{x % 32:02x}.0",
            buses[x],
        ]
        own = 1000 + levels["NODE"][x]
        gpu_numa = numa[x] if x < g else device_numa.get(levels["NODE"][x], own)
        pci[buses[x]] = {
            "path": path,
            "numa": -1 if gpu_numa is None else gpu_numa,
            "cpus": (matrix.cpu_affinity[x] if x < g else None),
        }
    paths = {x: tuple(pci[buses[x]]["path"]) for x in range(n)}
    topology = [
        [
            0
            if i == j
            else NVML_LEVEL[hardware.pcie_relation(paths[i], paths[j], numa[i], numa[j])]
            for j in range(g)
        ]
        for i in range(g)
    ]
    nv = {
        (i, j): matrix.gpu[i][j].links
        for i in range(g)
        for j in range(g)
        if matrix.gpu[i][j].code == "NV"
    }
    counts = set(nv.values())
    switched = g >= 3 and len(nv) == g * (g - 1) and len(counts) == 1
    gpus = []
    for i in range(g):
        links: dict[str, Any] = {}
        if switched:
            for link in range(next(iter(counts))):
                links[str(link)] = {"state": 1, "remote": f"0000{NVSWITCH_BUS}", "type": 2}
        else:
            for j in range(g):
                for _ in range(nv.get((i, j), 0)):
                    links[str(len(links))] = {"state": 1, "remote": f"0000{buses[j]}", "type": 0}
        fabric: dict[str, Any] = {"clusterUuid": "0" * 32, "cliqueId": 0, "state": 0, "status": 0}
        if clique is not None:
            fabric = {"clusterUuid": clique[0], "cliqueId": clique[1], "state": 3, "status": 0}
        gpus.append(
            {
                "index": i,
                "name": name,
                "uuid": f"GPU-{uuid.uuid5(uuid.NAMESPACE_OID, f'{name}/{i}/{buses[i]}')}",
                "pci": f"0000{buses[i]}".upper(),
                # nvmlDeviceGetNumaNodeId is the GPU memory's node ("GPU NUMA ID"): N/A on
                # every captured board, as on the real H200.
                "numa": "ERR NVMLError_NotSupported: Not Supported",
                "nvlink": links or {str(k): 0 for k in range(4)},
                "fabric": fabric,
                "fabric_v": fabric,
            }
        )
    infiniband = {nic: buses[g + k] for k, nic in enumerate(matrix.nics)}
    return {
        "driver": "fake",
        "gpus": gpus,
        "topology": topology,
        "sysfs": {"pci": pci, "infiniband": infiniband},
    }


def write_sysfs(recording: Mapping[str, Any], root: str | Path) -> Path:
    """Lay out the recording's ``sysfs`` part under ``root`` (``devices/``, ``bus/pci/devices``
    links, ``class/infiniband/<nic>/device`` links); returns ``root``."""
    root = Path(root)
    layout = recording.get("sysfs") or {}
    links = root / "bus" / "pci" / "devices"
    links.mkdir(parents=True, exist_ok=True)
    for bdf, device in (layout.get("pci") or {}).items():
        where = root.joinpath("devices", *device["path"])
        where.mkdir(parents=True, exist_ok=True)
        (where / "numa_node").write_text(f"{device.get('numa', -1)}\n")
        if device.get("cpus"):
            (where / "local_cpulist").write_text(f"{device['cpus']}\n")
        link = links / bdf
        if not link.is_symlink():
            link.symlink_to(where)
    for nic, bdf in (layout.get("infiniband") or {}).items():
        home = root / "class" / "infiniband" / nic
        home.mkdir(parents=True, exist_ok=True)
        target = root.joinpath("devices", *layout["pci"][bdf]["path"])
        if not (home / "device").is_symlink():
            (home / "device").symlink_to(target)
    return root

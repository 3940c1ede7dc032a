"""Read a node's GPU topology: through NVML, else from ``nvidia-smi topo -m``.

NVML calls used (the binding is ``pynvml`` from the ``nvidia-ml-py`` package, or any object with
the same function names, such as ``agent.fakenvml`` in tests):

- nvmlInit / nvmlShutdown: around every reading (the driver may be reloaded)
- nvmlSystemGetDriverVersion: reported in the annotation
- nvmlDeviceGetCount: the GPUs, indexed as NVML (and nvidia-smi) index them
- nvmlDeviceGetHandleByIndex: a handle per GPU
- nvmlDeviceGetUUID, nvmlDeviceGetName: identity, published (DRA pins GPUs by UUID)
- nvmlDeviceGetPciInfo: busId: the key to sysfs and to NVLink peers
- nvmlDeviceGetNumaNodeId: the GPU memory's NUMA node ("GPU NUMA ID"; often N/A)
- nvmlDeviceGetTopologyCommonAncestor: PCIe relation of every GPU pair (PIX ... SYS)
- nvmlDeviceGetNvLinkState: per link 0..NVML_NVLINK_MAX_LINKS-1: active?
- nvmlDeviceGetNvLinkRemotePciInfo: the active link's far end (busId)
- nvmlDeviceGetNvLinkRemoteDeviceType: GPU, NVSwitch or IBM NPU at the far end
- nvmlDeviceGetGpuFabricInfoV: cluster UUID + clique id + state: the NVL72 domain
- nvmlDeviceGetGpuFabricInfo: the same, deprecated; asked when the V form fails

Any answer other than a value (``NVMLError`` such as NotSupported, or a ``TypeError`` from a
binding whose calling convention differs) is "unknown" for that item and noted, never a failure:
the real H200 probe in ``tests/fixtures/gfd`` answers NotSupported for NUMA and NVLink. Only
``nvmlInit`` or ``nvmlDeviceGetCount`` failing makes NVML unusable, and then the reader runs
``nvidia-smi topo -m``. Caller: ``agent.publisher``.
"""

from __future__ import annotations

import ctypes
import importlib
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shorthop.agent.sysfs import Sysfs
from shorthop.errors import ShorthopError, TopologyError
from shorthop.topology import hardware, smi

REMOTE_TYPES = {0: "gpu", 1: "npu", 2: "switch"}  # NVML_NVLINK_DEVICE_TYPE_*
NVLINK_MAX_LINKS = 18  # used when the binding has no NVML_NVLINK_MAX_LINKS
SMI_TIMEOUT_S = 60


class ReadError(ShorthopError):
    """Neither NVML nor ``nvidia-smi`` gave a topology; the message says why for each."""


@dataclass(frozen=True, slots=True)
class Result:
    """A reading with its matrix (``nvidia-smi`` readings carry the parsed capture)."""

    reading: hardware.NodeReading
    matrix: smi.TopoMatrix


class _Unknown:
    """What a call answered instead of a value."""

    def __init__(self, why: str) -> None:
        self.why = why


def load_pynvml() -> Any:
    """The official binding (``pip install shorthop[agent]``); ``ModuleNotFoundError`` if absent."""
    return importlib.import_module("pynvml")


class _Session:
    """One NVML session's calls, each turning a failure into :class:`_Unknown`."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.notes: list[str] = []
        errors: list[type[BaseException]] = [TypeError, AttributeError, ValueError, OSError]
        error = getattr(nvml, "NVMLError", None)
        if isinstance(error, type) and issubclass(error, BaseException):
            errors.insert(0, error)
        self.errors = tuple(errors)

    def ask(self, name: str, *args: Any) -> Any:
        function: Callable[..., Any] | None = getattr(self.nvml, name, None)
        if function is None:
            return _Unknown(f"{name} is not in this NVML binding")
        try:
            return function(*args)
        except self.errors as exc:
            return _Unknown(f"{name}: {type(exc).__name__}: {exc}")

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _text(value: Any) -> str | None:
    if isinstance(value, _Unknown) or value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _nvlinks(s: _Session, handle: Any, index: int) -> tuple[hardware.NvLink, ...] | None:
    links: list[hardware.NvLink] = []
    answered = False
    for link in range(int(getattr(s.nvml, "NVML_NVLINK_MAX_LINKS", NVLINK_MAX_LINKS))):
        state = s.ask("nvmlDeviceGetNvLinkState", handle, link)
        if isinstance(state, _Unknown):
            if not answered:
                s.note(f"GPU{index}: NVLink state unknown ({state.why})")
                return None
            continue  # links past the GPU's own count answer an error
        answered = True
        if not state:
            continue
        remote = s.ask("nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
        remote_bus = hardware.bus_id(getattr(remote, "busId", None))
        kind = s.ask("nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
        remote_type = "unknown" if isinstance(kind, _Unknown) else REMOTE_TYPES.get(kind, "unknown")
        links.append(hardware.NvLink(link, remote_bus, remote_type))
    return tuple(links)


def _fabric(s: _Session, handle: Any, index: int) -> hardware.Fabric | None:
    for struct_name, call in (
        ("c_nvmlGpuFabricInfoV_t", "nvmlDeviceGetGpuFabricInfoV"),
        ("c_nvmlGpuFabricInfo_t", "nvmlDeviceGetGpuFabricInfo"),
    ):
        struct = getattr(s.nvml, struct_name, None)
        if struct is None:
            continue
        try:
            info = struct()
            answer = s.ask(call, handle, ctypes.byref(info))
        except (TypeError, ValueError) as exc:
            answer = _Unknown(f"{call}: {exc}")
        if isinstance(answer, _Unknown):
            s.note(f"GPU{index}: fabric info unknown ({answer.why})")
            continue
        raw = bytes(getattr(info, "clusterUuid", b"") or b"")
        cluster = str(uuid.UUID(bytes=raw[:16].ljust(16, b"\0")))
        return hardware.Fabric(
            cluster, int(info.cliqueId), int(info.state), int(getattr(info, "status", 0))
        )
    return None


def read_nvml(nvml: Any, sysfs: Sysfs, *, source: str = "nvml") -> hardware.NodeReading:
    """One reading through an NVML binding.

    Raises
    ------
    ReadError
        ``nvmlInit`` or ``nvmlDeviceGetCount`` failed (no driver, no library, no devices).
    """
    s = _Session(nvml)
    started = s.ask("nvmlInit")
    if isinstance(started, _Unknown):
        raise ReadError(f"NVML: {started.why}")
    try:
        count = s.ask("nvmlDeviceGetCount")
        if isinstance(count, _Unknown) or not isinstance(count, int) or count <= 0:
            why = count.why if isinstance(count, _Unknown) else f"{count!r} GPUs"
            raise ReadError(f"NVML: {why}")
        driver = _text(s.ask("nvmlSystemGetDriverVersion"))
        handles = []
        for i in range(count):
            handle = s.ask("nvmlDeviceGetHandleByIndex", i)
            if isinstance(handle, _Unknown):
                raise ReadError(f"NVML: GPU{i}: {handle.why}")
            handles.append(handle)
        gpus = []
        for i, handle in enumerate(handles):
            pci = s.ask("nvmlDeviceGetPciInfo", handle)
            bdf = (
                None if isinstance(pci, _Unknown) else hardware.bus_id(getattr(pci, "busId", None))
            )
            if bdf is None:
                s.note(f"GPU{i}: PCI bus id unknown")
            # NUMA Affinity is the PCI function's node (sysfs); NVML's NUMA node id is the
            # GPU memory's own node on coherent systems (nvidia-smi's "GPU NUMA ID").
            memory_numa = s.ask("nvmlDeviceGetNumaNodeId", handle)
            if isinstance(memory_numa, _Unknown) or not isinstance(memory_numa, int):
                memory_numa = None
            numa = sysfs.numa_node(bdf)
            if numa is None:
                numa = memory_numa
                s.note(f"GPU{i}: NUMA node not in sysfs; NVML says {numa}")
            gpus.append(
                hardware.GpuReading(
                    index=i,
                    uuid=_text(s.ask("nvmlDeviceGetUUID", handle)),
                    name=_text(s.ask("nvmlDeviceGetName", handle)),
                    pci_bus_id=bdf,
                    numa_node=numa,
                    gpu_numa_id=memory_numa if memory_numa is None or memory_numa >= 0 else None,
                    cpu_affinity=sysfs.cpu_list(bdf),
                    pci_path=sysfs.pci_path(bdf),
                    nvlinks=_nvlinks(s, handle, i),
                    fabric=_fabric(s, handle, i),
                )
            )
        ancestors: dict[tuple[int, int], int] = {}
        for i in range(count):
            for j in range(i + 1, count):
                level = s.ask("nvmlDeviceGetTopologyCommonAncestor", handles[i], handles[j])
                if isinstance(level, _Unknown):
                    s.note(f"GPU{i}/GPU{j}: PCIe relation unknown ({level.why}); from sysfs")
                else:
                    ancestors[(i, j)] = int(level)
    finally:
        s.ask("nvmlShutdown")
    return hardware.NodeReading(
        source=source,
        gpus=tuple(gpus),
        ancestors=ancestors,
        nics=sysfs.rdma_nics(),
        driver=driver,
        notes=tuple(s.notes),
    )


def read_smi(command: str = "nvidia-smi") -> Result:
    """``nvidia-smi topo -m``, parsed; the reading carries only what the text says.

    Raises
    ------
    ReadError
        The command is missing, fails, or prints something that does not parse.
    """
    try:
        done = subprocess.run(
            [command, "topo", "-m"],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ReadError(f"{command} topo -m: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ReadError(f"{command} topo -m exited {done.returncode}: {why[0]}")
    try:
        matrix = smi.parse(done.stdout)
    except TopologyError as exc:
        raise ReadError(f"{command} topo -m printed something unreadable: {exc}") from None
    reading = hardware.NodeReading(
        source="nvidia-smi",
        gpus=tuple(
            hardware.GpuReading(
                index=i, numa_node=matrix.numa_affinity[i], cpu_affinity=matrix.cpu_affinity[i]
            )
            for i in range(matrix.gpus)
        ),
        nics=tuple(hardware.NicReading(name) for name in matrix.nics),
        notes=("read from nvidia-smi topo -m: no UUIDs, PCI ids or fabric info",),
    )
    return Result(reading, matrix)


def read(
    nvml: Any | None, sysfs: Sysfs, *, smi_command: str = "nvidia-smi", source: str = "nvml"
) -> Result:
    """NVML first, ``nvidia-smi`` when NVML is missing or unusable.

    Raises
    ------
    ReadError
        Both failed; the message gives both reasons.
    """
    reasons = []
    if nvml is None:
        reasons.append(
            "NVML: the nvidia-ml-py binding is not installed (pip install 'shorthop[agent]')"
        )
    else:
        try:
            reading = read_nvml(nvml, sysfs, source=source)
        except ReadError as exc:
            reasons.append(str(exc))
        else:
            return Result(reading, hardware.to_matrix(reading))
    try:
        result = read_smi(smi_command)
    except ReadError as exc:
        reasons.append(str(exc))
        raise ReadError("; ".join(reasons)) from None
    notes = (*reasons, *result.reading.notes)
    return Result(
        hardware.NodeReading(
            source=result.reading.source,
            gpus=result.reading.gpus,
            nics=result.reading.nics,
            notes=notes,
        ),
        result.matrix,
    )

"""Where PCI devices and RDMA NICs sit, read from sysfs (``/sys`` or a test's copy of it).

NVML knows GPUs only; the NICs and each device's place in the PCIe tree come from sysfs:

- ``<root>/bus/pci/devices/<bdf>`` links to ``<root>/devices/pci<domain>:<bus>/<bdf>/.../<bdf>``:
  the path from the root complex down to the device, which ``topology.hardware.pcie_relation``
  compares;
- ``<root>/bus/pci/devices/<bdf>/numa_node`` (``-1`` when the firmware does not say) and
  ``local_cpulist`` (what nvidia-smi prints as CPU Affinity);
- ``<root>/class/infiniband/<name>/device`` links to the NIC's PCI function (RDMA devices:
  InfiniBand and RoCE NICs, the ones GPUDirect RDMA uses).

Containers see the host's ``/sys`` read-only by default, so the agent needs no mount for this.
Every read that fails gives ``None`` ("unknown"), never an exception. Caller: ``agent.reader``.
"""

from __future__ import annotations

import os
from pathlib import Path

from shorthop.topology import hardware


class Sysfs:
    """Read-only views of one sysfs tree; ``root`` is ``/sys`` on a node."""

    def __init__(self, root: str | os.PathLike[str] = "/sys") -> None:
        self.root = Path(root)

    def _device(self, bdf: str) -> Path:
        return self.root / "bus" / "pci" / "devices" / bdf

    def pci_path(self, bdf: str | None) -> tuple[str, ...] | None:
        """``("pci0000:00", "0000:00:01.0", ..., bdf)`` for a PCI function, or ``None``."""
        if bdf is None:
            return None
        try:
            resolved = self._device(bdf).resolve(strict=True)
        except OSError:
            return None
        return _pci_components(resolved)

    def _text(self, bdf: str | None, name: str) -> str | None:
        if bdf is None:
            return None
        try:
            return (self._device(bdf) / name).read_text().strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def numa_node(self, bdf: str | None) -> int | None:
        """The device's NUMA node; ``None`` when unknown (sysfs says ``-1`` then)."""
        text = self._text(bdf, "numa_node")
        try:
            value = int(text) if text is not None else -1
        except ValueError:
            return None
        return value if value >= 0 else None

    def cpu_list(self, bdf: str | None) -> str | None:
        """The CPUs close to the device, as ``0-55,112-167``."""
        return self._text(bdf, "local_cpulist")

    def rdma_nics(self) -> tuple[hardware.NicReading, ...]:
        """Every RDMA device with its PCI function, path and NUMA node, sorted by name."""
        base = self.root / "class" / "infiniband"
        try:
            names = sorted(p.name for p in base.iterdir())
        except OSError:
            return ()
        nics = []
        for name in names:
            try:
                resolved = (base / name / "device").resolve(strict=True)
            except OSError:
                nics.append(hardware.NicReading(name))
                continue
            bdf = hardware.bus_id(resolved.name)
            path = _pci_components(resolved)
            nics.append(hardware.NicReading(name, bdf, self.numa_node(bdf) if bdf else None, path))
        return tuple(nics)


def _pci_components(resolved: Path) -> tuple[str, ...] | None:
    """The part of a resolved ``/sys/devices/...`` path from ``pci<domain>:<bus>`` down."""
    parts = resolved.parts
    start = next((i for i, p in enumerate(parts) if p.startswith("pci") and ":" in p), None)
    if start is None:
        return None
    below = [p for p in parts[start + 1 :] if hardware.bus_id(p) is not None]
    if not below:
        return None
    return (parts[start], *(hardware.bus_id(p) or p for p in below))

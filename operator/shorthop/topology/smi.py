"""Parse ``nvidia-smi topo -m`` output into a typed matrix.

Handles what real captures contain: tab- or space-separated columns, ANSI escapes from a TTY, NIC
rows/columns named ``NIC#`` or directly (``mlx5_0``), ``CPU Affinity`` / ``NUMA Affinity`` /
``GPU NUMA ID`` columns (sometimes with an empty cell between them), the ``Legend:`` and
``NIC Legend:`` blocks in old ("PCIe switch") and new ("PCIe bridge") wording, and the legacy
``SOC`` code for ``SYS``. Callers: ``intranode.model_from_matrix`` (node annotation) and tests.
Pure; raises :class:`~shorthop.errors.TopologyError` with the line at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shorthop.errors import TopologyError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_AFFINITY_HEADERS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
# ASCII digits, and few of them: int() rejects "²" (which \d and str.isdigit() accept) and strings
# of more than 4300 digits.
_GPU = re.compile(r"^GPU([0-9]{1,6})$")
_NV = re.compile(r"^NV([0-9]{1,6})$")
_NUMA = re.compile(r"^[0-9]{1,6}$")
_LEGEND_ENTRY = re.compile(r"^\s*(X|SYS|SOC|NODE|PHB|PXB|PIX|NV#|NIC\d+)\s*[=:]\s*(.+?)\s*$")


@dataclass(frozen=True, slots=True)
class Link:
    """One cell of the matrix: a relation code and, for NVLink, the number of bonded links."""

    code: str  # X, NV, PIX, PXB, PHB, NODE or SYS
    links: int = 0

    def __str__(self) -> str:
        return f"NV{self.links}" if self.code == "NV" else self.code


@dataclass(frozen=True, slots=True)
class TopoMatrix:
    """``gpu[i][j]`` GPU-GPU links, ``gpu_nic[i][k]`` GPU-NIC links, per-GPU affinities."""

    gpus: int
    nics: tuple[str, ...]
    gpu: tuple[tuple[Link, ...], ...]
    gpu_nic: tuple[tuple[Link, ...], ...]
    cpu_affinity: tuple[str | None, ...]
    numa_affinity: tuple[int | None, ...]
    legend: dict[str, str]

    def numa_groups(self) -> tuple[int, ...] | None:
        """A NUMA node id per GPU: from ``NUMA Affinity``, else from distinct ``CPU Affinity``
        sets (old captures have only those), else ``None``."""
        if all(n is not None for n in self.numa_affinity):
            return tuple(n for n in self.numa_affinity if n is not None)
        if all(c is not None for c in self.cpu_affinity):
            order: list[str] = []
            for c in self.cpu_affinity:
                if c is not None and c not in order:
                    order.append(c)
            return tuple(order.index(c) for c in self.cpu_affinity if c is not None)
        return None


def _split(line: str) -> list[str]:
    """Cells of one line: tabs when there are any, else runs of two or more spaces."""
    if "\t" in line:
        return [cell.strip() for cell in line.split("\t")]
    return [cell.strip() for cell in re.split(r" {2,}", line)]


def _parse_cell(cell: str, where: str) -> Link:
    text = cell.strip().upper()
    if text == "SOC":  # nvidia-smi before ~2017 called SYS "SOC"
        text = "SYS"
    if text in ("X", "PIX", "PXB", "PHB", "NODE", "SYS"):
        return Link(text)
    match = _NV.match(text)
    if match and int(match[1]) > 0:
        return Link("NV", int(match[1]))
    raise TopologyError(
        f"{where}: unknown link {cell!r}; expected X, NV#, PIX, PXB, PHB, NODE or SYS "
        "(paste the output of `nvidia-smi topo -m` unchanged)"
    )


def parse(text: str) -> TopoMatrix:
    """Parse the full text printed by ``nvidia-smi topo -m``.

    Parameters
    ----------
    text : str
        The capture, legend blocks optional.

    Returns
    -------
    TopoMatrix

    Raises
    ------
    TopologyError
        No GPU header, a row of the wrong length, an unknown link code, GPUs not numbered 0..n-1,
        a non-symmetric GPU matrix, or a diagonal that is not ``X``.

    Examples
    --------
    >>> m = parse("\\tGPU0\\tGPU1\\nGPU0\\t X \\tNV4\\nGPU1\\tNV4\\t X \\n")
    >>> m.gpus, str(m.gpu[0][1])
    (2, 'NV4')
    """
    lines = [_ANSI.sub("", raw).rstrip("\r\n") for raw in text.splitlines()]
    header_at = next(
        (i for i, line in enumerate(lines) if _split(line)[:1] == [""] and "GPU0" in _split(line)),
        None,
    )
    if header_at is None:
        header_at = next((i for i, line in enumerate(lines) if "GPU0" in _split(line)[1:]), None)
    if header_at is None:
        raise TopologyError(
            "no matrix header with GPU0 found; is this `nvidia-smi topo -m` output?"
        )
    header = [cell for cell in _split(lines[header_at]) if cell]
    devices = [h for h in header if h not in _AFFINITY_HEADERS]
    affinity_headers = [h for h in header if h in _AFFINITY_HEADERS]
    if header[: len(devices)] != devices:
        raise TopologyError(f"line {header_at + 1}: affinity columns must come after the devices")
    gpu_names = [d for d in devices if _GPU.match(d)]
    nic_names = [d for d in devices if not _GPU.match(d)]
    if devices[: len(gpu_names)] != gpu_names:
        raise TopologyError(f"line {header_at + 1}: GPU columns must come before NIC columns")
    if [int(_GPU.match(g)[1]) for g in gpu_names] != list(range(len(gpu_names))):  # type: ignore[index]
        raise TopologyError(
            f"line {header_at + 1}: GPUs must be GPU0..GPU{len(gpu_names) - 1} in order"
        )

    rows: dict[str, list[str]] = {}
    for number, line in enumerate(lines[header_at + 1 :], start=header_at + 2):
        cells = _split(line)
        if not cells or not cells[0]:
            if rows:
                break  # the blank line that ends the matrix
            continue
        name = cells[0]
        if name not in devices:
            if rows:
                break
            continue
        values = cells[1:]
        if len([v for v in values[: len(devices)] if v]) < len(devices):
            raise TopologyError(
                f"line {number}: row {name} has {len([v for v in values if v])} cells, "
                f"expected {len(devices)} (one per device column)"
            )
        rows[name] = values
    missing = [g for g in gpu_names if g not in rows]
    if missing:
        raise TopologyError(f"no matrix row for {', '.join(missing)}")

    gpu_rows: list[tuple[Link, ...]] = []
    nic_rows: list[tuple[Link, ...]] = []
    cpu: list[str | None] = []
    numa: list[int | None] = []
    for i, name in enumerate(gpu_names):
        values = rows[name]
        links = [
            _parse_cell(v, f"{name}/{devices[j]}") for j, v in enumerate(values[: len(devices)])
        ]
        if links[i].code != "X":
            raise TopologyError(f"{name}/{name}: the diagonal must be X, got {links[i]}")
        for j, link in enumerate(links):
            # X means "itself"; anywhere else the model has no link for it (found by fuzzing).
            if link.code == "X" and j != i:
                raise TopologyError(f"{name}/{devices[j]}: X is only for a device and itself")
        gpu_rows.append(tuple(links[: len(gpu_names)]))
        nic_rows.append(tuple(links[len(gpu_names) :]))
        extra = dict(zip(affinity_headers, [v for v in values[len(devices) :] if v], strict=False))
        cpu_value = extra.get("CPU Affinity")
        cpu.append(cpu_value if cpu_value and cpu_value.upper() != "N/A" else None)
        numa_value = extra.get("NUMA Affinity", "")
        numa.append(int(numa_value) if _NUMA.match(numa_value) else None)
    for i in range(len(gpu_names)):
        for j in range(len(gpu_names)):
            if gpu_rows[i][j].code != gpu_rows[j][i].code:
                raise TopologyError(
                    f"GPU{i}/GPU{j} is {gpu_rows[i][j]} but GPU{j}/GPU{i} is {gpu_rows[j][i]}; "
                    "the matrix must be symmetric"
                )

    legend: dict[str, str] = {}
    for line in lines:
        match = _LEGEND_ENTRY.match(line)
        if match and not _split(line)[0].startswith("GPU"):
            legend[match[1]] = match[2]
    nics = tuple(legend.get(n, n) if n.startswith("NIC") else n for n in nic_names)
    return TopoMatrix(
        gpus=len(gpu_names),
        nics=nics,
        gpu=tuple(gpu_rows),
        gpu_nic=tuple(nic_rows),
        cpu_affinity=tuple(cpu),
        numa_affinity=tuple(numa),
        legend=legend,
    )

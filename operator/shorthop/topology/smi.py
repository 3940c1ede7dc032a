"""Parse ``nvidia-smi topo -m`` output into a typed matrix, and print a matrix in that form.

Handles what real captures contain: tab- or space-separated columns (or both, or whitespace
collapsed to single spaces by a copy), ANSI escapes from a TTY, a header row that lost its
leading whitespace (it then starts with ``GPU0``), CRLF line ends, trailing blanks, empty cells,
NIC rows/columns named ``NIC#`` or directly (``mlx5_0``), ``CPU Affinity`` / ``NUMA Affinity`` /
``GPU NUMA ID`` columns (``N/A`` where unknown), the ``Legend:`` and ``NIC Legend:`` blocks in old
("PCIe switch") and new ("PCIe bridge") wording or no legend at all, Markdown quotes and tables
around the capture, and the legacy ``SOC`` code for ``SYS``. Callers:
``intranode.model_from_matrix`` (node annotation), the node agent (``render``) and tests.
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
    """``gpu[i][j]`` GPU-GPU links, ``gpu_nic[i][k]`` GPU-NIC links, per-GPU affinities.

    Equal captures give equal matrices whatever their whitespace; ``legend`` keeps the capture's
    own legend text (old and new wording differ), so compare matrices with :meth:`links_equal`
    when the legend does not matter."""

    gpus: int
    nics: tuple[str, ...]
    gpu: tuple[tuple[Link, ...], ...]
    gpu_nic: tuple[tuple[Link, ...], ...]
    cpu_affinity: tuple[str | None, ...]
    numa_affinity: tuple[int | None, ...]
    legend: dict[str, str]
    # ``nic_nic[k][m]`` NIC-NIC links; empty when the capture has no NIC rows.
    nic_nic: tuple[tuple[Link, ...], ...] = ()

    def links_equal(self, other: TopoMatrix) -> bool:
        """Same GPUs, links, NICs and affinities; the legend text aside."""
        return (
            self.gpus,
            self.nics,
            self.gpu,
            self.gpu_nic,
            self.cpu_affinity,
            self.numa_affinity,
            self.nic_nic,
        ) == (
            other.gpus,
            other.nics,
            other.gpu,
            other.gpu_nic,
            other.cpu_affinity,
            other.numa_affinity,
            other.nic_nic,
        )

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


_LINK_TOKEN = re.compile(r"^(X|SOC|SYS|NODE|PHB|PXB|PIX|NV[0-9]{1,6})$", re.IGNORECASE)
_MULTIWORD = (("CPU", "Affinity"), ("NUMA", "Affinity"), ("GPU", "NUMA", "ID"))


def _clean(raw: str) -> str:
    """One line without ANSI escapes, carriage returns, non-breaking spaces or a leading
    ``|``/``>`` of a Markdown table or quote (captures pasted into issue trackers carry them)."""
    line = _ANSI.sub("", raw).replace("\r", "").replace("\u00a0", " ")
    stripped = line.strip()
    if stripped.startswith(">"):
        line = stripped.lstrip(">")
    return line


def _merge_multiword(tokens: list[str]) -> list[str]:
    """Re-join ``CPU Affinity``, ``NUMA Affinity`` and ``GPU NUMA ID`` after a split on single
    spaces."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for words in _MULTIWORD:
            if tuple(t.upper() for t in tokens[i : i + len(words)]) == tuple(
                w.upper() for w in words
            ):
                out.append(" ".join(words))
                i += len(words)
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _split(line: str) -> list[str]:
    """The non-empty cells of one line.

    No cell of the matrix holds a blank except the multi-word headers (``CPU Affinity``, ...),
    so any run of whitespace separates cells (tabs as printed, spaces where a tool expanded
    them, single spaces where a copy collapsed them) and those headers are re-joined. ``|``
    separates the cells of a Markdown table. Empty cells carry nothing in ``nvidia-smi topo -m``
    (it pads the affinity columns with one), so they are dropped.
    """
    if "|" in line:
        return [c.strip() for c in line.split("|") if c.strip()]
    return _merge_multiword(line.split())


def _canonical_header(cell: str) -> str:
    """``cpu affinity`` -> ``CPU Affinity``, ``gpu0`` -> ``GPU0``; other names as printed."""
    for known in _AFFINITY_HEADERS:
        if " ".join(cell.split()).upper() == known.upper():
            return known
    if re.fullmatch(r"gpu[0-9]{1,6}", cell, re.IGNORECASE):
        return cell.upper()
    return cell


def _is_header(cells: list[str]) -> bool:
    """The header row names devices: it starts with ``GPU0`` and holds no link code (a matrix
    row starting with ``GPU0`` holds at least its ``X``)."""
    return (
        bool(cells) and cells[0].upper() == "GPU0" and not any(_LINK_TOKEN.match(c) for c in cells)
    )


def parse_link(cell: str, where: str) -> Link:
    """One cell (``X``, ``NV#``, ``PIX``, ``PXB``, ``PHB``, ``NODE``, ``SYS`` or legacy ``SOC``);
    ``where`` names it in the error."""
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
    lines = [_clean(raw) for raw in text.splitlines()]
    header_at = next((i for i, line in enumerate(lines) if _is_header(_split(line))), None)
    if header_at is None:
        raise TopologyError(
            "no matrix header with GPU0 found; is this `nvidia-smi topo -m` output?"
        )
    header = [_canonical_header(cell) for cell in _split(lines[header_at])]
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
    if len(set(devices)) != len(devices):
        raise TopologyError(f"line {header_at + 1}: a device column is named twice")

    by_upper = {d.upper(): d for d in devices}
    rows: dict[str, list[str]] = {}
    short_nic_rows: set[str] = set()
    for number, line in enumerate(lines[header_at + 1 :], start=header_at + 2):
        cells = _split(line)
        if not cells:
            if rows:
                break  # the blank line that ends the matrix
            continue
        name = by_upper.get(cells[0].upper())
        if name is None:
            if rows:
                break
            continue
        values = cells[1:]
        if name in nic_names and len(values) < len(devices):
            # A NIC row only adds NIC-NIC links (GPU-NIC links come from the GPU rows): one cut
            # short leaves those unknown rather than the whole matrix unread.
            short_nic_rows.add(name)
            continue
        if len(values) < len(devices):
            raise TopologyError(
                f"line {number}: row {name} has {len(values)} cells, "
                f"expected {len(devices)} (one per device column)"
            )
        if name in rows:
            raise TopologyError(f"line {number}: a second row for {name}")
        rows[name] = values
    missing = [g for g in gpu_names if g not in rows]
    if missing:
        raise TopologyError(f"no matrix row for {', '.join(missing)}")

    gpu_rows: list[tuple[Link, ...]] = []
    nic_rows: list[tuple[Link, ...]] = []
    cpu: list[str | None] = []
    numa: list[int | None] = []
    for name in gpu_names:
        values = rows[name]
        links = [
            parse_link(v, f"{name}/{devices[j]}") for j, v in enumerate(values[: len(devices)])
        ]
        gpu_rows.append(tuple(links[: len(gpu_names)]))
        nic_rows.append(tuple(links[len(gpu_names) :]))
        extra = dict(zip(affinity_headers, values[len(devices) :], strict=False))
        cpu_value = extra.get("CPU Affinity")
        cpu.append(cpu_value if cpu_value and cpu_value.upper() != "N/A" else None)
        numa_value = extra.get("NUMA Affinity", "")
        numa.append(int(numa_value) if _NUMA.match(numa_value) else None)
    nic_rows_links: list[tuple[Link, ...]] = []
    if nic_names and all(n in rows for n in nic_names):
        for k, name in enumerate(nic_names):
            links = [
                parse_link(v, f"{name}/{devices[len(gpu_names) + m]}")
                for m, v in enumerate(rows[name][len(gpu_names) : len(devices)])
            ]
            if links[k].code != "X":
                raise TopologyError(f"{name}/{name}: the diagonal must be X, got {links[k]}")
            nic_rows_links.append(tuple(links))
    if nic_names and len(nic_rows_links) != len(nic_names):
        nic_rows_links = []  # some NIC rows missing: NIC-NIC links unknown

    legend: dict[str, str] = {}
    for line in lines:
        match = _LEGEND_ENTRY.match(line)
        if match and not _split(line)[0].upper().startswith("GPU"):
            legend[match[1].upper()] = match[2]
    nics = tuple(legend.get(n, n) if n.startswith("NIC") else n for n in nic_names)
    matrix = TopoMatrix(
        gpus=len(gpu_names),
        nics=nics,
        gpu=tuple(gpu_rows),
        gpu_nic=tuple(nic_rows),
        cpu_affinity=tuple(cpu),
        numa_affinity=tuple(numa),
        legend=legend,
        nic_nic=tuple(nic_rows_links),
    )
    check(matrix, nic_names=tuple(nic_names))
    return matrix


def check(matrix: TopoMatrix, *, nic_names: tuple[str, ...] | None = None) -> None:
    """Raise :class:`TopologyError` unless ``X`` is exactly the diagonal and the GPU matrix is
    symmetric (found by fuzzing: an ``X`` elsewhere has no link to model)."""
    names = (
        nic_names if nic_names is not None else tuple(f"NIC{k}" for k in range(len(matrix.nics)))
    )
    for i in range(matrix.gpus):
        for j, link in enumerate([*matrix.gpu[i], *matrix.gpu_nic[i]]):
            other = f"GPU{j}" if j < matrix.gpus else names[j - matrix.gpus]
            if j == i and link.code != "X":
                raise TopologyError(f"GPU{i}/GPU{i}: the diagonal must be X, got {link}")
            if j != i and link.code == "X":
                raise TopologyError(f"GPU{i}/{other}: X is only for a device and itself")
        for j in range(matrix.gpus):
            if matrix.gpu[i][j].code != matrix.gpu[j][i].code:
                raise TopologyError(
                    f"GPU{i}/GPU{j} is {matrix.gpu[i][j]} but GPU{j}/GPU{i} is "
                    f"{matrix.gpu[j][i]}; the matrix must be symmetric"
                )
    for k, row in enumerate(matrix.nic_nic):
        for m, link in enumerate(row):
            if (link.code == "X") != (k == m):
                raise TopologyError(
                    f"{names[k]}/{names[m]}: X must be exactly the diagonal, got {link}"
                )


# The legend ``render`` prints, one line per code, in nvidia-smi's order.
LEGEND = (
    ("X", "Self"),
    ("SYS", "Connection traversing PCIe and the SMP interconnect between NUMA nodes"),
    ("NODE", "Connection traversing PCIe and the link between PCIe host bridges of one NUMA node"),
    ("PHB", "Connection traversing PCIe and a PCIe host bridge (typically the CPU)"),
    ("PXB", "Connection traversing several PCIe bridges, not the PCIe host bridge"),
    ("PIX", "Connection traversing at most one PCIe bridge"),
    ("NV#", "Connection traversing a bonded set of # NVLinks"),
)


def render(matrix: TopoMatrix) -> str:
    """The matrix as ``nvidia-smi topo -m`` prints it: tab-separated, NICs as ``NIC#`` columns
    named in a ``NIC Legend``, then ``CPU Affinity`` and ``NUMA Affinity`` (``N/A`` where
    unknown), then the legend. :func:`parse` reads it back to an equal matrix (legend aside).

    Examples
    --------
    >>> m = parse("\\tGPU0\\tGPU1\\nGPU0\\t X \\tNV4\\nGPU1\\tNV4\\t X \\n")
    >>> render(m).splitlines()[1].split("\\t")
    ['GPU0', ' X ', 'NV4', 'N/A', 'N/A']
    >>> parse(render(m)).gpu == m.gpu
    True
    """
    nic_columns = [f"NIC{k}" for k in range(len(matrix.nics))]
    columns = [*(f"GPU{i}" for i in range(matrix.gpus)), *nic_columns]
    lines = ["\t" + "\t".join([*columns, *_AFFINITY_HEADERS[:2]])]

    def cell(link: Link) -> str:
        return " X " if link.code == "X" else str(link)

    for i in range(matrix.gpus):
        numa = matrix.numa_affinity[i]
        affinity = [matrix.cpu_affinity[i] or "N/A", "N/A" if numa is None else str(numa)]
        links = [*matrix.gpu[i], *matrix.gpu_nic[i]]
        lines.append("\t".join([f"GPU{i}", *map(cell, links), *affinity]))
    for k, name in enumerate(nic_columns):
        to_gpus = [matrix.gpu_nic[i][k] for i in range(matrix.gpus)]
        to_nics = [
            matrix.nic_nic[k][m] if matrix.nic_nic else Link("X" if m == k else "SYS")
            for m in range(len(nic_columns))
        ]
        lines.append("\t".join([name, *map(cell, [*to_gpus, *to_nics])]))
    lines += ["", "Legend:", ""]
    lines += [f"  {code:<4} = {meaning}" for code, meaning in LEGEND]
    if matrix.nics:
        lines += ["", "NIC Legend:", ""]
        lines += [
            f"  {column}: {name}" for column, name in zip(nic_columns, matrix.nics, strict=True)
        ]
    return "\n".join(lines) + "\n"

"""Real ``nvidia-smi topo -m`` captures survive what copying does to them, and render round-trips.

Each real capture is mutated the way issue trackers, chat tools and environment reports change
text (header row without its leading whitespace, CRLF, trailing blanks, no legend, tabs expanded
to spaces or mixed, ANSI escapes, collapsed whitespace, Markdown quotes and tables, ...); every
mutant must parse to exactly the matrix of the untouched capture, never fall back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from shorthop.topology import smi

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nvidia-smi"
REAL = sorted((FIXTURES / "real").glob("*.txt"))
ALL = [*REAL, *sorted((FIXTURES / "handwritten").glob("*.txt"))]


def _matrix_lines(text: str) -> tuple[list[str], int, int]:
    """The lines, and the span [start, end) of the matrix (header and rows)."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if "GPU0" in line)
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines, start, end


def _on_matrix(change: Callable[[str], str]) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        lines, start, end = _matrix_lines(text)
        return "\n".join(change(line) if start <= i < end else line for i, line in enumerate(lines))

    return mutate


def _header(change: Callable[[str], str]) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        lines, start, _ = _matrix_lines(text)
        lines[start] = change(lines[start])
        return "\n".join(lines)

    return mutate


def _drop_legend(text: str) -> str:
    out, skipping = [], False
    for line in text.split("\n"):
        if line.strip() == "Legend:":
            skipping = True
            continue
        if skipping and line.strip() == "NIC Legend:":
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


def _mixed(text: str) -> str:
    lines, start, end = _matrix_lines(text)
    for i in range(start, end, 2):
        lines[i] = lines[i].replace("\t", "    ")
    return "\n".join(lines)


def _nic_rows(change: Callable[[str], str]) -> Callable[[str], str]:
    return _on_matrix(lambda line: line if line.lstrip().startswith("GPU") else change(line))


def _markdown_table(text: str) -> str:
    lines, start, end = _matrix_lines(text)
    table = []
    for i in range(start, end):
        cells = [c.strip() for c in re.split(r"\t| {2,}", lines[i].strip())]
        if i == start:
            cells = ["", *cells]
        table.append("| " + " | ".join(cells) + " |")
        if i == start:
            table.append("|" + "---|" * len(cells))
    return "\n".join([*lines[:start], *table, *lines[end:]])


MUTATIONS: dict[str, Callable[[str], str]] = {
    "header-without-leading-whitespace": _header(str.lstrip),
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "trailing-spaces": lambda t: "\n".join(line + "   " for line in t.split("\n")),
    "trailing-tabs": _on_matrix(lambda line: line + "\t"),
    "no-legend": _drop_legend,
    "tabs-to-spaces": lambda t: t.replace("\t", "    "),
    "tabs-to-single-spaces": lambda t: t.replace("\t", " "),
    "mixed-tabs-and-spaces": _mixed,
    "nic-rows-without-trailing-cells": _nic_rows(str.rstrip),
    "nic-rows-with-a-trailing-tab": _nic_rows(lambda line: line.rstrip() + "\t"),
    "extra-blank-cells": _on_matrix(lambda line: line.replace("\t", "\t\t")),
    "ansi-underlined-header": _header(lambda line: f"\x1b[4m{line}\x1b[0m"),
    "ansi-bold-row-names": _on_matrix(lambda line: re.sub(r"^(GPU\d+)", "\x1b[1m\\1\x1b[0m", line)),
    "collapsed-whitespace": _on_matrix(lambda line: re.sub(r"[ \t]+", " ", line).strip()),
    "indented-code-block": lambda t: "\n".join("    " + line for line in t.split("\n")),
    "markdown-quote": lambda t: "\n".join("> " + line for line in t.split("\n")),
    "shell-prompt-around": lambda t: f"$ nvidia-smi topo -m\n{t}\n$ exit\n",
    "markdown-table": _markdown_table,
    "header-lost-and-crlf": lambda t: _header(str.lstrip)(t).replace("\n", "\r\n"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS), ids=str)
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_a_mutated_capture_parses_to_the_same_matrix(path: Path, mutation: str) -> None:
    text = path.read_text()
    original = smi.parse(text)
    mutant = smi.parse(MUTATIONS[mutation](text))
    if mutation == "no-legend" and "NIC Legend:" not in text:
        assert mutant.nics == original.nics
    assert mutant.links_equal(original), f"{path.name} / {mutation}"


WITH_NUMA = [p for p in REAL if "NUMA Affinity" in p.read_text()]


@pytest.mark.parametrize("path", WITH_NUMA, ids=lambda p: p.stem)
def test_na_in_the_numa_affinity_column_reads_as_unknown(path: Path) -> None:
    text = path.read_text()
    original = smi.parse(text)
    lines, start, end = _matrix_lines(text)
    for i in range(start + 1, end):
        cells = lines[i].split("\t") if "\t" in lines[i] else re.split(r"( {2,})", lines[i])
        if not cells[0].startswith("GPU"):
            continue
        numa = str(original.numa_affinity[int(cells[0][3:])])
        # The NUMA Affinity value is the one after the CPU affinity cell.
        cpu = original.cpu_affinity[int(cells[0][3:])]
        j = cells.index(cpu or "N/A")
        k = next(x for x in range(j + 1, len(cells)) if cells[x].strip() == numa)
        cells[k] = "N/A"
        lines[i] = "".join(cells) if "\t" not in lines[i] else "\t".join(cells)
    mutant = smi.parse("\n".join(lines))
    assert mutant.numa_affinity == (None,) * original.gpus
    assert replace(mutant, numa_affinity=original.numa_affinity).links_equal(original)


def test_the_real_one_gpu_h200_capture_parses_exactly() -> None:
    m = smi.parse((FIXTURES / "real" / "h200x1_real_ansi.txt").read_text())
    assert m.gpus == 1
    assert m.gpu == ((smi.Link("X"),),)
    assert m.nics == ()
    assert m.cpu_affinity == ("0-15",)
    assert m.numa_affinity == (0,)
    assert m.numa_groups() == (0,)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_render_then_parse_gives_the_same_matrix(path: Path) -> None:
    original = smi.parse(path.read_text())
    rendered = smi.render(original)
    again = smi.parse(rendered)
    assert again.links_equal(original)
    assert smi.render(again) == rendered
    assert "\t" in rendered.splitlines()[0]


def test_a_matrix_row_is_never_taken_for_the_header() -> None:
    text = "GPU0\t X \tNV4\nGPU1\tNV4\t X \n"
    with pytest.raises(smi.TopologyError, match="no matrix header"):
        smi.parse(text)


def test_a_duplicate_row_is_an_error_naming_the_line() -> None:
    text = "\tGPU0\tGPU1\nGPU0\t X \tNV4\nGPU0\t X \tNV4\nGPU1\tNV4\t X \n"
    with pytest.raises(smi.TopologyError, match="line 3: a second row for GPU0"):
        smi.parse(text)


WITH_NICS = [p for p in ALL if smi.parse(p.read_text()).nics]


@pytest.mark.parametrize("path", WITH_NICS, ids=lambda p: p.stem)
def test_nic_rows_cut_short_leave_only_the_nic_to_nic_links_unknown(path: Path) -> None:
    text = path.read_text()
    original = smi.parse(text)
    cut = _nic_rows(lambda line: "\t".join(re.split(r"\t| {2,}", line.strip())[: original.gpus]))(
        text
    )
    mutant = smi.parse(cut)
    assert mutant.nic_nic == ()
    assert replace(mutant, nic_nic=original.nic_nic).links_equal(original)

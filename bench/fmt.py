"""Formatting shared by the report's sections: durations, numbers, markdown tables, statuses,
tier colours, and saving a matplotlib figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

TIER_COLORS = {
    "same-node-nvlink": "#1b7837",
    "same-node-pcie": "#7fbf7b",
    "nvlink-domain": "#5aae61",
    "rack": "#fdb863",
    "block": "#e08214",
    "zone": "#b35806",
    "cluster": "#7f3b08",
}


def dur(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def times(x: float) -> str:
    return f"{x:,.2f}×" if x < 10 else f"{x:,.0f}×"


def num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**PASS**" if ok else "**MISS**")


def yes(ok: bool) -> str:
    """A check column: failures stand out (and the smoke test looks for ``**NO**``)."""
    return "yes" if ok else "**NO**"


def save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""docs/operations.md stays true to the code: every event reason the operator and the node agent
post, and every metric with its labels, is documented there."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from shorthop import metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()
SOURCES = ROOT / "operator" / "shorthop"
# `self._event(body, "Placed", ...)`, `self._warn("GPUTopologyUnreadable", ...)`
POSTED = re.compile(r"""(?:_event\(\s*body,\s*|_warn\(\s*)"([A-Z][A-Za-z]+)\"""")


def _rows() -> list[str]:
    return [line for line in DOC.splitlines() if line.startswith("| `")]


def test_every_event_reason_is_documented() -> None:
    reasons = {m[1] for path in SOURCES.rglob("*.py") for m in POSTED.finditer(path.read_text())}
    assert {"Placed", "ScaledDown", "Unschedulable", "GPUTopologyUnreadable"} <= reasons
    # Rows of the events tables: "| `Reason` | Normal |" or "| `Reason` | Warning |".
    documented = {
        found[1]
        for row in _rows()
        if (found := re.match(r"\| `([A-Z][A-Za-z]+)` \| (?:Normal|Warning) \|", row))
    }
    assert reasons - documented == set(), "event reasons missing from docs/operations.md"
    assert documented - reasons == set(), "docs/operations.md lists reasons nobody posts"


def test_every_metric_and_its_labels_are_documented() -> None:
    made = metrics.create()
    rows = {row.split("`")[1]: row for row in _rows()}
    collectors = [getattr(made, f.name) for f in dataclasses.fields(made) if f.name != "registry"]
    for collector in collectors:
        name: str = collector._name  # prometheus_client keeps them private
        labels: tuple[str, ...] = collector._labelnames
        kind: str = collector._type
        exposed = f"{name}_total" if kind == "counter" else name
        assert exposed in rows, f"{exposed} is not in docs/operations.md"
        row = rows[exposed]
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert cells[1] == kind, row
        for label in labels:
            assert f"`{label}`" in cells[2], f"{exposed}: label {label} undocumented"
        assert name in cells[4], f"{exposed}: no PromQL example using it"

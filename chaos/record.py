"""Figures measured by the checks, kept as JSON for the report.

Each check records into one section (``crash``, ``apiserver``, ...). With ``SHORTHOP_CHAOS_RESULTS``
set (``python -m chaos`` sets it), every section is written to ``<dir>/<section>.json`` as soon as
it changes, so a run that fails half-way still leaves its figures; otherwise figures stay in
memory (light runs inside ``make test``).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from chaos import RESULTS_ENV, scale

_LOCK = threading.Lock()


class Recorder:
    """A JSON object per section; ``set`` and ``append`` write it through."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.data: dict[str, Any] = {"scale": scale()}
        directory = os.environ.get(RESULTS_ENV)
        self.path = Path(directory) / f"{section}.json" if directory else None
        if self.path is not None and self.path.exists():
            self.data.update(json.loads(self.path.read_text()))

    def set(self, key: str, value: Any) -> None:
        with _LOCK:
            self.data[key] = value
            self._write()

    def append(self, key: str, value: Any) -> None:
        with _LOCK:
            self.data.setdefault(key, []).append(value)
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def load(directory: Path) -> dict[str, dict[str, Any]]:
    """Every section recorded in ``directory``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        out[path.stem] = json.loads(path.read_text())
    return out

"""runtime/memory.py: glibc's arena limit and trim take effect here (glibc), and a libc without
them is a quiet no-op, never an error at start."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest
from shorthop.controller.runtime import memory


def test_limit_and_trim_are_accepted_by_glibc() -> None:
    if memory._glibc() is None:
        pytest.skip("not glibc")
    # In a fresh process: the arena limit must be set before threads allocate.
    code = "from shorthop.controller.runtime import memory; print(memory.limit_arenas(), memory.trim())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    limited, trimmed = out.stdout.split()
    assert limited == "True"  # mallopt accepted M_ARENA_MAX
    assert trimmed in {"True", "False"}  # malloc_trim ran (False: nothing was free to return)


def test_without_glibc_nothing_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert memory.limit_arenas() is False
    assert memory.trim() is False

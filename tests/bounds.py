"""Bounds on the work a call does, measured without a clock.

Unit tests must not assert wall-clock limits: CI runs them on a busy two-core machine, where a
call that is fast on an idle one can take many times longer. The defects such limits guarded
against (a quantity expanded into a million-digit integer, a node of 10^8 GPUs modelled pair by
pair, 8 million pod keys enumerated) all allocate in proportion to the work, so the peak memory
Python allocated during the call (``tracemalloc``) bounds the work instead, and it reads the
same on any machine. Tests compare it with a fixed budget or with the same call on a smaller
input (to show what the work does *not* grow with).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def peak_bytes(call: Callable[[], T]) -> tuple[T, int]:
    """``call()``'s result and the peak number of bytes Python had allocated while it ran, over
    what was allocated when it started."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started_here:
            tracemalloc.stop()
    return result, max(0, peak - before)

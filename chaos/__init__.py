"""Reliability and security checks of shorthop: crash consistency, API-server faults, races with
kube-scheduler, fuzzing of every input, a scale soak, and RBAC/secret hygiene.

Two sizes of the same code: ``SHORTHOP_CHAOS_SCALE=small`` (the default; ``make test`` collects
this package and runs it in a few minutes) and ``full`` (``make chaos``, which runs
``python -m chaos``: the pytest modules of this package at full size, then
``docs/reliability.md`` written from the figures they recorded).
"""

from __future__ import annotations

import os
from typing import TypeVar

SCALE_ENV = "SHORTHOP_CHAOS_SCALE"
RESULTS_ENV = "SHORTHOP_CHAOS_RESULTS"
T = TypeVar("T")


def scale() -> str:
    """``small`` or ``full``."""
    value = os.environ.get(SCALE_ENV, "small").strip().lower()
    if value not in ("small", "full"):
        raise ValueError(f"{SCALE_ENV} must be small or full, not {value!r}")
    return value


def full() -> bool:
    return scale() == "full"


def pick(small: T, full_size: T) -> T:
    """The small or the full value, by ``SHORTHOP_CHAOS_SCALE``."""
    return full_size if full() else small

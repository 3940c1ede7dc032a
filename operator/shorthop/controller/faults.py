"""Crash points for fault-injection tests; inert unless ``SHORTHOP_FAULTS`` is set.

``SHORTHOP_FAULTS="after-create:3"`` makes the process die (``os._exit(137)``, like SIGKILL: no
clean-up, no lease release) the 3rd time the reconciler reaches the ``after-create`` point. Points:
``before-create``, ``after-create`` (created, not bound), ``after-bind``, ``after-delete``,
``before-status``. Several may be given, comma-separated. Read once at import.
"""

from __future__ import annotations

import os
import threading

_PLAN: dict[str, int] = {}
for item in os.environ.get("SHORTHOP_FAULTS", "").split(","):
    name, _, count = item.strip().partition(":")
    if name:
        _PLAN[name] = int(count or "1")
_SEEN: dict[str, int] = {}
_LOCK = threading.Lock()
POINTS = ("before-create", "after-create", "after-bind", "after-delete", "before-status")


def point(name: str) -> None:
    """Die here if the plan says so."""
    if not _PLAN:
        return
    with _LOCK:
        _SEEN[name] = _SEEN.get(name, 0) + 1
        if _PLAN.get(name) == _SEEN[name]:
            os._exit(137)

"""Crash points for fault-injection tests; inert unless a plan is given.

The plan comes from the ``faults`` setting (environment variable ``SHORTHOP_FAULTS``, read with
the other settings by the CLI): ``"after-create:3"`` makes the process die (``os._exit(137)``,
like SIGKILL: no clean-up, no lease release) the 3rd time the reconciler reaches the
``after-create`` point. Points: ``before-create``, ``after-create`` (created, not bound),
``after-claim`` (on a DRA node: the pod's ResourceClaim allocated and reserved, the pod not
bound yet), ``after-bind``, ``after-delete``, ``before-status``. Several may be given,
comma-separated; a count defaults to 1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from shorthop.errors import ConfigError

POINTS = (
    "before-create",
    "after-create",
    "after-claim",
    "after-bind",
    "after-delete",
    "before-status",
)
SETTING = "faults (SHORTHOP_FAULTS)"


class Faults:
    """Where to crash; thread-safe (reconcile workers share one)."""

    def __init__(self, plan: Mapping[str, int] | None = None) -> None:
        for name, count in (plan or {}).items():
            if name not in POINTS:
                raise ConfigError(
                    SETTING, f"unknown point {name!r}; points are {', '.join(POINTS)}"
                )
            if count < 1:
                raise ConfigError(SETTING, f"{name}: the count must be 1 or more, not {count}")
        self._plan = dict(plan or {})
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``"point:count,point"`` as ``SHORTHOP_FAULTS`` gives it.

        >>> Faults.parse("after-create:3, after-bind").plan
        {'after-create': 3, 'after-bind': 1}
        """
        plan: dict[str, int] = {}
        for item in text.split(","):
            name, _, count = item.strip().partition(":")
            if not name:
                continue
            if count and not count.strip().isdecimal():
                raise ConfigError(
                    SETTING, f"{item.strip()!r}: give point:count, e.g. after-create:3"
                )
            plan[name] = int(count or "1")
        return cls(plan)

    @property
    def plan(self) -> dict[str, int]:
        return dict(self._plan)

    def point(self, name: str) -> None:
        """Die here if the plan says so."""
        if not self._plan:
            return
        with self._lock:
            self._seen[name] = self._seen.get(name, 0) + 1
            if self._plan.get(name) == self._seen[name]:
                os._exit(137)

"""A work queue of deployment keys, in the style of client-go's rate-limited queue.

A key is queued at most once; a key being processed that is added again is processed again after
it finishes (never twice at the same time); failures back off exponentially per key (1 s doubling
to 5 min) so a broken deployment never loops hot; ``add_after`` schedules a later visit. Safe to
feed from other threads with :meth:`add_threadsafe` (the watch informers do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BASE_DELAY = 1.0
MAX_DELAY = 300.0


class WorkQueue(Generic[K]):
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._again: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def add(self, key: K) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_threadsafe(self, key: K) -> None:
        self.loop.call_soon_threadsafe(self.add, key)

    def add_after_threadsafe(self, key: K, delay: float) -> None:
        self.loop.call_soon_threadsafe(self.add_after, key, delay)

    def add_after(self, key: K, delay: float) -> None:
        if key in self._queued:
            return  # a visit is already waiting; it will see the latest state
        old = self._timers.pop(key, None)
        if old is not None and old.when() <= self.loop.time() + delay:
            self._timers[key] = old  # an earlier visit is already scheduled
            return
        if old is not None:
            old.cancel()
        self._timers[key] = self.loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def backoff(self, key: K) -> float:
        """Schedule a retry with this key's next backoff delay; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = float(min(MAX_DELAY, BASE_DELAY * 2.0**failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: reset its backoff."""
        self._failures.pop(key, None)

    async def get(self) -> K:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return len(self._queued)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

"""Checks made at every state the API server goes through, not at samples (pods, a Lease).

A check that lists pods every so often misses any state that lasted less than its period, and on
a busy machine the period stretches: a transient overcommit, or two replicas down for a moment,
passes unseen. An :class:`ObjectWatch` (made by :func:`pod_watch` or :func:`lease_watch`) lists
the objects once, then follows a watch from that list's resourceVersion in a thread of its own,
keeping its own copy of them; after the list and after every event (each a state the API server
went through, in its order) it calls ``check`` on the copy and keeps every violation it returns.

* :meth:`ObjectWatch.wait_until` waits for a condition on the watched objects (re-evaluated at
  each event, so it sees the state the moment it happens);
* :meth:`ObjectWatch.caught_up` waits until the copy equals a fresh list, so everything up to
  that point has been checked; :meth:`ObjectWatch.assert_held` does that and then fails on any
  violation, and also when the watch expired (410 Gone) and had to list again: the states in
  between were never checked, and a check that was not made is not a pass.

The watch is read as raw JSON, as the checks in ``chaos/checks.py`` expect.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, watch

Pods = Mapping[str, Mapping[str, Any]]  # uid -> pod as raw JSON
Check = Callable[[Pods], list[str]]
T = TypeVar("T")
WATCH_SECONDS = 10  # the API server ends a quiet watch after this; it resumes where it was


@dataclass(frozen=True)
class Violation:
    """What a check found, at which state (0: the initial list) and after which event."""

    state: int
    event: str
    messages: tuple[str, ...]

    def __str__(self) -> str:
        return f"state {self.state} (after {self.event}): {'; '.join(self.messages)}"


def pod_name(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class ObjectWatch:
    """The objects a list call returns, checked by ``check`` at every state; use as a context
    manager (started on entry, stopped on exit). ``lister(**kwargs)`` is a list call of the
    Python client (:func:`PodWatch` and :func:`LeaseWatch` make one)."""

    def __init__(
        self,
        lister: Callable[..., Any],
        *,
        selector: str = "",
        field_selector: str = "",
        check: Check | None = None,
    ) -> None:
        self.lister = lister
        self.selector = selector
        self.field_selector = field_selector
        self.check = check
        self.states = 0  # states checked, the initial list included
        self.violations: list[Violation] = []
        self.gaps: list[str] = []  # relists after an expired watch: states not seen
        self._pods: dict[str, dict[str, Any]] = {}
        self._version = ""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ObjectWatch:
        items, version = self._list()
        with self._cond:
            self._pods = {p["metadata"]["uid"]: p for p in items}
            self._version = version
            self._observe("LIST")
        self._thread = threading.Thread(target=self._run, name="object-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following the watch (the copy and the findings stay)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(WATCH_SECONDS + 5)

    def __enter__(self) -> ObjectWatch:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what tests call ---------------------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        """The objects (pods, most often) as of the last event seen."""
        with self._cond:
            return list(self._pods.values())

    def wait_until(self, what: str, probe: Callable[[Pods], T | None], timeout: float) -> T:
        """Wait until ``probe(pods)`` is truthy at some state (checked at each event); return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = probe(self._pods)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.0f}s waiting for {what} "
                        f"({len(self._pods)} pods watched, {self.states} states)"
                    )
                self._cond.wait(min(left, 1.0))

    def caught_up(self, timeout: float = 60.0) -> None:
        """Wait until the copy equals a fresh list: every state up to now has been checked."""
        deadline = time.monotonic() + timeout
        while True:
            items, _ = self._list()
            want = {p["metadata"]["uid"]: p["metadata"]["resourceVersion"] for p in items}
            with self._cond:
                if self._cond.wait_for(lambda want=want: self._versions() == want, timeout=2.0):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"the pod watch did not catch up within {timeout:.0f}s")

    def assert_held(self, timeout: float = 60.0) -> None:
        """Catch up, then fail on any violation seen or any state missed."""
        self.caught_up(timeout)
        with self._cond:
            if self.gaps:
                raise AssertionError(
                    f"the watch missed states, so the check was not made: {self.gaps}"
                )
            if self.violations:
                shown = "\n".join(str(v) for v in self.violations[:10])
                raise AssertionError(
                    f"{len(self.violations)} of {self.states} observed states broke the check:\n"
                    f"{shown}"
                )

    # -- the watch ---------------------------------------------------------------------------

    def _list_call(self) -> Callable[..., Any]:
        """The list call, wrapped: with no docstring to read a model type from, the watch hands
        events over as raw JSON (deserialising them into models is slow enough to fall behind
        a burst of events)."""
        lister = self.lister

        def call(**kwargs):  # type: ignore[no-untyped-def]  # no annotation: see above
            return lister(**kwargs)

        return call

    def _selectors(self) -> dict[str, str]:
        return {"label_selector": self.selector, "field_selector": self.field_selector}

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        response = self.lister(**self._selectors(), _preload_content=False)
        body = json.loads(response.data)
        return list(body["items"]), str(body["metadata"]["resourceVersion"])

    def _versions(self) -> dict[str, str]:
        return {uid: p["metadata"]["resourceVersion"] for uid, p in self._pods.items()}

    def _observe(self, event: str) -> None:
        """Check the current copy (the caller holds the lock) and wake waiters."""
        self.states += 1
        if self.check is not None:
            found = self.check(self._pods)
            if found:
                self.violations.append(Violation(self.states - 1, event, tuple(found)))
        self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except client.ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:  # expired: list again; what happened in between is lost
                    self._relist(f"watch expired at resourceVersion {self._version}")
                else:
                    time.sleep(0.5)  # the API server is restarting, throttling, ...
            except (urllib3.exceptions.HTTPError, OSError, ValueError):
                if self._stop.is_set():
                    return
                time.sleep(0.5)  # resume from the last resourceVersion seen: nothing lost

    def _follow(self) -> None:
        self._watch = watch.Watch()
        for event in self._watch.stream(
            self._list_call(),
            **self._selectors(),
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
        ):
            if self._stop.is_set():
                return
            kind, pod = event["type"], event["object"]
            if kind == "ERROR":
                raise client.ApiException(status=pod.get("code"), reason=pod.get("message"))
            with self._cond:
                self._version = str(pod["metadata"]["resourceVersion"])
                if kind == "BOOKMARK":
                    continue
                uid = pod["metadata"]["uid"]
                if kind == "DELETED":
                    self._pods.pop(uid, None)
                else:
                    self._pods[uid] = pod
                self._observe(f"{kind} {pod_name(pod)}")

    def _relist(self, why: str) -> None:
        items, version = self._list()
        with self._cond:
            self.gaps.append(why)
            self._pods = {p["metadata"]["uid"]: p for p in items}
            self._version = version
            self._observe("LIST (after a gap)")


def pod_watch(
    core: client.CoreV1Api,
    *,
    namespace: str | None = None,
    selector: str = "",
    check: Check | None = None,
) -> ObjectWatch:
    """The pods of ``namespace`` (all namespaces when None) matching ``selector``."""

    def lister(**kwargs: Any) -> Any:
        if namespace is None:
            return core.list_pod_for_all_namespaces(**kwargs)
        return core.list_namespaced_pod(namespace, **kwargs)

    return ObjectWatch(lister, selector=selector, check=check)


def lease_watch(
    coordination: client.CoordinationV1Api, namespace: str, name: str, check: Check
) -> ObjectWatch:
    """One Lease (leader election), every state of it."""

    def lister(**kwargs: Any) -> Any:
        return coordination.list_namespaced_lease(namespace, **kwargs)

    return ObjectWatch(lister, field_selector=f"metadata.name={name}", check=check)


def holder(leases: Pods) -> str | None:
    """The holder of the (one) watched Lease; None when it is free or absent."""
    for lease in leases.values():
        return (lease.get("spec") or {}).get("holderIdentity") or None
    return None

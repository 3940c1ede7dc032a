"""List-and-watch of one cluster-scoped or all-namespaces resource, in a thread.

Lists in pages of ``page`` objects (``limit``/``continue``, as client-go's reflector pages its
initial list; raw JSON, no model deserialisation), hands every object to ``on_event``, then
watches from the list's resourceVersion with bookmarks; on ``410 Gone`` (an expired watch, or a
page token that expired mid-list) or a dropped connection it lists again and reports objects
that vanished in between as ``DELETED``. Callers: the operator (nodes, pods, and with Dynamic
Resource Allocation resourceslices, resourceclaims, deviceclasses). ``synced`` is set after the
first complete list.

Options every informer gets, so that one cluster of 10,000 nodes and 100,000 pods costs a bounded
amount of memory (docs/benchmarks.md, footprint):

- ``page``: objects per list call. One unpaged list of every pod is a single response of hundreds
  of megabytes, parsed whole before the first object is handed on.
- ``codec``: how list pages and watch events are decoded (``controller.fields.Codec``: only the
  fields shorthop reads, the rest of the JSON skipped unparsed); by default whole, with
  ``json.loads``.

The watch is read here, line by line, rather than through the client's ``Watch`` helper, which
parses every event with ``json.loads`` before any projection could apply.

The informer remembers only the keys it has seen (``namespace/name``), to report deletions
after a relist; a ``DELETED`` it reports that way carries only the name and namespace. With
``known`` (the keys its handler holds; the operator's pod informer asks ``LiveCluster``) it keeps
no set of its own: 100,000 pod keys are about 12 MB.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from kubernetes.client.rest import ApiException

from shorthop import errors
from shorthop.controller import kube

log = logging.getLogger("shorthop.informer")
PAGE = 500  # objects per list call, as client-go's reflector pages its initial list
Handler = Callable[[str | None, Mapping[str, Any]], None]
PAGE = 500  # objects per list call (client-go's reflector uses the same page size)
WATCH_SECONDS = 300  # the server ends each watch after this; the informer resumes it


class Codec(Protocol):
    """Decodes a list page into (items, list metadata) and a watch line into (type, object)."""

    def page(self, data: bytes) -> tuple[list[dict[str, Any]], Mapping[str, Any]]: ...

    def event(self, line: bytes) -> tuple[str, Mapping[str, Any]]: ...


class WholeObjects:
    """Every field, parsed by ``json.loads``."""

    def page(self, data: bytes) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
        found = json.loads(data)
        return found.get("items") or [], found.get("metadata") or {}

    def event(self, line: bytes) -> tuple[str, Mapping[str, Any]]:
        found = json.loads(line)
        return str(found.get("type")), found.get("object") or {}


def _gone(key: str) -> dict[str, Any]:
    """The object of a ``DELETED`` reported after a relist: only its name and namespace."""
    namespace, _, name = key.partition("/")
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta}


class Informer(threading.Thread):
    def __init__(
        self,
        kind: str,
        list_call: Callable[..., Any],
        on_event: Handler,
        stop: threading.Event,
        *,
        page: int = PAGE,
        codec: Codec | None = None,
        known: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        super().__init__(name=f"informer-{kind}", daemon=True)
        self.kind = kind
        self.list_call = list_call
        self.on_event = on_event
        self.stop_event = stop
        self.page = page
        self.codec: Codec = codec or WholeObjects()
        self.synced = threading.Event()
        self.lists = 0  # list calls made (pages), for tests and benchmarks
        self._known: set[str] = set()  # unused when ``known`` is given
        self._known_by = known
        self._response: Any = None

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace') or ''}/{meta.get('name')}"

    def _list(self) -> str:
        """List every object, page by page; returns the resourceVersion to watch from."""
        # What was held before and is not listed now has vanished. With ``known``, the held keys
        # are the handler's own strings, struck off as they are listed (no set of new ones).
        held = None if self._known_by is None else set(self._known_by())
        seen: set[str] = set()
        token = ""
        while True:
            options: dict[str, Any] = {"limit": self.page} if self.page > 0 else {}
            if token:
                options["_continue"] = token
            response = self.list_call(_preload_content=False, **options)
            self.lists += 1
            items, meta = self.codec.page(response.data)
            for i, obj in enumerate(items):
                items[i] = {}  # let each object go once it is handed on
                if held is None:
                    seen.add(self._key(obj))
                else:
                    held.discard(self._key(obj))
                self.on_event(None, obj)
            token = str(meta.get("continue") or "")
            if not token:
                break
        for key in (self._known - seen) if held is None else held:
            self.on_event("DELETED", _gone(key))
        self._known = seen
        return str(meta.get("resourceVersion", ""))

    def run(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                try:
                    version = self._list()
                    self.synced.set()
                    delay = 0.5
                    while not self.stop_event.is_set():
                        version = self._watch_from(version)
                except ApiException as exc:
                    raise kube.api_error(f"list/watch {self.kind}", exc) from None
            except errors.Expired:
                pass  # the watch fell too far behind, or a page token expired: list again
            except errors.KubeError as exc:
                log.warning("%s; retrying in %.1fs", exc, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception as exc:
                log.warning(
                    "%s watch interrupted (%s); listing again in %.1fs", self.kind, exc, delay
                )
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)

    def _watch_from(self, version: str) -> str:
        response = self.list_call(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
        )
        self._response = response
        try:
            rest = b""
            for chunk in response.stream(amt=None, decode_content=False):
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    if self.stop_event.is_set():
                        return version
                    if line.strip():
                        version = self._event(line, version)
        finally:
            self._response = None
            response.release_conn()
        return version

    def _event(self, line: bytes, version: str) -> str:
        """Hand on one watch event; returns the resourceVersion to resume from."""
        kind, obj = self.codec.event(line)
        if kind == "ERROR":
            code = obj.get("code")
            status = code if isinstance(code, int) and code else 500
            raise kube.status_error(f"watch {self.kind}", status, obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return version
        if self._known_by is None:
            key = self._key(obj)
            if kind == "DELETED":
                self._known.discard(key)
            else:
                self._known.add(key)
        self.on_event(kind, obj)
        return version

    def stop(self) -> None:
        self.stop_event.set()
        response = self._response
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            # A blocked read returns at once (closing the response from here could wait for it).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

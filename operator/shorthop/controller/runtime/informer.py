"""List-and-watch of one cluster-scoped or all-namespaces resource, in a thread.

Lists in pages of ``page`` objects (``limit``/``continue``, as client-go's reflector pages its
initial list; raw JSON, no model deserialisation), hands every object to ``on_event``, then
watches from the list's resourceVersion with bookmarks; on ``410 Gone`` (an expired watch, or a
page token that expired mid-list) or a dropped connection it lists again and reports objects
that vanished in between as ``DELETED``. Callers: the operator (nodes, pods). ``synced`` is set
after the first complete list.

Options every informer gets, so that one cluster of 10,000 nodes and 100,000 pods costs a bounded
amount of memory (docs/benchmarks.md, footprint):

- ``page``: objects per list call. One unpaged list of every pod is a single response of hundreds
  of megabytes, parsed whole before the first object is handed on.
- ``project``: applied to each object before it is handed on (``controller.fields``: only what
  shorthop reads), so handlers never see, and never come to depend on, the rest.

The informer remembers only the keys it has seen (``namespace/name``), to report deletions
after a relist; a ``DELETED`` it reports that way carries only the name and namespace.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import watch
from kubernetes.client.rest import ApiException

from shorthop import errors
from shorthop.controller import kube

log = logging.getLogger("shorthop.informer")
Handler = Callable[[str | None, Mapping[str, Any]], None]
Projector = Callable[[Mapping[str, Any]], Mapping[str, Any]]
PAGE = 500  # objects per list call (client-go's reflector uses the same page size)


def _whole(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj


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
        project: Projector = _whole,
    ) -> None:
        super().__init__(name=f"informer-{kind}", daemon=True)
        self.kind = kind
        self.list_call = list_call
        self.on_event = on_event
        self.stop_event = stop
        self.page = page
        self.project = project
        self.synced = threading.Event()
        self.lists = 0  # list calls made (pages), for tests and benchmarks
        self._known: set[str] = set()
        self._watch: watch.Watch | None = None

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace') or ''}/{meta.get('name')}"

    def _list(self) -> str:
        """List every object, page by page; returns the resourceVersion to watch from."""
        seen: set[str] = set()
        token = ""
        while True:
            options: dict[str, Any] = {"limit": self.page} if self.page > 0 else {}
            if token:
                options["_continue"] = token
            response = self.list_call(_preload_content=False, **options)
            self.lists += 1
            data = json.loads(response.data)
            items = data.get("items") or []
            data["items"] = None  # let each object go once it is handed on
            for i, item in enumerate(items):
                items[i] = None
                obj = self.project(item)
                seen.add(self._key(obj))
                self.on_event(None, obj)
            meta = data.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        for key in self._known - seen:
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
        # The events stay raw JSON (deserialize=False); a return type given up front spares the
        # client looking up a model it would not use.
        self._watch = watch.Watch(return_type=dict)
        for event in self._watch.stream(
            self.list_call,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=300,
            deserialize=False,
        ):
            if self.stop_event.is_set():
                break
            kind = event.get("type")
            raw = event.get("raw_object") or event.get("object") or {}
            if kind == "ERROR":
                found = raw if isinstance(raw, dict) else {}
                code = found.get("code")
                status = code if isinstance(code, int) and code else 500
                raise kube.status_error(f"watch {self.kind}", status, found)
            version = str((raw.get("metadata") or {}).get("resourceVersion", version))
            if kind == "BOOKMARK":
                continue
            obj = self.project(raw)
            key = self._key(obj)
            if kind == "DELETED":
                self._known.discard(key)
            else:
                self._known.add(key)
            self.on_event(kind, obj)
        return version

    def stop(self) -> None:
        self.stop_event.set()
        if self._watch is not None:
            self._watch.stop()

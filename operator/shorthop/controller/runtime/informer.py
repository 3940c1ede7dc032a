"""List-and-watch of one cluster-scoped or all-namespaces resource, in a thread.

Lists in pages of :data:`PAGE` objects (raw JSON, no model deserialisation), hands every object to
``on_event``, then watches from the list's resourceVersion with bookmarks; on ``410 Gone`` (also a
page token that expired) or a dropped connection it lists again and reports objects that vanished
in between as ``DELETED``. Callers: the operator (nodes, pods, and with Dynamic Resource
Allocation resourceslices, resourceclaims, deviceclasses). ``synced`` is set after the first
complete list.
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
PAGE = 500  # objects per list call, as client-go's reflector pages its initial list
Handler = Callable[[str | None, Mapping[str, Any]], None]


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Just enough of an object to report its deletion later (keeps memory flat)."""
    meta = obj.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")}}


class Informer(threading.Thread):
    def __init__(
        self, kind: str, list_call: Callable[..., Any], on_event: Handler, stop: threading.Event
    ) -> None:
        super().__init__(name=f"informer-{kind}", daemon=True)
        self.kind = kind
        self.list_call = list_call
        self.on_event = on_event
        self.stop_event = stop
        self.synced = threading.Event()
        self._known: dict[str, dict[str, Any]] = {}
        self._watch: watch.Watch | None = None

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name')}"

    def _list(self) -> str:
        seen = {}
        token = ""
        while True:
            page: dict[str, Any] = {"limit": PAGE}
            if token:
                page["_continue"] = token
            response = self.list_call(_preload_content=False, **page)
            data = json.loads(response.data)
            for item in data.get("items", []):
                seen[self._key(item)] = _slim(item)
                self.on_event(None, item)
            meta = data.get("metadata", {})
            token = str(meta.get("continue") or "")
            if not token:
                break
        for key, old in list(self._known.items()):
            if key not in seen:
                self.on_event("DELETED", old)
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
                pass  # the watch fell too far behind: list again at once
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
        # The events stay raw JSON (deserialize=False), yet the client still looks up a model
        # for the list call's return type unless one is given; 37.x has none named after
        # ResourceClaim (its model is ResourceV1ResourceClaim), so the lookup must not happen.
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
            obj = event.get("raw_object") or event.get("object") or {}
            if kind == "ERROR":
                found = obj if isinstance(obj, dict) else {}
                code = found.get("code")
                status = code if isinstance(code, int) and code else 500
                raise kube.status_error(f"watch {self.kind}", status, found)
            version = str((obj.get("metadata") or {}).get("resourceVersion", version))
            if kind == "BOOKMARK":
                continue
            key = self._key(obj)
            if kind == "DELETED":
                self._known.pop(key, None)
            else:
                self._known[key] = _slim(obj)
            self.on_event(kind, obj)
        return version

    def stop(self) -> None:
        self.stop_event.set()
        if self._watch is not None:
            self._watch.stop()

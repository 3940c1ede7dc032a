"""Every ResourceClaim of the cluster, watched: no device may be named in two claims' allocations
at any observed state, not only at the end.

:class:`ClaimWatch` lists all claims, then watches them (raw JSON) in a thread and checks the
invariant after every event; ``violations`` keeps each state that broke it. Used by the DRA e2e
and chaos tests beside kube-scheduler, which allocates claims of its own at the same time.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch


def allocated(claim: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(driver, pool, device) of every device the claim's allocation names (admin access is not
    an allocation, as kube-scheduler counts)."""
    status = claim.get("status") or {}
    results = ((status.get("allocation") or {}).get("devices") or {}).get("results") or []
    return [(r["driver"], r["pool"], r["device"]) for r in results if not r.get("adminAccess")]


def double_allocations(claims: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """``driver/pool/device`` -> the claims holding it, for devices held by more than one."""
    holders: dict[str, list[str]] = defaultdict(list)
    for key, claim in claims.items():
        for device in allocated(claim):
            holders["/".join(device)].append(key)
    return {d: sorted(h) for d, h in holders.items() if len(h) > 1}


def list_claims(api: client.ApiClient, namespace: str | None = None) -> list[dict[str, Any]]:
    resource = client.ResourceV1Api(api)
    if namespace:
        response = resource.list_namespaced_resource_claim(namespace, _preload_content=False)
    else:
        response = resource.list_resource_claim_for_all_namespaces(_preload_content=False)
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


@dataclass
class ClaimWatch:
    api: client.ApiClient
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    violations: list[dict[str, list[str]]] = field(default_factory=list)
    events: int = 0
    allocations_seen: int = 0  # events that showed a claim allocated
    _stop: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def _run(self, started: threading.Event) -> None:
        resource = client.ResourceV1Api(self.api)
        try:
            while not self._stop.is_set():
                listed = json.loads(
                    resource.list_resource_claim_for_all_namespaces(_preload_content=False).data
                )
                self.claims = {_key(c): c for c in listed["items"]}
                self._check()
                started.set()
                stream = watch.Watch(return_type=dict)
                for event in stream.stream(
                    resource.list_resource_claim_for_all_namespaces,
                    resource_version=listed["metadata"]["resourceVersion"],
                    deserialize=False,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        break
                    if event["type"] == "DELETED":
                        self.claims.pop(_key(obj), None)
                    else:
                        self.claims[_key(obj)] = obj
                        self.allocations_seen += bool(allocated(obj))
                    self.events += 1
                    self._check()
                    if self._stop.is_set():
                        break
        except BaseException as exc:  # reported by check(), the thread must not die silently
            self._error = exc
            started.set()

    def _check(self) -> None:
        found = double_allocations(self.claims)
        if found:
            self.violations.append(found)

    @contextmanager
    def running(self) -> Iterator[ClaimWatch]:
        started = threading.Event()
        thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        thread.start()
        started.wait(30)
        try:
            yield self
        finally:
            self._stop.set()

    def check(self) -> None:
        """Fail when the watch broke or any observed state held a device in two claims."""
        if self._error is not None:
            raise AssertionError(f"the claim watch failed: {self._error!r}")
        assert not self.violations, (
            f"{len(self.violations)} observed states held a device in two claims; first: "
            f"{self.violations[0]}"
        )

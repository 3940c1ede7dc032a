"""A stand-in for :class:`shorthop.controller.kube.Kube` in the reconciler's unit tests: it records
the calls and can fail binds. What talks to a real API server is tested against one
(tests/integration); these tests pin down decisions that need a precise interleaving of writes
and watch events, which a real cluster cannot be made to produce on demand."""

from __future__ import annotations

import copy
from typing import Any

from shorthop.controller.kube import KubeError


class RecordingKube:
    """The calls the reconciler makes, recorded; the first ``fail_binds`` binds answer 503."""

    def __init__(self, fail_binds: int = 0) -> None:
        self.fail_binds = fail_binds
        self.created: dict[str, dict[str, Any]] = {}
        self.bound: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.statuses: list[Any] = []

    def create_pod(self, namespace: str, body: Any) -> dict[str, Any]:
        pod = copy.deepcopy(dict(body))
        pod["metadata"]["uid"] = f"uid-{pod['metadata']['name']}"
        self.created[pod["metadata"]["name"]] = pod
        return pod

    def bind(self, namespace: str, name: str, node: str, *, uid: str | None = None) -> None:
        if self.fail_binds > 0:
            self.fail_binds -= 1
            raise KubeError(f"bind {namespace}/{name}", 503, "the server is unavailable")
        self.bound.append((name, node))

    def delete_pod(self, namespace: str, name: str, **_: Any) -> None:
        self.deleted.append(name)

    def ensure_service(self, namespace: str, body: Any) -> bool:
        return True

    def patch_status(self, namespace: str, name: str, status: Any) -> None:
        self.statuses.append(status)

    def event(self, involved: Any, **_: Any) -> None:
        pass

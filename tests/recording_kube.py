"""A stand-in for :class:`shorthop.controller.kube.Kube` in the reconciler's unit tests: it records
every call, keeps the pods that exist as the API server would (a second create of a name answers
409 AlreadyExists, a delete removes the pod) and can fail binds. What talks to a real API server is tested against one
(tests/integration); these tests pin down decisions that need a precise interleaving of writes
and watch events, which a real cluster cannot be made to produce on demand."""

from __future__ import annotations

import copy
from typing import Any

from shorthop import errors
from shorthop import metrics as metrics_module
from shorthop.controller.binder import BindingSubresourceBinder
from shorthop.controller.kube import KubeError
from shorthop.controller.live import LiveCluster
from shorthop.controller.reconcile import Reconciler
from shorthop.topology import fake

from tests import builders


class RecordingKube:
    """The calls the reconciler makes, every one in ``calls`` (verb, name) in order; ``created``
    holds the pods that exist now. The first ``fail_binds`` binds answer 503."""

    def __init__(self, fail_binds: int = 0) -> None:
        self.fail_binds = fail_binds
        self.calls: list[tuple[str, str]] = []
        self.created: dict[str, dict[str, Any]] = {}
        self.bound: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.statuses: list[Any] = []

    def creates(self) -> list[str]:
        """The name of every create call, answered or refused, in order."""
        return [name for verb, name in self.calls if verb == "create"]

    def create_pod(self, namespace: str, body: Any) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.calls.append(("create", name))
        if name in self.created:
            raise errors.AlreadyExists(
                f"create pod {namespace}/{name}",
                409,
                f'pods "{name}" already exists',
                reason="AlreadyExists",
            )
        pod = copy.deepcopy(dict(body))
        pod["metadata"]["uid"] = f"uid-{name}-{len(self.calls)}"
        self.created[name] = pod
        return pod

    def remove_by_someone_else(self, name: str) -> None:
        """A pod deleted by another client: gone from the server, no call of ours."""
        del self.created[name]

    def bind(self, namespace: str, name: str, node: str, *, uid: str | None = None) -> None:
        self.calls.append(("bind", name))
        if self.fail_binds > 0:
            self.fail_binds -= 1
            raise KubeError(f"bind {namespace}/{name}", 503, "the server is unavailable")
        self.bound.append((name, node))

    def delete_pod(self, namespace: str, name: str, **_: Any) -> None:
        self.calls.append(("delete", name))
        self.deleted.append(name)
        self.created.pop(name, None)

    def ensure_service(self, namespace: str, body: Any) -> bool:
        self.calls.append(("service", body["metadata"]["name"]))
        return True

    def patch_status(self, namespace: str, name: str, status: Any) -> None:
        self.calls.append(("status", name))
        self.statuses.append(status)

    def event(self, involved: Any, *, reason: str = "", **_: Any) -> None:
        self.calls.append(("event", reason))


def one_node_reconciler(kube: Any, body: dict[str, Any]) -> tuple[LiveCluster, Reconciler, str]:
    """A reconciler calling ``kube`` (a :class:`RecordingKube` or a real ``Kube``) on one synced
    8-GPU node ``n1``, knowing ``body`` (given uid ``u-1`` and generation 1); returns the live
    view, the reconciler and the deployment's key."""
    live = LiveCluster(fake.CONFIG)
    live.apply_node(None, builders.node_object("n1", gpus=8))
    live.synced.set()
    reconciler = Reconciler(
        kube,
        live,
        BindingSubresourceBinder(kube),
        metrics_module.create(),
    )
    body["metadata"].update(uid="u-1", generation=1)
    key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
    reconciler.deployments[key] = body
    return live, reconciler, key

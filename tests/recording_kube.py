"""A stand-in for :class:`shorthop.controller.kube.Kube` in the reconciler's unit tests: it records
the calls and can fail binds. What talks to a real API server is tested against one
(tests/integration); these tests pin down decisions that need a precise interleaving of writes
and watch events, which a real cluster cannot be made to produce on demand."""

from __future__ import annotations

import copy
from typing import Any

from shorthop import metrics as metrics_module
from shorthop.controller.binder import BindingSubresourceBinder
from shorthop.controller.kube import KubeError
from shorthop.controller.live import LiveCluster
from shorthop.controller.reconcile import Reconciler
from shorthop.topology import fake

from tests import builders


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


def one_node_reconciler(
    kube: Any, body: dict[str, Any], *, workers: int = 64
) -> tuple[LiveCluster, Reconciler, str]:
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
        workers=workers,
    )
    body["metadata"].update(uid="u-1", generation=1)
    key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
    reconciler.deployments[key] = body
    return live, reconciler, key

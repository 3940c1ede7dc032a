"""A bind that fails transiently (5xx, 429, no answer) is retried: the reconcile backs off and
comes back, and binds the pod it already created instead of deleting it because the GPUs it
assumed for that very pod looked taken (found by chaos/test_apiserver.py: every failed bind
turned into a delete, a create and a bind, and without the delete's event nothing retried)."""

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
from tests import operator_harness as oh


class FlakyKube:
    """The calls the reconciler makes; the first ``fail_binds`` binds answer 503."""

    def __init__(self, fail_binds: int) -> None:
        self.fail_binds = fail_binds
        self.created: dict[str, dict[str, Any]] = {}
        self.bound: list[tuple[str, str]] = []
        self.deleted: list[str] = []

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
        pass

    def event(self, involved: Any, **_: Any) -> None:
        pass


def test_a_failed_bind_is_retried_and_binds_the_pod_already_created() -> None:
    kube = FlakyKube(fail_binds=1)
    live = LiveCluster(fake.CONFIG)
    live.apply_node(None, builders.node_object("n1", gpus=8))
    live.synced.set()
    reconciler = Reconciler(
        kube,  # type: ignore[arg-type]
        live,
        BindingSubresourceBinder(kube),  # type: ignore[arg-type]
        metrics_module.create(),
    )
    body = oh.deployment("d", "ns", None, [("r", 1, 4, 4)])
    body["metadata"].update(uid="u-1", generation=1)
    reconciler.deployments["ns/d"] = body

    first = reconciler.reconcile("ns/d")
    assert list(kube.created) == ["d-r-0-0"]
    assert not kube.bound
    assert first.retry, "a failed bind must be retried (with backoff)"

    # The watch reports the created, unbound pod; the retry binds it where it was planned.
    live.apply_pod("ADDED", kube.created["d-r-0-0"])
    reconciler.reconcile("ns/d")
    assert kube.deleted == [], "the pod was deleted although its GPUs were assumed for it"
    assert kube.bound == [("d-r-0-0", "n1")]
    assert list(kube.created) == ["d-r-0-0"]

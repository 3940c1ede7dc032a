"""The informer on the real API server: its list comes in pages (``limit``/``continue``), every
object is handed on projected, and a relist reports what vanished in between as DELETED."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client
from shorthop.controller import fields
from shorthop.controller import kube as opkube
from shorthop.controller.runtime.informer import Informer

from tests import kube

pytestmark = pytest.mark.cluster


def _pod(name: str) -> dict[str, Any]:
    container = {"name": "c", "image": "registry.invalid/x:1", "env": [{"name": "A", "value": "1"}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"schedulerName": "nobody", "containers": [container]},
    }


class Seen:
    """What the informer handed on, by key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, Mapping[str, Any]] = {}
        self.events: list[tuple[str | None, str]] = []

    def __call__(self, event: str | None, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        key = f"{meta.get('namespace')}/{meta['name']}"
        with self.lock:
            self.events.append((event, key))
            if event == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj


def test_the_list_comes_in_pages_and_objects_are_projected(cluster: kube.Cluster) -> None:
    api = opkube.api_client(str(cluster.kubeconfig))
    core = client.CoreV1Api(api)
    with cluster.namespace("inf") as ns:
        for i in range(5):
            cluster.core.create_namespaced_pod(ns, _pod(f"p{i}"))
        seen, stop = Seen(), threading.Event()
        informer = Informer(
            "pods",
            functools.partial(core.list_namespaced_pod, ns),
            seen,
            stop,
            page=2,
            codec=fields.POD_CODEC,
        )
        informer.start()
        try:
            assert informer.synced.wait(60)
            assert informer.lists == 3  # 2 + 2 + 1
            assert sorted(seen.objects) == [f"{ns}/p{i}" for i in range(5)]
            for obj in seen.objects.values():
                assert "managedFields" not in obj["metadata"]
                assert obj["metadata"]["resourceVersion"]
                assert all(set(c) <= {"resources"} for c in obj["spec"]["containers"])
            # The watch from the list's version hands on new objects, projected too.
            cluster.core.create_namespaced_pod(ns, _pod("late"))
            kube.wait_for("the new pod", lambda: f"{ns}/late" in seen.objects, timeout=30)
            assert "env" not in str(seen.objects[f"{ns}/late"])
        finally:
            informer.stop()
            informer.join(10)


@pytest.mark.parametrize("handler_knows", [False, True], ids=["own-keys", "handler-keys"])
def test_a_relist_reports_what_vanished_as_deleted(
    cluster: kube.Cluster, handler_knows: bool
) -> None:
    """Whether the informer keeps the keys it saw, or asks its handler (``known``) for them."""
    api = opkube.api_client(str(cluster.kubeconfig))
    core = client.CoreV1Api(api)
    with cluster.namespace("inf") as ns:
        for i in range(3):
            cluster.core.create_namespaced_pod(ns, _pod(f"p{i}"))
        seen = Seen()
        informer = Informer(
            "pods",
            functools.partial(core.list_namespaced_pod, ns),
            seen,
            threading.Event(),
            page=2,
            known=(lambda: list(seen.objects)) if handler_knows else None,
        )
        informer._list()  # as at start, without the watch
        cluster.core.delete_namespaced_pod("p1", ns, grace_period_seconds=0)
        kube.wait_for(
            "p1 to be gone",
            lambda: (
                "p1" not in [p.metadata.name for p in cluster.core.list_namespaced_pod(ns).items]
            ),
            timeout=30,
        )
        informer._list()  # what the informer does after a 410 or a dropped watch
        assert ("DELETED", f"{ns}/p1") in seen.events
        assert sorted(seen.objects) == [f"{ns}/p0", f"{ns}/p2"]

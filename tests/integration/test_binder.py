"""The binder decides by type and by reading the pod, never by message text, against the real
API server: a 409 on ``pods/binding`` covers "already bound here", "bound elsewhere", "being
deleted" and "replaced" alike, and each must lead to its own outcome. And the API's failures
reach callers as the typed errors of ``shorthop.errors``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from shorthop import errors
from shorthop.controller import kube as opkube
from shorthop.controller.binder import BindCode, BindingSubresourceBinder, PodRef

from tests import kube

pytestmark = pytest.mark.cluster


def _pod(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        # No scheduler answers to this name: only the test binds these pods.
        "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "x"}]},
    }


@pytest.fixture
def api(cluster: kube.Cluster) -> Iterator[tuple[opkube.Kube, str]]:
    k = opkube.Kube(opkube.api_client(str(cluster.kubeconfig)))
    with cluster.namespace("bind") as ns:
        yield k, ns
        for pod in cluster.core.list_namespaced_pod(ns).items:
            if pod.metadata.finalizers:
                cluster.core.patch_namespaced_pod(
                    pod.metadata.name, ns, {"metadata": {"finalizers": None}}
                )
            k.delete_pod(ns, pod.metadata.name, force=True)


def _created(k: opkube.Kube, ns: str, name: str, **meta: Any) -> PodRef:
    body = k.create_pod(ns, _pod(name, **meta))
    return PodRef(ns, name, str(body["metadata"]["uid"]))


def test_a_pod_is_bound_once_and_binding_it_again_there_is_a_skip(
    api: tuple[opkube.Kube, str],
) -> None:
    k, ns = api
    binder = BindingSubresourceBinder(k)
    ref = _created(k, ns, "p")
    assert binder.bind(ref, "node-a", (0,)).code == BindCode.BOUND
    found = k.get_pod(ns, "p")
    assert found is not None
    assert found["spec"]["nodeName"] == "node-a"
    # An earlier attempt whose answer was lost: already done, nothing to undo.
    assert binder.bind(ref, "node-a", (0,)).code == BindCode.SKIP


@pytest.mark.parametrize("case", ["bound-elsewhere", "gone", "replaced", "being-deleted"])
def test_a_pod_that_cannot_be_bound_here_is_a_conflict(
    api: tuple[opkube.Kube, str], cluster: kube.Cluster, case: str
) -> None:
    k, ns = api
    binder = BindingSubresourceBinder(k)
    if case == "gone":
        ref = PodRef(ns, "never-created", "uid-0")
    elif case == "being-deleted":
        ref = _created(k, ns, "p", finalizers=["shorthop.test/hold"])
        k.delete_pod(ns, "p")  # held by its finalizer: deletionTimestamp set
    else:
        ref = _created(k, ns, "p")
    if case == "bound-elsewhere":
        assert binder.bind(ref, "node-b", (0,)).code == BindCode.BOUND
    if case == "replaced":
        k.delete_pod(ns, "p", force=True)
        kube.wait_for("the pod to go", lambda: k.get_pod(ns, "p") is None)
        _created(k, ns, "p")  # same name, new uid
    result = binder.bind(ref, "node-a", (0,))
    assert result.code == BindCode.CONFLICT, result
    found = k.get_pod(ns, ref.name)
    if found is not None and case != "bound-elsewhere":
        assert not found["spec"].get("nodeName"), "a conflicting bind must not bind"


def test_api_failures_arrive_as_typed_errors(api: tuple[opkube.Kube, str]) -> None:
    k, ns = api
    _created(k, ns, "p")
    with pytest.raises(errors.AlreadyExists) as taken:
        k.create_pod(ns, _pod("p"))
    assert (taken.value.status, taken.value.reason) == (409, "AlreadyExists")
    with pytest.raises(errors.NotFound):
        k.patch_status(ns, "no-such-deployment", {"phase": "Running"})
    with pytest.raises(errors.Invalid):
        k.create_pod(ns, _pod("Not_A_Name"))
    assert k.get_pod(ns, "absent") is None
    k.delete_pod(ns, "absent")  # already gone: done

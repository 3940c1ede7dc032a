"""Binding through a ResourceClaim on the real API server (``controller.dra.ClaimBinder``): the
claim shorthop writes passes the API server's validation, holds exactly the planned devices, pins
the node and is reserved for the pod (what the kubelet's DRA manager checks before it prepares
devices); binding is idempotent, a claim left by an earlier pod of the same name is removed
first, a claim allocated elsewhere or devices another claim took meanwhile are conflicts (also
when only the consistent read after the write shows them: shorthop takes its allocation back); and
once the pod goes, the garbage collector and the resourceclaim controller of
kube-controller-manager deallocate and remove the claim (no device leaks)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop.controller import dra
from shorthop.controller import kube as opkube
from shorthop.controller.binder import BindCode, PodRef
from shorthop.controller.live import LiveCluster
from shorthop.placement import devices
from shorthop.topology import fake

from tests import builders, kube

pytestmark = pytest.mark.cluster


class Setup:
    def __init__(self, cluster: kube.Cluster, ns: str, node: str) -> None:
        self.cluster = cluster
        self.ns = ns
        self.node = node
        self.kube = opkube.Kube(opkube.api_client(str(cluster.kubeconfig)))
        self.resource = client.ResourceV1Api(cluster.api)
        self.live = LiveCluster(fake.CONFIG)
        self.binder = dra.ClaimBinder(self.kube, self.live)
        self.sync()

    def sync(self) -> None:
        """Feed the live view what the API server holds now (as the informers would)."""
        for item in json.loads(self.resource.list_resource_slice(_preload_content=False).data)[
            "items"
        ]:
            self.live.apply_slice(None, item)
        node = self.cluster.core.read_node(self.node, _preload_content=False)
        self.live.apply_node(None, json.loads(node.data))
        claims = json.loads(
            self.resource.list_namespaced_resource_claim(self.ns, _preload_content=False).data
        )["items"]
        for item in claims:
            self.live.apply_claim(None, item)

    def pod(self, name: str) -> PodRef:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "x"}]},
        }
        pod = dra.attach_claim(body, [])
        created = self.kube.create_pod(self.ns, pod)
        return PodRef(self.ns, name, str(created["metadata"]["uid"]), dra.claim_name(name))

    def claim(self, name: str) -> dict[str, Any] | None:
        return self.kube.get_claim(self.ns, name)


@pytest.fixture
def setup(cluster: kube.Cluster) -> Iterator[Setup]:
    node = f"dra-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(
        "apply", "-f", "-",
        input=yaml.safe_dump_all([builders.dra_node(node), builders.gpu_slice(node)]),
    )  # fmt: skip
    with cluster.namespace("drab") as ns:
        yield Setup(cluster, ns, node)
        for pod in cluster.core.list_namespaced_pod(ns).items:
            cluster.core.delete_namespaced_pod(pod.metadata.name, ns, grace_period_seconds=0)
    cluster.kubectl("delete", "resourceslice", f"{node}-gpu.nvidia.com", "--ignore-not-found")
    cluster.kubectl("delete", "node", node, "--ignore-not-found")


def _results(claim: dict[str, Any] | None) -> list[str]:
    assert claim is not None
    return [r["device"] for r in claim["status"]["allocation"]["devices"]["results"]]


def test_the_claim_holds_the_planned_devices_is_reserved_and_then_the_pod_is_bound(
    setup: Setup,
) -> None:
    ref = setup.pod("p")
    assert setup.binder.bind(ref, setup.node, (6, 2)).code == BindCode.BOUND
    claim = setup.claim("p-gpus")
    assert claim is not None
    assert _results(claim) == ["gpu-6", "gpu-2"]
    status = claim["status"]
    assert status["allocation"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"] == [
        {"key": "metadata.name", "operator": "In", "values": [setup.node]}
    ]
    assert status["reservedFor"] == [{"resource": "pods", "name": "p", "uid": ref.uid}]
    assert claim["metadata"]["finalizers"] == [devices.FINALIZER]
    assert claim["metadata"]["ownerReferences"][0]["uid"] == ref.uid
    pod = setup.kube.get_pod(setup.ns, "p")
    assert pod is not None
    assert pod["spec"]["nodeName"] == setup.node
    printed = setup.cluster.kubectl("get", "resourceclaim", "p-gpus", "-n", setup.ns).stdout
    assert "allocated,reserved" in printed


def test_binding_again_changes_nothing(setup: Setup) -> None:
    ref = setup.pod("p")
    assert setup.binder.bind(ref, setup.node, (0, 1)).code == BindCode.BOUND
    before = setup.claim("p-gpus")
    assert setup.binder.bind(ref, setup.node, (0, 1)).code == BindCode.SKIP
    after = setup.claim("p-gpus")
    assert before is not None
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_claim_written_before_a_crash_is_used_as_it_is(setup: Setup) -> None:
    """Killed between the claim's status write and the bind: the next attempt only binds."""
    ref = setup.pod("p")
    assert setup.binder.ensure(ref, setup.node, (3,)).code == BindCode.BOUND
    written = setup.claim("p-gpus")
    assert written is not None
    assert setup.binder.bind(ref, setup.node, (3,)).code == BindCode.BOUND
    again = setup.claim("p-gpus")
    assert again is not None
    assert again["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_a_claim_of_another_pod_under_its_name_is_removed_first(setup: Setup) -> None:
    """The claim of an earlier pod of the same name, not collected yet (its owner is kept
    alive here, so the garbage collector cannot take it first)."""
    other = setup.pod("other")
    assert other.uid is not None
    setup.kube.create_claim(
        setup.ns, dra.render_claim(setup.ns, "other", other.uid, 1, "gpu.nvidia.com")
        | {"metadata": {**dra.render_claim(setup.ns, "other", other.uid, 1, "x")["metadata"],
                        "name": "p-gpus"}},
    )  # fmt: skip
    ref = setup.pod("p")
    result = setup.binder.bind(ref, setup.node, (0,))
    assert result.code == BindCode.ERROR
    assert "earlier pod" in result.message
    kube.wait_for("the other pod's claim to go", lambda: setup.claim("p-gpus") is None, timeout=60)
    assert setup.binder.bind(ref, setup.node, (0,)).code == BindCode.BOUND
    assert _results(setup.claim("p-gpus")) == ["gpu-0"]


def test_a_claim_allocated_to_other_devices_is_a_conflict(setup: Setup) -> None:
    ref = setup.pod("p")
    assert setup.binder.ensure(ref, setup.node, (0,)).code == BindCode.BOUND
    result = setup.binder.bind(ref, setup.node, (1,))
    assert result.code == BindCode.CONFLICT
    assert "gpu-0" in result.message


def test_devices_another_claim_took_since_the_plan_are_a_conflict(setup: Setup) -> None:
    other = builders.claim("k-gpu", [(setup.node, "gpu-4")], namespace=setup.ns)
    created = setup.kube.create_claim(setup.ns, {k: v for k, v in other.items() if k != "status"})
    created["status"] = other["status"]
    setup.kube.update_claim_status(setup.ns, created)
    setup.sync()
    ref = setup.pod("p")
    result = setup.binder.bind(ref, setup.node, (4, 5))
    assert result.code == BindCode.CONFLICT
    claim = setup.claim("p-gpus")
    assert claim is not None
    assert not (claim.get("status") or {}).get("allocation")


def test_when_the_pod_goes_its_claim_is_deallocated_and_removed(setup: Setup) -> None:
    ref = setup.pod("p")
    assert setup.binder.bind(ref, setup.node, (0, 1)).code == BindCode.BOUND
    setup.kube.delete_pod(setup.ns, "p", force=True)
    kube.wait_for(
        "the garbage collector and the resourceclaim controller to remove the claim",
        lambda: setup.claim("p-gpus") is None,
        timeout=60,
    )


def test_a_claim_the_view_has_not_seen_makes_shorthop_take_its_allocation_back(
    setup: Setup,
) -> None:
    """Another scheduler allocated gpu-4 from a cache that had not seen shorthop's claim, and
    shorthop's own view has not seen that claim yet either: the consistent read after the write
    finds it, shorthop clears its own allocation and does not bind (the pod is re-placed)."""
    other = builders.claim("k-gpu", [(setup.node, "gpu-4")], namespace=setup.ns)
    created = setup.kube.create_claim(setup.ns, {k: v for k, v in other.items() if k != "status"})
    created["status"] = other["status"]
    setup.kube.update_claim_status(setup.ns, created)  # not synced: the view misses it
    ref = setup.pod("p")
    result = setup.binder.bind(ref, setup.node, (4, 5))
    assert result.code == BindCode.CONFLICT
    assert "gpu-4" in result.message
    assert f"{setup.ns}/k-gpu" in result.message
    claim = setup.claim("p-gpus")
    assert claim is not None
    assert not (claim.get("status") or {}).get("allocation")
    assert not (claim.get("status") or {}).get("reservedFor")
    pod = setup.kube.get_pod(setup.ns, "p")
    assert pod is not None
    assert not pod["spec"].get("nodeName")
    # Devices nobody else holds are still allocated as planned.
    ref2 = setup.pod("q")
    assert setup.binder.bind(ref2, setup.node, (5, 6)).code == BindCode.BOUND
    assert _results(setup.claim("q-gpus")) == ["gpu-5", "gpu-6"]

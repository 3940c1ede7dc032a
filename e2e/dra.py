"""A fake GPU cluster whose GPUs the NVIDIA DRA driver publishes, on a real API server: the nodes
(no ``nvidia.com/gpu`` resource), their ResourceSlices owned by their Node as the driver's
kubelet plugin owns them (deleting a node collects its slice), the ``gpu.nvidia.com``
DeviceClass, device-plugin nodes beside them, and background workloads: pods holding DRA GPUs
through claims allocated as kube-scheduler would have, and device-plugin pods. Used by the DRA
e2e scenario, the DRA chaos test and ``make demo``."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import client
from shorthop.topology import fake

from tests import kube
from tests import operator_harness as oh


@dataclass
class DraCluster:
    nodes: list[dict[str, Any]]
    resource_slices: list[dict[str, Any]]
    pool: str | None
    background_namespace: str
    background_pods: list[dict[str, Any]] = field(default_factory=list)
    background_claims: list[dict[str, Any]] = field(default_factory=list)
    plugin_pods: list[dict[str, Any]] = field(default_factory=list)
    created_class: bool = False

    @property
    def names(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.nodes]

    @property
    def dra_names(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.nodes if fake.is_dra(n)]

    def slice_of(self, node: str) -> dict[str, Any]:
        return next(s for s in self.resource_slices if s["spec"]["nodeName"] == node)

    def toleration(self) -> list[dict[str, str]]:
        if self.pool is None:
            return []
        return [
            {"key": oh.POOL_TAINT, "operator": "Equal", "value": self.pool, "effect": "NoSchedule"}
        ]


def dra_cluster(
    shape: fake.ClusterShape,
    *,
    pool: str | None,
    background_namespace: str,
    occupancy: float = 0.0,
    busy: tuple[str, ...] = (),
    seed: int = 5,
) -> DraCluster:
    """The manifests; ``busy`` names the nodes (suffixes, without the pool) where background
    workloads take about ``occupancy`` of the GPUs."""
    nodes = oh.pool_nodes(pool, shape) if pool else fake.nodes(shape, seed=seed)
    published = fake.resource_slices(nodes, seed=seed)
    suffix = (lambda name: name.removeprefix(f"{pool}-")) if pool else (lambda name: name)
    chosen = [n for n in nodes if suffix(n["metadata"]["name"]) in busy]
    pods, claims = fake.background_claims(
        chosen, published, occupancy, seed=seed, namespace=background_namespace
    )
    plugin = fake.background_pods(chosen, occupancy, seed=seed, namespace=background_namespace)
    for pod in [*pods, *plugin]:
        pod.pop("status", None)
        if pool:
            pod["spec"]["tolerations"] = [
                {"key": oh.POOL_TAINT, "operator": "Exists", "effect": "NoSchedule"}
            ]
    return DraCluster(nodes, published, pool, background_namespace, pods, claims, plugin)


def allocated_devices(claim: dict[str, Any]) -> list[str]:
    """The devices a claim's allocation names."""
    results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {})
    return [str(r["device"]) for r in results.get("results", [])]


def plugin_gpus(dra: DraCluster) -> int:
    """GPUs the device-plugin background pods request."""
    return sum(
        int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
        for p in dra.plugin_pods
        for c in p["spec"]["containers"]
    )


def ensure_device_class(cluster: kube.Cluster) -> bool:
    """Create the driver's DeviceClass unless it exists; True when this call created it."""
    resource = client.ResourceV1Api(cluster.api)
    try:
        resource.create_device_class(fake.device_class())
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        return False
    return True


def create(cluster: kube.Cluster, dra: DraCluster, *, timeout: float = 90) -> None:
    """Nodes, then their slices owned by them, the DeviceClass, then the background workloads:
    pods bound by ``spec.nodeName`` and their claims allocated and reserved for them."""
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(fake.as_list(dra.nodes)))
    uids = {}
    for name in dra.dra_names:
        uids[name] = cluster.core.read_node(name).metadata.uid
    for body in dra.resource_slices:
        node = body["spec"]["nodeName"]
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node, "uid": uids[node],
             "controller": True}
        ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(fake.as_list(dra.resource_slices)))
    dra.created_class = ensure_device_class(cluster)
    oh.ensure_namespace(cluster, dra.background_namespace)
    resource = client.ResourceV1Api(cluster.api)
    ns = dra.background_namespace
    for pod, claim in zip(dra.background_pods, dra.background_claims, strict=True):
        created = cluster.core.create_namespaced_pod(ns, pod)
        status = claim["status"]
        body = {k: v for k, v in claim.items() if k != "status"}
        body["metadata"] = {
            **claim["metadata"],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": created.metadata.name,
                 "uid": created.metadata.uid, "controller": True}
            ],
            "finalizers": ["resource.kubernetes.io/delete-protection"],
        }  # fmt: skip
        made = json.loads(
            resource.create_namespaced_resource_claim(ns, body, _preload_content=False).data
        )
        made["status"] = {
            **status,
            "reservedFor": [
                {"resource": "pods", "name": created.metadata.name, "uid": created.metadata.uid}
            ],
        }
        resource.replace_namespaced_resource_claim_status(
            made["metadata"]["name"], ns, made, _preload_content=False
        )
    for pod in dra.plugin_pods:
        cluster.core.create_namespaced_pod(ns, pod)
    names = set(dra.names)
    expected = len(dra.background_pods) + len(dra.plugin_pods)

    def ready() -> bool:
        up = {
            n.metadata.name
            for n in cluster.core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        }
        running = [
            p for p in cluster.core.list_namespaced_pod(ns).items if p.status.phase == "Running"
        ]
        return names <= up and len(running) >= expected

    kube.wait_for("the DRA nodes Ready and background pods Running", ready, timeout=timeout)


def delete(cluster: kube.Cluster, dra: DraCluster) -> None:
    """Background pods (their claims follow), slices, nodes, and the DeviceClass if made here."""
    with contextlib.suppress(client.ApiException):
        cluster.core.delete_collection_namespaced_pod(
            dra.background_namespace, grace_period_seconds=0
        )
    with contextlib.suppress(client.ApiException):
        cluster.core.delete_namespace(dra.background_namespace)
    resource = client.ResourceV1Api(cluster.api)
    for body in dra.resource_slices:
        with contextlib.suppress(client.ApiException):
            resource.delete_resource_slice(body["metadata"]["name"])
    for name in dra.names:
        with contextlib.suppress(client.ApiException):
            cluster.core.delete_node(name)
    if dra.created_class:
        with contextlib.suppress(client.ApiException):
            resource.delete_device_class(fake.DRA_DRIVER)

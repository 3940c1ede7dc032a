"""The local control plane is a real Kubernetes: CRDs, RBAC-backed API, kwok nodes, bindings,
garbage collection and the default scheduler all work against it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client

from tests import kube

pytestmark = pytest.mark.cluster


def test_apiserver_reports_ready_and_real_version(cluster: kube.Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = client.VersionApi(cluster.api).get_code()
    assert version.git_version.startswith("v1.")
    assert version.minor.isdigit()
    assert int(version.minor) >= 34


def test_namespace_can_be_created_and_listed(cluster: kube.Cluster) -> None:
    with cluster.namespace("smoke") as ns:
        names = [n.metadata.name for n in cluster.core.list_namespace().items]
        assert ns in names


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.shorthop.io}
spec:
  group: smoke.shorthop.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"""


def test_crd_and_custom_resource_round_trip(cluster: kube.Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.wait_established("widgets.smoke.shorthop.io")
    with cluster.namespace("crd") as ns:
        widget = {
            "apiVersion": "smoke.shorthop.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 3},
        }
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(widget))
        got = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "smoke.shorthop.io", "v1", ns, "widgets", "w"
        )
        assert got["spec"]["size"] == 3
        # The schema is enforced by the apiserver.
        bad = {**widget, "metadata": {"name": "bad"}, "spec": {"size": 0}}
        result = cluster.kubectl(
            "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False
        )
        assert result.returncode != 0
        assert "spec.size" in result.stderr


@pytest.fixture
def gpu_node(cluster: kube.Cluster) -> Iterator[str]:
    name = f"gpu-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(kube.fake_gpu_node(name)))
    yield name
    cluster.core.delete_node(name)


def _ready(cluster: kube.Cluster, node: str) -> bool:
    conditions = cluster.core.read_node(node).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def test_fake_gpu_node_is_kept_ready_by_kwok(cluster: kube.Cluster, gpu_node: str) -> None:
    kube.wait_for(f"node {gpu_node} Ready", lambda: _ready(cluster, gpu_node))
    node = cluster.core.read_node(gpu_node)
    assert node.status.allocatable["nvidia.com/gpu"] == "8"
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def _pod(
    name: str, *, scheduler: str | None = None, gpus: int = 1, node: str | None = None
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            scheduler_name=scheduler,
            node_selector={"kubernetes.io/hostname": node} if node else None,
            containers=[
                client.V1Container(
                    name="c",
                    image="registry.invalid/engine:1",
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
                )
            ],
        ),
    )


def _phase(cluster: kube.Cluster, ns: str, pod: str) -> str:
    return str(cluster.core.read_namespaced_pod(pod, ns).status.phase)


def test_pod_bound_through_binding_subresource_runs_on_kwok(
    cluster: kube.Cluster, gpu_node: str
) -> None:
    kube.wait_for(f"node {gpu_node} Ready", lambda: _ready(cluster, gpu_node))
    with cluster.namespace("bind") as ns:
        cluster.core.create_namespaced_pod(ns, _pod("p", scheduler="shorthop-smoke"))
        # Nobody schedules it: the default scheduler ignores other scheduler names.
        assert cluster.core.read_namespaced_pod("p", ns).spec.node_name is None
        assert kube.bind_pod(cluster.core, ns, "p", gpu_node) == 201
        pod = cluster.core.read_namespaced_pod("p", ns)
        assert pod.spec.node_name == gpu_node
        kube.wait_for("pod Running", lambda: _phase(cluster, ns, "p") == "Running")


def test_deleting_owner_garbage_collects_owned_pod(cluster: kube.Cluster) -> None:
    with cluster.namespace("gc") as ns:
        owner = cluster.core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        pod = _pod("owned", scheduler="nobody")
        pod.metadata.owner_references = [
            client.V1OwnerReference(
                api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
            )
        ]
        cluster.core.create_namespaced_pod(ns, pod)
        cluster.core.delete_namespaced_config_map("owner", ns)

        def gone() -> bool:
            return not [
                p for p in cluster.core.list_namespaced_pod(ns).items if p.metadata.name == "owned"
            ]

        kube.wait_for("the owned pod to be garbage-collected", gone)


def test_plain_pod_is_bound_by_kube_scheduler(cluster: kube.Cluster, gpu_node: str) -> None:
    kube.wait_for(f"node {gpu_node} Ready", lambda: _ready(cluster, gpu_node))
    with cluster.namespace("sched") as ns:
        cluster.core.create_namespaced_pod(ns, _pod("plain", gpus=2, node=gpu_node))
        node = kube.wait_for(
            "kube-scheduler to bind the pod",
            lambda: cluster.core.read_namespaced_pod("plain", ns).spec.node_name,
        )
        assert node == gpu_node
        kube.wait_for("pod Running", lambda: _phase(cluster, ns, "plain") == "Running")

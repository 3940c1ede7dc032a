"""What the running control plane is, asked of the server rather than assumed from the build: its
version is the selected release, and Dynamic Resource Allocation works on every supported release
(resource.k8s.io/v1 served, kube-scheduler's DynamicResources plugin allocating claims), which
shorthop's DRA binder builds on."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.controlplane import cluster as controlplane
from e2e.controlplane import commands, components
from tests import kube

pytestmark = pytest.mark.cluster

DRIVER = "gpu.test.shorthop.io"


@pytest.mark.parametrize("component", controlplane.ORDER)
def test_every_flag_exists_and_none_is_deprecated(component: str, tmp_path: Path) -> None:
    """What the local control plane passes each component, against the built binary's --help
    (a removed flag stops the component; a deprecated one is the next release's removal)."""
    binary = components.binary_path(component)
    if not binary.exists():
        pytest.fail(f"{binary} is not built: run `make controlplane`")
    ports = dict.fromkeys(
        ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"), 1
    )
    argv = commands.command(component, str(binary), commands.Paths(tmp_path, ports))
    shown = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    text = shown.stdout + shown.stderr
    problems = []
    for arg in argv[1:]:
        flag = arg.split("=", 1)[0]
        line = re.search(rf"^\s+(?:-\w, )?{re.escape(flag)}\b.*$", text, re.M)
        if line is None:
            problems.append(f"{flag}: not a flag of {binary.name}")
        elif "DEPRECATED" in line[0]:
            problems.append(f"{flag}: {line[0].strip()}")
    assert problems == []


def test_server_runs_the_selected_release(cluster: kube.Cluster) -> None:
    version = cluster.server_version()
    assert version.git_version.startswith(f"v{version.major}.{version.minor}.")
    if cluster.local is not None:
        assert version.git_version == cluster.local.release.kubernetes
    # The oldest supported minor: the chart's kubeVersion refuses anything older.
    assert version.at_least(1, 35)


def test_dra_api_is_served_with_its_resources(cluster: kube.Cluster) -> None:
    assert cluster.serves("resource.k8s.io/v1")
    resources = cluster.api_resources("resource.k8s.io/v1")
    for name in ("deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices"):
        assert name in resources, sorted(resources)
    assert "resourceclaims/status" in resources
    assert resources["resourceslices"].namespaced is False
    assert {"create", "list", "watch"} <= resources["resourceclaims"].verbs
    # GA and locked on since 1.35; a server without the gate (removed later) has it on for good.
    assert cluster.feature_gates().get("DynamicResourceAllocation", True) is True


def test_feature_gates_are_read_from_the_server(cluster: kube.Cluster) -> None:
    gates = cluster.feature_gates()
    assert len(gates) > 50, "kube-apiserver exports kubernetes_feature_enabled for every gate"
    assert all(isinstance(on, bool) for on in gates.values())


@pytest.fixture
def dra_node(cluster: kube.Cluster) -> Iterator[str]:
    """A kwok node whose two fake GPUs a ResourceSlice publishes for a test driver."""
    name = f"dra-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(kube.fake_gpu_node(name, gpus=0)))
    slice_ = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{name}-gpus"},
        "spec": {
            "driver": DRIVER,
            "nodeName": name,
            "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {"name": f"gpu-{i}", "attributes": {"index": {"int": i}}} for i in range(2)
            ],
        },
    }
    cls = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": f"{name}-gpu"},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([slice_, cls]))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "resourceslice", f"{name}-gpus", "--ignore-not-found")
        cluster.kubectl("delete", "deviceclass", f"{name}-gpu", "--ignore-not-found")
        cluster.kubectl("delete", "node", name, "--ignore-not-found")


def test_kube_scheduler_allocates_a_resource_claim(cluster: kube.Cluster, dra_node: str) -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "gpu"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpu", "exactly": {"deviceClassName": f"{dra_node}-gpu", "count": 1}}
                ]
            }
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "uses-gpu"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": dra_node},
            "resourceClaims": [{"name": "gpu", "resourceClaimName": "gpu"}],
            "containers": [
                {
                    "name": "c",
                    "image": "registry.invalid/engine:1",
                    "resources": {"claims": [{"name": "gpu"}]},
                }
            ],
        },
    }
    with cluster.namespace("dra") as ns:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all([claim, pod]))
        node = kube.wait_for(
            "kube-scheduler to bind the pod with a claim",
            lambda: cluster.core.read_namespaced_pod("uses-gpu", ns).spec.node_name,
            timeout=90,
        )
        assert node == dra_node
        status = cluster.get_raw(f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/gpu")[
            "status"
        ]
        (result,) = status["allocation"]["devices"]["results"]
        assert (result["driver"], result["pool"], result["request"]) == (DRIVER, dra_node, "gpu")
        assert result["device"] in {"gpu-0", "gpu-1"}
        assert [r["name"] for r in status["reservedFor"]] == ["uses-gpu"]

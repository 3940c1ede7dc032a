"""The chart's node agent (``nodeAgent.*``): off by default; when on, a restricted DaemonSet that
gets NVML from the NVIDIA runtime (not from privileges, not by taking a GPU), its own
ServiceAccount with exactly get/patch nodes and create events, the admission policy, values that
reach the pod, schema errors that name the value, and manifests the real API server admits under
restricted Pod Security. The policy's behaviour is tested in test_node_agent_policy.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests import kube

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shorthop"
NAMESPACE = "shorthop-system"
ON = ("--set", "nodeAgent.enabled=true")
AGENT_KINDS = {
    "DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}  # fmt: skip


class Helm:
    def __init__(self, binary: str, home: Path, kube_version: str) -> None:
        self.binary, self.kube_version = binary, kube_version
        self.env = {
            **os.environ,
            **{f"HELM_{k}_HOME": str(home / k) for k in ("CACHE", "CONFIG", "DATA")},
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=120,
        )

    def template(self, *values: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        done = self.run(
            "template",
            "shorthop",
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            self.kube_version,
            *values,
        )
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    from e2e.controlplane import components

    path = components.binary_path("helm")
    binary = str(path) if path.exists() else shutil.which("helm")
    if binary is None:
        pytest.fail(f"no helm at {path}: run `make controlplane` to build it")
    return Helm(binary, tmp_path_factory.mktemp("helm"), components.selected().kubernetes)


def _agent(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if "node-agent" in d["metadata"]["name"]]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in _agent(docs) if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = _one(docs, "DaemonSet")["spec"]["template"]["spec"]
    return spec


def test_the_agent_is_off_by_default(helm: Helm) -> None:
    assert _agent(helm.template()) == []


def test_enabled_it_renders_its_own_objects(helm: Helm) -> None:
    docs = _agent(helm.template(*ON))
    assert {d["kind"] for d in docs} == AGENT_KINDS
    assert len(docs) == len(AGENT_KINDS)
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "default"  # node events go where the kubelet's go


def test_the_daemonset_is_restricted_and_gets_nvml_from_the_nvidia_runtime(helm: Helm) -> None:
    pod = _pod(helm.template(*ON))
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod
    assert all("hostPath" not in v for v in pod.get("volumes", []))
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert "privileged" not in sc
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    resources = container["resources"]
    assert not any("nvidia.com/gpu" in (resources.get(k) or {}) for k in ("requests", "limits"))
    assert container["command"] == ["shorthop", "node-agent"]
    assert "--health-port=8081" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["image"] == "ghcr.io/shorthop/shorthop:0.1.0"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_scheduling_image_and_timing_values_reach_the_pod(helm: Helm) -> None:
    pod = _pod(
        helm.template(
            *ON,
            "--set-json", 'nodeAgent.nodeSelector={"gpu":"yes","nvidia.com/gpu.present":null}',
            "--set-json", 'nodeAgent.tolerations=[{"operator":"Exists"}]',
            "--set", "nodeAgent.runtimeClassName=,nodeAgent.interval=60,nodeAgent.image.tag=9.9",
        )
    )  # fmt: skip
    assert pod["nodeSelector"] == {"gpu": "yes"}
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert "runtimeClassName" not in pod
    (container,) = pod["containers"]
    assert "--interval=60" in container["args"]
    assert container["image"].endswith(":9.9")


def test_agent_pods_are_never_selected_by_the_operators_deployment_or_services(helm: Helm) -> None:
    docs = helm.template(*ON, "--set", "metrics.serviceMonitor.enabled=false")
    agent_labels = _one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    selectors = [
        d["spec"]["selector"]["matchLabels"]
        for d in docs
        if d["kind"] in ("Deployment", "PodDisruptionBudget")
    ]
    selectors += [d["spec"]["selector"] for d in docs if d["kind"] == "Service"]
    assert selectors
    for selector in selectors:
        assert not all(agent_labels.get(k) == v for k, v in selector.items()), selector


def test_rbac_grants_exactly_get_and_patch_nodes_and_create_events(helm: Helm) -> None:
    docs = helm.template(*ON)
    assert _one(docs, "ClusterRole")["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}
    ]
    assert _one(docs, "Role")["rules"] == [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}
    ]
    account = _one(docs, "ServiceAccount")["metadata"]["name"]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        (subject,) = _one(docs, kind)["subjects"]
        assert (subject["name"], subject["namespace"]) == (account, NAMESPACE)
    condition = _one(docs, "ValidatingAdmissionPolicy")["spec"]["matchConditions"][0]["expression"]
    assert f'"system:serviceaccount:{NAMESPACE}:{account}"' in condition
    assert _one(docs, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] == ["Deny"]


def test_the_admission_policy_can_be_left_out(helm: Helm) -> None:
    kinds = {
        d["kind"]
        for d in _agent(helm.template(*ON, "--set", "nodeAgent.admissionPolicy.enabled=false"))
    }
    assert kinds == AGENT_KINDS - {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["--set", "nodeAgent.interval=0"], ["/nodeAgent/interval", "minimum"]),
        (["--set", "nodeAgent.healthPort=70000"], ["/nodeAgent/healthPort", "maximum"]),
        (["--set", "nodeAgent.colour=blue"], ["nodeAgent", "colour"]),
        (["--set", "nodeAgent.image.pullPolicy=Sometimes"], ["/nodeAgent/image/pullPolicy"]),
        (["--set", "nodeAgent.maxUnavailable=lots"], ["/nodeAgent/maxUnavailable"]),
        (["--set", "nodeAgent.eventsNamespace=Not_A_Namespace"], ["/nodeAgent/eventsNamespace"]),
    ],
    ids=["interval", "port", "unknown-key", "pull-policy", "max-unavailable", "events-namespace"],
)
def test_bad_values_fail_naming_the_value(helm: Helm, values: list[str], words: list[str]) -> None:
    done = helm.run(
        "template", "shorthop", str(CHART), "--kube-version", helm.kube_version, *ON, *values
    )
    assert done.returncode != 0
    for word in words:
        assert word in done.stderr, done.stderr


def test_helm_lint_strict_passes_with_the_agent(helm: Helm) -> None:
    done = helm.run("lint", str(CHART), "--strict", *ON)
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout, done.stdout + done.stderr


@pytest.fixture
def restricted(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("agent-chart") as ns:
        labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }
        cluster.core.patch_namespace(ns, {"metadata": {"labels": labels}})
        yield ns


@pytest.fixture
def nvidia_runtime_class(cluster: kube.Cluster) -> Iterator[None]:
    """The RuntimeClass the GPU Operator would create (admission looks it up)."""
    node = client.NodeV1Api(cluster.api)
    try:
        node.read_runtime_class("nvidia")
        created = False
    except client.ApiException:
        node.create_runtime_class(
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": "nvidia"},
                "handler": "nvidia",
            }
        )
        created = True
    yield
    if created:
        node.delete_runtime_class("nvidia")


def test_the_api_server_admits_the_agent_under_restricted_pod_security(
    cluster: kube.Cluster, helm: Helm, restricted: str, nvidia_runtime_class: None
) -> None:
    docs = _agent(
        helm.template(*ON, "--set", "nodeAgent.eventsNamespace=" + restricted, namespace=restricted)
    )
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    # A pod from the DaemonSet's template, as its controller would create it: admitted.
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(_one(docs, "ServiceAccount")))
    template = _one(docs, "DaemonSet")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "agent"},
        "spec": template["spec"],
    }
    created = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        restricted,
        "-f",
        "-",
        input=yaml.safe_dump(pod),
        check=False,
    )
    assert created.returncode == 0, created.stderr
    # The check has teeth: the same pod with a host path to the driver is refused.
    pod["spec"]["volumes"].append({"name": "dev", "hostPath": {"path": "/dev"}})
    refused = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        restricted,
        "-f",
        "-",
        input=yaml.safe_dump(pod),
        check=False,
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr

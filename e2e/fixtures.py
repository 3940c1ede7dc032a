"""Building blocks of the end-to-end suite and of ``make demo``: a fake GPU cluster on a real API
server, the Helm chart installed from ``charts/shorthop``, and the operator run as a local process
that authenticates as the chart's ServiceAccount (so the chart's RBAC is what the operator gets).

No container image can run here: the chart is installed with a ``nodeSelector`` that matches no
node, so its own operator pods stay Pending, and ``shorthop run`` runs next to the test instead,
with the chart's rendered ``config.yaml`` and a token of the chart's ServiceAccount.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from shorthop.topology import fake

from tests import kube
from tests import operator_harness as oh

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "shorthop"
EXAMPLES = ROOT / "docs" / "examples"
CRD = ROOT / "crds" / "inferencedeployments.shorthop.io.yaml"

# Two GB200 NVL72 racks (one NVLink domain, gpu.clique, each), two rail-optimised scalable units
# of HGX H100 nodes, and a few L40S PCIe nodes: 36 x 4 + 16 x 8 + 4 x 4 = 288 GPUs.
SHAPE = fake.ClusterShape(
    nvl72_racks=2, trays_per_rack=18, hgx_units=2, nodes_per_unit=8, l40s_nodes=4
)
# GPUs taken by other workloads before shorthop arrives (about 50 of 288), by node name suffix:
# one tray of the first NVL72 rack and half of the second (which then has 9 whole trays free, too
# few for the 12 trays of the DeepSeek example), one H100 node of the first scalable unit and half
# of the second, and two L40S nodes. Both examples, a scale-up and a repair still fit.
BACKGROUND_NODES = (
    "nvl72-r0-t17",
    *(f"nvl72-r1-t{t:02d}" for t in range(9)),
    "h100-su0-n07",
    *(f"h100-su1-n{n:02d}" for n in range(4)),
    "l40s-n00",
    "l40s-n01",
)
BACKGROUND_OCCUPANCY = 0.5
CLIQUE = "nvidia.com/gpu.clique"
# Keeps the chart's own operator pods Pending: no node has this label.
NOWHERE = {"shorthop.io/e2e": "nowhere"}


# -- Helm ---------------------------------------------------------------------------------------


def helm_binary(major: int | None = None) -> str | None:
    """The helm of ``major`` (default: the newest) built into the control-plane cache, else the
    one on PATH."""
    try:
        from e2e.controlplane import components

        built = components.helm_path(major or components.DEFAULT_HELM_MAJOR)
        if built.exists():
            return str(built)
    except ImportError:
        pass
    return shutil.which("helm")


@dataclass(frozen=True)
class Helm:
    """helm against one cluster, with its own cache/config/data homes (nothing in ~)."""

    binary: str
    kubeconfig: Path
    home: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [self.binary, *args, f"--kubeconfig={self.kubeconfig}"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=180,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
        return result


def install_chart(helm: Helm, release: str, namespace: str, *extra: str) -> str:
    """``helm upgrade --install`` the chart with its operator pods kept Pending; its output."""
    return helm(
        "upgrade", "--install", release, str(CHART),
        "--namespace", namespace, "--create-namespace",
        "--set-json", f"nodeSelector={json.dumps(NOWHERE)}",
        "--set", "schedulerName=shorthop",
        *extra,
    ).stdout  # fmt: skip


def fullname(release: str) -> str:
    """The chart's resource-name prefix for a release (see _helpers.tpl)."""
    return release if "shorthop" in release else f"{release}-shorthop"


def chart_config(cluster: kube.Cluster, release: str, namespace: str) -> str:
    """The operator settings file the chart rendered into its ConfigMap."""
    cm = cluster.core.read_namespaced_config_map(f"{fullname(release)}-config", namespace)
    text: str = cm.data["config.yaml"]
    return text


def service_account_kubeconfig(
    cluster: kube.Cluster, namespace: str, account: str, path: Path, *, duration: str = "1h"
) -> Path:
    """A kubeconfig that authenticates as ``namespace/account`` with a TokenRequest token, for
    the server and CA of the cluster's own kubeconfig."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    view = json.loads(
        cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout
    )
    server = view["clusters"][0]["cluster"]
    keep = ("server", "certificate-authority-data", "tls-server-name", "insecure-skip-tls-verify")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {k: server[k] for k in keep if k in server}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "cluster", "user": account}}],
        "current-context": account,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


# -- the fake GPU cluster -----------------------------------------------------------------------


@dataclass
class GpuCluster:
    """Fake GPU nodes (kwok keeps them Ready) and the background pods occupying some GPUs."""

    nodes: list[dict[str, Any]]
    background: list[dict[str, Any]]
    background_namespace: str
    pool: str | None = None

    @property
    def names(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.nodes]

    @property
    def labels(self) -> dict[str, dict[str, str]]:
        return {n["metadata"]["name"]: n["metadata"]["labels"] for n in self.nodes}

    def clique(self, node: str) -> str | None:
        return self.labels[node].get(CLIQUE)

    def product(self, node: str) -> str:
        return self.labels[node]["nvidia.com/gpu.product"]

    def background_gpus(self) -> int:
        return sum(
            int(c["resources"]["limits"]["nvidia.com/gpu"])
            for p in self.background
            for c in p["spec"]["containers"]
        )

    def toleration(self) -> list[dict[str, str]]:
        """What a pod template needs to use these nodes (nothing when they are untainted)."""
        if self.pool is None:
            return []
        return [
            {"key": oh.POOL_TAINT, "operator": "Equal", "value": self.pool, "effect": "NoSchedule"}
        ]


def gpu_cluster(
    *, pool: str | None, background_namespace: str, shape: fake.ClusterShape = SHAPE
) -> GpuCluster:
    """The manifests. With a ``pool``, node names, domain labels and a NoSchedule taint are made
    unique to it (tests that share a cluster cannot use each other's nodes)."""
    nodes = oh.pool_nodes(pool, shape) if pool else fake.nodes(shape, seed=7)
    suffix = (lambda name: name.removeprefix(f"{pool}-")) if pool else (lambda name: name)
    busy = [n for n in nodes if suffix(n["metadata"]["name"]) in BACKGROUND_NODES]
    pods = fake.background_pods(busy, BACKGROUND_OCCUPANCY, seed=11, namespace=background_namespace)
    for pod in pods:
        pod.pop("status", None)  # the API server ignores it; kwok reports Running
        if pool:
            pod["spec"]["tolerations"] = [
                {"key": oh.POOL_TAINT, "operator": "Exists", "effect": "NoSchedule"}
            ]
    return GpuCluster(nodes, pods, background_namespace, pool)


def create_gpu_cluster(cluster: kube.Cluster, gpus: GpuCluster, *, timeout: float = 90) -> None:
    """Apply the nodes and the background pods (bound by ``spec.nodeName``, run by kwok)."""
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(fake.as_list(gpus.nodes)))
    oh.ensure_namespace(cluster, gpus.background_namespace)
    if gpus.background:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(fake.as_list(gpus.background)))
    names = set(gpus.names)

    def ready() -> bool:
        listed = cluster.core.list_node().items
        up = {
            n.metadata.name
            for n in listed
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        }
        running = {
            p.metadata.name
            for p in cluster.core.list_namespaced_pod(gpus.background_namespace).items
            if p.status.phase == "Running"
        }
        return names <= up and len(running) >= len(gpus.background)

    kube.wait_for("the fake GPU nodes Ready and background pods Running", ready, timeout=timeout)


def delete_namespace(cluster: kube.Cluster, namespace: str) -> None:
    """Delete a namespace, its pods at once: a pod whose fake node is deleted next would never
    finish a graceful deletion (kwok no longer answers for it)."""
    with contextlib.suppress(client.ApiException):
        cluster.core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    with contextlib.suppress(client.ApiException):
        cluster.core.delete_namespace(namespace)


def delete_gpu_cluster(cluster: kube.Cluster, gpus: GpuCluster) -> None:
    """Delete the background pods and namespace, then the nodes (some may be gone already)."""
    delete_namespace(cluster, gpus.background_namespace)
    for name in gpus.names:
        with contextlib.suppress(client.ApiException):
            cluster.core.delete_node(name)


# -- InferenceDeployments -----------------------------------------------------------------------


def example(name: str) -> dict[str, Any]:
    """One manifest of docs/examples, as a user would ``kubectl apply -f`` it."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def retarget(
    doc: Mapping[str, Any], namespace: str, tolerations: Iterable[Mapping[str, str]] = ()
) -> dict[str, Any]:
    """The manifest moved into ``namespace``, each role's pods tolerating ``tolerations``."""
    out = copy.deepcopy(dict(doc))
    out["metadata"]["namespace"] = namespace
    for role in out["spec"]["roles"]:
        spec = role.setdefault("template", {}).setdefault("spec", {})
        spec["tolerations"] = [*spec.get("tolerations", []), *map(dict, tolerations)]
    return out


def pod_gpus(pod: client.V1Pod) -> list[int]:
    return [int(g) for g in pod.metadata.annotations["shorthop.io/gpus"].split(",")]


@dataclass
class Operator:
    """The operator process plus what it runs as."""

    process: oh.OperatorProcess
    kubeconfig: Path
    account: str
    namespace: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"


def start_operator(
    cluster: kube.Cluster,
    release: str,
    namespace: str,
    workdir: Path,
    *,
    identity: str,
    token_duration: str = "1h",
) -> Operator:
    """``shorthop run`` with the chart's config.yaml, as the chart's ServiceAccount."""
    account = fullname(release)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(chart_config(cluster, release, namespace))
    kubeconfig = service_account_kubeconfig(
        cluster, namespace, account, workdir / "operator.kubeconfig", duration=token_duration
    )
    process = oh.OperatorProcess(kubeconfig, workdir, identity=identity, config_file=config)
    process.start()
    return Operator(process, kubeconfig, account, namespace)


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """One sample of a Prometheus text exposition (None when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted((labels or {}).items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if got == want:
            return float(value)
    return None

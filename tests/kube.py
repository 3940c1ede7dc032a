"""Helpers for tests that talk to a real apiserver: clients, kubectl, polling, fake GPU nodes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config

KUBECONFIG_ENV = "SHORTHOP_TEST_KUBECONFIG"
T = TypeVar("T")


@dataclass
class Cluster:
    """What a test gets from the ``cluster`` fixture."""

    kubeconfig: Path
    local: Any  # e2e.controlplane.cluster.LocalCluster, or None for an external cluster
    _api: client.ApiClient | None = field(default=None, repr=False)

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with ``check`` a failure shows kubectl's stderr."""
        result = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def wait_established(self, crd: str, *, timeout: float = 60.0) -> None:
        """Wait until the CRD's Established condition is True. (``kubectl wait`` fails at once,
        rather than waiting, when it reads the CRD before its conditions exist.)"""
        query = '{.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            found = self.kubectl("get", "crd", crd, "-o", f"jsonpath={query}", check=False)
            return found.returncode == 0 and found.stdout.strip() == "True"

        wait_for(f"CRD {crd} to be Established", established, timeout=timeout)

    @contextmanager
    def namespace(self, prefix: str = "t") -> Iterator[str]:
        """A fresh namespace, deleted afterwards (without waiting for finalisation)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            self.core.delete_namespace(name)


def kubectl_binary() -> str:
    try:
        from e2e.controlplane import components

        built = components.binary_path("kubectl")
        if built.exists():
            return str(built)
    except ImportError:
        pass
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("no kubectl: run `make controlplane` or put kubectl on PATH")
    return found


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def bind_pod(core: client.CoreV1Api, namespace: str, pod: str, node: str) -> int:
    """Create a pods/binding; return the HTTP status. The body is not deserialised: the apiserver
    answers with a Status, which some client versions fail to parse as a V1Binding."""
    body = client.V1Binding(
        metadata=client.V1ObjectMeta(name=pod),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
    )
    response = core.create_namespaced_pod_binding(pod, namespace, body, _preload_content=False)
    status: int = response.status
    json.loads(response.data or b"{}")
    return status


def fake_gpu_node(
    name: str, *, gpus: int = 8, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Node kwok manages, with GPU Feature Discovery labels and ``nvidia.com/gpu`` capacity."""
    resources = {"cpu": "96", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.family": "hopper",
                **(labels or {}),
            },
        },
        "status": {"capacity": resources, "allocatable": resources},
    }

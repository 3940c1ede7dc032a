"""Run the real operator (``shorthop run``) as a process against a test cluster (or one visit of
its reconciler in this process, :func:`visit_once`), and build the fake GPU node pools and
InferenceDeployments the integration and e2e tests use."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes import client
from shorthop.topology import fake

from tests import kube

if TYPE_CHECKING:
    from shorthop.controller.faults import Faults

POOL_TAINT = "shorthop.test/pool"
CLIQUE = "nvidia.com/gpu.clique"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    """One ``shorthop run`` process; stopped by pid."""

    kubeconfig: Path
    workdir: Path
    identity: str = "op-a"
    lease_namespace: str = "shorthop-system"
    # The operator's own defaults (15 s, renewed every 2 s, given up after 10 s without a
    # renewal): a test that is not about leadership must not lose it because the machine is
    # busy. Tests of fail-over wait for the lease to expire (about 15 s).
    lease_duration: float = 15.0
    namespaces: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    health_port: int = 0
    # A settings file to run with as it is (e.g. the chart's rendered config.yaml); only the
    # ports and the identity are overridden, by flags. None: write a test configuration.
    config_file: Path | None = None

    def start(self) -> OperatorProcess:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config_file is not None:
            path = self.config_file
            flags = [
                f"--metrics-port={self.metrics_port}",
                f"--health-port={self.health_port}",
                f"--identity={self.identity}",
            ]
        else:
            path, flags = self._write_config(), []
        log = (self.workdir / f"{self.identity}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shorthop.cli",
                "run",
                "--config",
                str(path),
                "--kubeconfig",
                str(self.kubeconfig),
                *flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        return self

    def _write_config(self) -> Path:
        config = {
            "topology": {"preset": "plain"},
            "schedulerName": "shorthop",
            "namespaces": list(self.namespaces),
            "metricsPort": self.metrics_port,
            "healthPort": self.health_port,
            "leaseName": "shorthop-leader",
            "leaseNamespace": self.lease_namespace,
            "identity": self.identity,
            "logFormat": "text",
            "leaseDurationSeconds": self.lease_duration,
        }
        path = self.workdir / f"{self.identity}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    @property
    def log(self) -> str:
        return (self.workdir / f"{self.identity}.log").read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """The exit status (negative: the signal that ended it); None while it runs."""
        return None if self.proc is None else self.proc.poll()

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to end by itself; its exit status, or None if it still runs
        after ``timeout`` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode())

    def metrics(self) -> str:
        return self.get(self.metrics_port, "/metrics")

    def leading(self) -> bool:
        with contextlib.suppress(OSError):
            return "shorthop_leader 1.0" in self.metrics()
        return False

    def wait_leading(self, timeout: float = 60.0) -> None:
        kube.wait_for(
            f"{self.identity} to lead", lambda: self.leading() or self._dead(), timeout=timeout
        )
        assert self.alive(), self.log[-3000:]

    def _dead(self) -> bool:
        if not self.alive():
            raise AssertionError(f"operator {self.identity} exited:\n{self.log[-3000:]}")
        return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def ensure_namespace(cluster: kube.Cluster, name: str) -> None:
    """The namespace, made if missing, once pods can be created in it."""
    with contextlib.suppress(client.ApiException):
        cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    cluster.wait_default_service_account(name)


@contextlib.contextmanager
def leading_operator(
    cluster: kube.Cluster, workdir: Path, prefix: str
) -> Iterator[OperatorProcess]:
    """A real operator (identity ``<prefix>-<random>``) that holds the lease; stopped on exit."""
    ensure_namespace(cluster, "shorthop-system")
    op = OperatorProcess(
        cluster.kubeconfig, workdir, identity=f"{prefix}-{uuid.uuid4().hex[:4]}"
    ).start()
    try:
        op.wait_leading()
        yield op
    finally:
        op.stop()


def pool_nodes(pool: str, shape: fake.ClusterShape, *, taint: bool = True) -> list[dict[str, Any]]:
    """Fake GPU nodes of ``shape`` named and labelled for one test (``<pool>-...``), tainted so
    only deployments that tolerate the pool use them."""
    nodes = fake.nodes(shape, seed=abs(hash(pool)) % 10_000)
    for node in nodes:
        meta = node["metadata"]
        meta["name"] = f"{pool}-{meta['name']}"
        node_labels = meta["labels"]
        node_labels["kubernetes.io/hostname"] = meta["name"]
        for key in (
            CLIQUE,
            "topology.kubernetes.io/zone",
            "topology.shorthop.io/block",
            "topology.shorthop.io/rack",
        ):
            if key in node_labels:
                node_labels[key] = f"{pool}.{node_labels[key]}"
        if taint:
            node["spec"]["taints"] = [{"key": POOL_TAINT, "value": pool, "effect": "NoSchedule"}]
    return nodes


@contextlib.contextmanager
def node_pool(
    cluster: kube.Cluster,
    shape: fake.ClusterShape | tuple[fake.ClusterShape, ...],
    *,
    prefix: str = "p",
    operator: OperatorProcess | None = None,
    prepare: Callable[[list[dict[str, Any]]], None] | None = None,
) -> Iterator[tuple[str, list[str]]]:
    """Nodes of ``shape`` (or of several shapes, e.g. one per GPU product) made for one test,
    entered once they are Ready and rid of the lifecycle's not-ready taint (a visit or a count
    in a reason made before that would see no node to offer).

    With ``operator``, entered only once that operator's model has every NVLink domain of the
    pool whole: a deployment applied at once would otherwise race the node watch and be
    planned on part of a rack (correct for what it saw, not what the test expects).
    ``prepare`` may change the node objects before they are made."""
    pool = f"{prefix}{uuid.uuid4().hex[:5]}"
    shapes = shape if isinstance(shape, tuple) else (shape,)
    nodes = [n for s in shapes for n in pool_nodes(pool, s)]
    # Multi-node NVLink domains last: the apply creates the list in order and the operator's
    # node watch delivers it in order, so once it counts those domains whole it has them all.
    nodes.sort(key=lambda n: CLIQUE in n["metadata"]["labels"])
    if prepare is not None:
        prepare(nodes)  # e.g. more allocatable resources, before the nodes exist
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(fake.as_list(nodes)))
    names = [n["metadata"]["name"] for n in nodes]
    try:
        kube.wait_schedulable(cluster, names)
        if operator is not None:
            wait_domains_seen(operator, nodes)
        yield pool, names
    finally:
        for name in names:
            with contextlib.suppress(client.ApiException):
                cluster.core.delete_node(name)


def gauge(text: str, name: str, domain: str) -> float | None:
    """The value of gauge ``name`` for NVLink domain ``domain`` in a metrics page, if listed."""
    for line in text.splitlines():
        if line.startswith(f'{name}{{nvlink_domain="{domain}"}} '):
            return float(line.split()[-1])
    return None


def wait_domains_seen(operator: OperatorProcess, nodes: list[dict[str, Any]]) -> None:
    """Until ``operator`` reports every multi-node NVLink domain of ``nodes`` with all its GPUs
    free (the pool is new, so nothing of it is allocated yet)."""
    expected: dict[str, int] = {}
    for node in nodes:
        node_labels = node["metadata"]["labels"]
        if CLIQUE in node_labels:
            gpus = int(node_labels["nvidia.com/gpu.count"])
            expected[node_labels[CLIQUE]] = expected.get(node_labels[CLIQUE], 0) + gpus

    def seen() -> bool:
        text = operator.metrics()
        return all(gauge(text, "shorthop_free_gpus", d) == n for d, n in expected.items())

    kube.wait_for(f"{operator.identity} to see {sorted(expected)}", seen, timeout=60)


def deployment(
    name: str, namespace: str, pool: str | None, roles: list[tuple[str, int, int, int]], **spec: Any
) -> dict[str, Any]:
    """An InferenceDeployment; roles are (name, replicas, gpusPerReplica, gpusPerPod)."""
    tolerations = (
        [{"key": POOL_TAINT, "operator": "Equal", "value": pool, "effect": "NoSchedule"}]
        if pool
        else []
    )
    return {
        "apiVersion": "shorthop.io/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "roles": [
                {
                    "name": role,
                    "replicas": replicas,
                    "gpusPerReplica": per_replica,
                    "gpusPerPod": per_pod,
                    "template": {
                        "spec": {
                            "containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0"}],
                            "tolerations": tolerations,
                        }
                    },
                }
                for role, replicas, per_replica, per_pod in roles
            ],
            **spec,
        },
    }


def get_infd(cluster: kube.Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "shorthop.io", "v1alpha1", namespace, "inferencedeployments", name
        )
    )


def phase(cluster: kube.Cluster, namespace: str, name: str) -> str | None:
    return (get_infd(cluster, namespace, name).get("status") or {}).get("phase")


def pods(cluster: kube.Cluster, namespace: str, name: str) -> list[client.V1Pod]:
    listed = cluster.core.list_namespaced_pod(
        namespace, label_selector=f"shorthop.io/deployment={name}"
    ).items
    return sorted(listed, key=lambda p: p.metadata.name)


def events(cluster: kube.Cluster, namespace: str, name: str) -> list[client.CoreV1Event]:
    return [
        e
        for e in cluster.core.list_namespaced_event(namespace).items
        if e.involved_object.kind == "InferenceDeployment" and e.involved_object.name == name
    ]


def wait_event(
    cluster: kube.Cluster,
    namespace: str,
    name: str,
    reason: str,
    contains: str = "",
    timeout: float = 30,
) -> None:
    """Wait for an event on the deployment; events are posted after the status they explain."""
    kube.wait_for(
        f"event {reason}",
        lambda: any(
            e.reason == reason and contains in (e.message or "")
            for e in events(cluster, namespace, name)
        ),
        timeout=timeout,
    )


def gpus_bound(cluster: kube.Cluster) -> dict[str, int]:
    """GPUs requested by active pods per node (for overcommit checks)."""
    out: dict[str, int] = {}
    for p in cluster.core.list_pod_for_all_namespaces().items:
        if not p.spec.node_name or p.status.phase in ("Succeeded", "Failed"):
            continue
        count = 0
        for c in p.spec.containers:
            limits = (c.resources.limits or {}) if c.resources else {}
            count += int(limits.get("nvidia.com/gpu", 0))
        out[p.spec.node_name] = out.get(p.spec.node_name, 0) + count
    return out


def wait_running(
    cluster: kube.Cluster, namespace: str, name: str, timeout: float = 90.0
) -> dict[str, Any]:
    kube.wait_for(
        f"{namespace}/{name} Running",
        lambda: phase(cluster, namespace, name) == "Running",
        timeout=timeout,
    )
    return get_infd(cluster, namespace, name)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]


def visit_once(
    cluster: kube.Cluster, namespace: str, name: str, *, faults: Faults | None = None
) -> None:
    """One reconcile of the deployment by the operator's reconciler, in this process, against the
    real API server, seeing the cluster as the operator's informers do (every node and pod,
    listed now). It returns when the visit is done, so what the visit wrote (or did not) is in
    the API when the caller looks: a reaction that writes nothing needs no waiting on.
    ``faults``: the reconciler's fault points (a test's subclass may act at one)."""
    from shorthop import metrics as metrics_module
    from shorthop.controller.binder import BindingSubresourceBinder
    from shorthop.controller.kube import Kube
    from shorthop.controller.live import LiveCluster
    from shorthop.controller.reconcile import Reconciler
    from shorthop.topology import levels

    core = cluster.core
    live = LiveCluster(levels.preset("plain"))  # the preset the test operators run with
    for node in json.loads(core.list_node(_preload_content=False).data)["items"]:
        live.apply_node(None, node)
    pods = core.list_pod_for_all_namespaces(_preload_content=False)
    for pod in json.loads(pods.data)["items"]:
        live.apply_pod(None, pod)
    live.synced.set()
    api = Kube(cluster.api)
    reconciler = Reconciler(
        api, live, BindingSubresourceBinder(api), metrics_module.create(), faults=faults
    )
    reconciler.deployments[f"{namespace}/{name}"] = get_infd(cluster, namespace, name)
    reconciler.reconcile(f"{namespace}/{name}")

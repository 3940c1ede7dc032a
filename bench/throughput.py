"""End-to-end throughput on a real API server: shorthop vs kube-scheduler (issue E).

A private local control plane (built from source, see e2e/controlplane) with ``nodes`` fake GPU
nodes (kwok; half GB200 NVL72 trays, half HGX H100 nodes). Two timed phases, in one run:

1. **kube-scheduler**: ``pods`` plain pods of 4 GPUs are created by a client (16 threads, as fast
   as the API takes them); the clock runs from the first create until every pod has a node.
2. **shorthop**: the operator (``shorthop run``, a local process) is running; ``pods / 8``
   InferenceDeployments of 8 pods each (4 prefill x 1 pod + 2 decode x 2 pods, 4 GPUs per pod) are
   created by a client (16 threads, as for the plain pods); the clock runs from the first create
   until every pod is bound.

Completion is seen by a pod watch in a process of its own (``BindWatch``), started before each
phase's clock. Between the phases the plain pods are deleted and the cluster returns to empty.
Both phases start from the same empty nodes. Result: pods bound per second for each, and their
ratio.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import watch
from shorthop.topology import fake

Log = Callable[[str], None]
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Throughput:
    nodes: int
    pods: int
    deployments: int
    scheduler_seconds: float
    shorthop_seconds: float
    shorthop_running_seconds: float

    @property
    def scheduler_rate(self) -> float:
        return self.pods / self.scheduler_seconds

    @property
    def shorthop_rate(self) -> float:
        return self.pods / self.shorthop_seconds

    @property
    def ratio(self) -> float:
        return self.shorthop_rate / self.scheduler_rate


def _shape(nodes: int) -> fake.ClusterShape:
    racks = max(1, nodes // 2 // 18)
    units = max(1, (nodes - racks * 18) // 31)
    return fake.ClusterShape(nvl72_racks=racks, hgx_units=units, nodes_per_unit=31)


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    from e2e.controlplane import components

    result = subprocess.run(
        [str(components.binary_path("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _wait(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic()
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def _bound(core: object, namespace: str | None, selector: str = "") -> tuple[int, int]:
    listing = (
        core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)  # type: ignore[attr-defined]
        if namespace
        else core.list_pod_for_all_namespaces(label_selector=selector, _preload_content=False)  # type: ignore[attr-defined]
    )
    items = json.loads(listing.data)["items"]
    return len(items), sum(1 for p in items if p["spec"].get("nodeName"))


def _check_bound(core: object, namespace: str, pods: int) -> None:
    found = _bound(core, namespace)
    if found != (pods, pods):
        raise RuntimeError(f"{namespace}: expected {pods} pods, all bound; found {found}")


class BindWatch:
    """Notes when ``target`` pods of a namespace have a node, from a list-and-watch in a process
    of its own.

    A watch costs the API server one encoding per pod change; listing the namespace every 0.1 s
    instead cost it more for shorthop's pods, which carry more fields. In a thread of this
    process the watch took the GIL from the 16 threads creating plain pods, slowing
    kube-scheduler's phase only; a separate process (clocks compared through CLOCK_MONOTONIC)
    observes both phases alike. A watch that ends or reports an error resumes from a new list."""

    def __init__(self, kubeconfig: Path, namespace: str, target: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_watch_main, args=(str(kubeconfig), namespace, target, child), daemon=True
        )
        self._process.start()
        if not self._conn.poll(120) or self._conn.recv() != "watching":
            self._process.kill()
            raise RuntimeError(f"the {namespace} pod watch did not start")

    def wait(self, what: str, timeout: float) -> float:
        try:
            if not self._conn.poll(timeout):
                raise RuntimeError(f"timed out waiting for {what}")
            return float(self._conn.recv())
        finally:
            self._process.kill()
            self._process.join(10)


def _watch_main(kubeconfig: str, namespace: str, target: int, conn: Any) -> None:
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    bound: set[str] = set()

    def listed() -> str:
        data = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)
        bound.clear()
        bound.update(p["metadata"]["name"] for p in data["items"] if p["spec"].get("nodeName"))
        return str(data["metadata"]["resourceVersion"])

    version = listed()
    conn.send("watching")
    while len(bound) < target:
        try:
            for event in watch.Watch().stream(
                core.list_namespaced_pod,
                namespace,
                resource_version=version,
                timeout_seconds=60,
                deserialize=False,
            ):
                pod = event.get("object") or {}  # deserialize=False: the raw dict
                if event.get("type") == "ERROR":
                    print(f"throughput: watch error: {pod.get('message')}", file=sys.stderr)
                    break
                version = str(pod["metadata"]["resourceVersion"])
                name = str(pod["metadata"]["name"])
                if event.get("type") != "DELETED" and pod["spec"].get("nodeName"):
                    bound.add(name)
                else:
                    bound.discard(name)
                if len(bound) >= target:
                    break
        except Exception as exc:  # a dropped watch: list again
            print(f"throughput: watch ended ({exc}); listing again", file=sys.stderr)
        if len(bound) < target:
            version = listed()
    conn.send(time.monotonic())


def deployment(name: str, namespace: str) -> dict[str, object]:
    template = {"spec": {"containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0"}]}}
    return {
        "apiVersion": "shorthop.io/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "roles": [
                {"name": "prefill", "replicas": 4, "gpusPerReplica": 4, "template": template},
                {
                    "name": "decode",
                    "replicas": 2,
                    "gpusPerReplica": 8,
                    "gpusPerPod": 4,
                    "template": template,
                },
            ]
        },
    }


def run(nodes: int = 1000, pods: int = 512, *, log: Log = print) -> Throughput:
    from kubernetes import client, config

    from e2e.controlplane import cluster as controlplane
    from tests import operator_harness as oh

    with tempfile.TemporaryDirectory(prefix="shorthop-throughput-") as tmp:
        local = controlplane.LocalCluster(Path(tmp) / "cluster", tie_to_parent=True)
        local.up()
        operator: oh.OperatorProcess | None = None
        try:
            kubeconfig = local.kubeconfig
            api = config.new_client_from_config(config_file=str(kubeconfig))
            api.configuration.connection_pool_maxsize = 32
            core = client.CoreV1Api(api)
            _kubectl(kubeconfig, "apply", "--server-side", "-f", str(REPO / "crds"))
            node_objects = fake.nodes(_shape(nodes))
            log(f"throughput: creating {len(node_objects)} fake GPU nodes")
            for start in range(0, len(node_objects), 250):
                _kubectl(
                    kubeconfig,
                    "apply",
                    "-f",
                    "-",
                    stdin=yaml.safe_dump(fake.as_list(node_objects[start : start + 250])),
                )
            for ns in ("plain", "shorthop", "shorthop-system"):
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

            def accounts() -> bool:
                return all(
                    any(
                        sa.metadata.name == "default"
                        for sa in core.list_namespaced_service_account(ns).items
                    )
                    for ns in ("plain", "shorthop")
                )

            _wait("the default service accounts", accounts, 60)
            _wait("kwok to mark nodes Ready", lambda: sum(
                1 for n in core.list_node().items
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            ) == len(node_objects), 120, 1.0)  # fmt: skip

            # Phase 1: kube-scheduler binds plain GPU pods.
            def plain(i: int) -> None:
                container = {
                    "name": "c",
                    "image": "registry.invalid/x:1",
                    "resources": {"limits": {"nvidia.com/gpu": "4"}},
                }
                body = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"plain-{i}", "labels": {"bench": "plain"}},
                    "spec": {"containers": [container]},
                }
                core.create_namespaced_pod("plain", body)

            log(f"throughput: kube-scheduler binding {pods} plain pods")
            watcher = BindWatch(kubeconfig, "plain", pods)
            started = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(plain, range(pods)))
            scheduler_s = watcher.wait("kube-scheduler to bind every pod", 600) - started
            _check_bound(core, "plain", pods)
            log(f"throughput: kube-scheduler {pods} pods in {scheduler_s:.2f}s")
            core.delete_collection_namespaced_pod("plain", grace_period_seconds=0)
            _wait("the plain pods to be gone", lambda: _bound(core, "plain")[0] == 0, 300, 0.5)

            # Phase 2: shorthop places deployments of 8 pods.
            operator = oh.OperatorProcess(
                kubeconfig, Path(tmp) / "operator", identity="bench"
            ).start()
            operator.wait_leading(timeout=120)
            count = pods // 8
            docs = fake.as_list(deployment(f"infd-{i:03d}", "shorthop") for i in range(count))
            log(f"throughput: shorthop placing {count} deployments ({count * 8} pods)")
            custom = client.CustomObjectsApi(api)

            def create(doc: dict[str, object]) -> None:
                custom.create_namespaced_custom_object(
                    "shorthop.io", "v1alpha1", "shorthop", "inferencedeployments", doc
                )

            watcher = BindWatch(kubeconfig, "shorthop", count * 8)
            started = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, docs["items"]))
            log(f"throughput: {count} deployments created in {time.monotonic() - started:.2f}s")
            shorthop_s = watcher.wait("shorthop to bind every pod", 900) - started
            _check_bound(core, "shorthop", count * 8)

            def running() -> bool:
                items = json.loads(
                    core.list_namespaced_pod("shorthop", _preload_content=False).data
                )["items"]
                return len(items) == count * 8 and all(
                    p.get("status", {}).get("phase") == "Running" for p in items
                )

            running_s = _wait("every pod Running", running, 300) - started
            samples = dict(
                line.rsplit(" ", 1)
                for line in operator.metrics().splitlines()
                if line.startswith("shorthop_placement_latency_seconds_")
            )
            plans = float(samples.get("shorthop_placement_latency_seconds_count", 0))
            planning = float(samples.get("shorthop_placement_latency_seconds_sum", 0))
            log(f"throughput: {plans:.0f} plans took {planning:.2f}s of planning in all")
            log(f"throughput: shorthop {count * 8} pods in {shorthop_s:.2f}s")
            return Throughput(
                len(node_objects), count * 8, count, scheduler_s, shorthop_s, running_s
            )
        finally:
            if operator is not None:
                operator.stop()
            local.down()


if __name__ == "__main__":
    result = run(*(int(a) for a in sys.argv[1:3]))
    print(
        f"nodes={result.nodes} pods={result.pods} "
        f"kube-scheduler={result.scheduler_rate:.1f} pods/s "
        f"shorthop={result.shorthop_rate:.1f} pods/s ratio={result.ratio:.2f}"
    )

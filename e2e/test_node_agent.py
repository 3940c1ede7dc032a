"""End to end with the node agent: one ``shorthop node-agent`` process per fake GPU node, as the
DaemonSet runs it (``--node``, a kubeconfig, running until stopped), each reading a fake NVML
recorded from an ``nvidia-smi topo -m`` capture; the operator then places on the exact matrices
they publish.

- A PCIe node with 8 GPUs whose PCIe switches pair GPUs 0+4, 1+5 (socket 0) and 2+6, 3+7
  (socket 1), as PCI numbering interleaves on some boards: each 2-GPU replica lands on one switch,
  prefill and decode on one socket. The product preset alone knows no switches (every pair is
  "across sockets" to it) and would take GPUs 0+1, which cross switches.
- The real RTX A6000 capture (GPU0+GPU1 joined by an NVLink bridge, GPU2 apart): the 2-GPU
  decode replica lands on the bridged pair, the 1-GPU prefill on GPU2.

The fake NVML is the agent's test-only ``--fake-nvml`` option (refused inside a pod).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from shorthop.agent import fakenvml
from shorthop.topology import hardware, labels, links, smi

from tests import kube
from tests import operator_harness as oh

pytestmark = pytest.mark.cluster

CAPTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nvidia-smi"
PCIE8 = CAPTURES / "synthetic" / "pcie8_interleaved_switches.txt"
A6000 = CAPTURES / "real" / "rtxa6000x3_nvlink_bridge_pair_ansi.txt"
WEIGHTS = links.Weights()


@dataclass
class AgentProcess:
    node: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def _start_agent(
    kubeconfig: Path, node: str, capture: Path, product: str, workdir: Path
) -> AgentProcess:
    recording = fakenvml.recording_from_matrix(smi.parse(capture.read_text()), name=product)
    path = workdir / f"{node}.nvml.json"
    path.write_text(json.dumps(recording))
    log = workdir / f"{node}.log"
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shorthop.cli", "node-agent", "--kubeconfig", str(kubeconfig),
             "--node", node, "--fake-nvml", str(path), "--interval", "3600"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
    return AgentProcess(node, proc, log)


def _node(name: str, gpus: int, product: str, pool: str) -> dict[str, Any]:
    node = kube.fake_gpu_node(name, gpus=gpus, labels={"nvidia.com/gpu.product": product})
    node["metadata"]["labels"]["nvidia.com/gpu.family"] = "ada-lovelace"
    node["spec"] = {"taints": [{"key": oh.POOL_TAINT, "value": pool, "effect": "NoSchedule"}]}
    return node


@dataclass
class Scene:
    cluster: kube.Cluster
    namespace: str
    pcie: str
    bridged: str
    pools: dict[str, str]  # node -> pool
    agents: list[AgentProcess]
    operator: oh.OperatorProcess


@pytest.fixture(scope="module")
def scene(
    cluster: kube.Cluster, infd_crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scene]:
    tag = uuid.uuid4().hex[:5]
    workdir = tmp_path_factory.mktemp("agents")
    pcie, bridged = f"agent{tag}-pcie8", f"agent{tag}-a6000"
    pools = {pcie: f"agent{tag}a", bridged: f"agent{tag}b"}
    nodes = [
        _node(pcie, 8, "NVIDIA-L40S", pools[pcie]),
        _node(bridged, 3, "NVIDIA-RTX-A6000", pools[bridged]),
    ]
    namespace, home = f"agent-{tag}", f"agent-{tag}-system"
    agents: list[AgentProcess] = []
    operator: oh.OperatorProcess | None = None
    try:
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": nodes}),
        )
        for ns in (namespace, home):
            oh.ensure_namespace(cluster, ns)
        agents = [
            _start_agent(cluster.kubeconfig, pcie, PCIE8, "NVIDIA L40S", workdir),
            _start_agent(cluster.kubeconfig, bridged, A6000, "NVIDIA RTX A6000", workdir),
        ]
        operator = oh.OperatorProcess(
            cluster.kubeconfig,
            workdir,
            identity=f"agent-{tag}",
            lease_namespace=home,
            namespaces=(namespace,),
        ).start()
        operator.wait_leading()
        yield Scene(cluster, namespace, pcie, bridged, pools, agents, operator)
    finally:
        if operator is not None:
            operator.stop()
        for agent in agents:
            agent.stop()
        for ns in (namespace, home):
            cluster.kubectl(
                "delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False
            )
        for node in nodes:
            cluster.kubectl(
                "delete", "node", node["metadata"]["name"], "--ignore-not-found", check=False
            )


def _published(s: Scene, node: str) -> dict[str, str] | None:
    annotations = s.cluster.core.read_node(node).metadata.annotations or {}
    if labels.SMI_ANNOTATION in annotations and labels.TOPOLOGY_ANNOTATION in annotations:
        return dict(annotations)
    return None


def test_each_agent_publishes_its_nodes_matrix(scene: Scene) -> None:
    for node, capture in ((scene.pcie, PCIE8), (scene.bridged, A6000)):
        agent = next(a for a in scene.agents if a.node == node)
        annotations = kube.wait_for(
            f"{node}'s topology annotations",
            lambda node=node, agent=agent: _published(scene, node) or _alive(agent),  # type: ignore[misc]
            timeout=60,
        )
        expected = smi.parse(capture.read_text())
        assert smi.parse(annotations[labels.SMI_ANNOTATION]).links_equal(expected)
        structured = hardware.decode(annotations[labels.TOPOLOGY_ANNOTATION])
        assert structured.matrix.links_equal(expected)
        assert structured.source == "fake-nvml"
        assert all(u and u.startswith("GPU-") for u in structured.uuids)
        assert "annotated" in agent.log.read_text()


def _alive(agent: AgentProcess) -> None:
    if agent.proc.poll() is not None:
        raise AssertionError(f"agent for {agent.node} exited:\n{agent.log.read_text()[-3000:]}")


def _deploy(
    s: Scene, name: str, node: str, roles: list[tuple[str, int, int, int]]
) -> dict[str, Any]:
    doc = oh.deployment(name, s.namespace, s.pools[node], roles)
    s.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    try:
        return oh.wait_running(s.cluster, s.namespace, name, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\noperator log:\n{s.operator.log[-3000:]}") from None


def _gpus(s: Scene, name: str) -> dict[str, list[int]]:
    return {
        p.metadata.labels["shorthop.io/role"]: sorted(
            int(g) for g in p.metadata.annotations["shorthop.io/gpus"].split(",")
        )
        for p in oh.pods(s.cluster, s.namespace, name)
    }


def test_on_the_pcie_node_each_replica_sits_under_one_pcie_switch_on_one_socket(
    scene: Scene,
) -> None:
    test_each_agent_publishes_its_nodes_matrix(scene)
    status = _deploy(scene, "pcie", scene.pcie, [("prefill", 1, 2, 2), ("decode", 1, 2, 2)])[
        "status"
    ]
    placed = _gpus(scene, "pcie")
    switches = ({0, 4}, {1, 5}, {2, 6}, {3, 7})
    sockets = ({0, 1, 4, 5}, {2, 3, 6, 7})
    for role, gpus in placed.items():
        assert set(gpus) in switches, f"{role} on GPUs {gpus}: not one PCIe switch"
    assert any(set(placed["prefill"]) | set(placed["decode"]) <= socket for socket in sockets), (
        placed
    )
    assert {r["node"] for r in (pod for rep in status["replicas"] for pod in rep["pods"])} == {
        scene.pcie
    }
    # One PIX pair per replica: the exact matrix, not the preset's "every pair across sockets".
    assert status["cost"]["intraReplica"] == pytest.approx(2 * WEIGHTS.pix)


def test_on_the_nvlink_bridge_node_decode_gets_the_bridged_pair(scene: Scene) -> None:
    test_each_agent_publishes_its_nodes_matrix(scene)
    status = _deploy(scene, "bridged", scene.bridged, [("prefill", 1, 1, 1), ("decode", 1, 2, 2)])[
        "status"
    ]
    assert _gpus(scene, "bridged") == {"decode": [0, 1], "prefill": [2]}
    assert status["cost"]["intraReplica"] == pytest.approx(WEIGHTS.nvlink)


def test_agents_run_until_stopped_and_stop_cleanly(scene: Scene) -> None:
    for agent in scene.agents:
        _alive(agent)
    for agent in scene.agents:
        assert agent.stop() == 0, agent.log.read_text()[-2000:]


def test_a_node_whose_gpus_cannot_be_read_gets_a_warning_event_and_the_agent_stays_up(
    scene: Scene, tmp_path: Path
) -> None:
    name = f"{scene.pcie}-broken"
    scene.cluster.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump(_node(name, 8, "NVIDIA-L40S", "none"))
    )
    recording = tmp_path / "broken.json"
    recording.write_text(
        json.dumps({"init": "ERR NVMLError_DriverNotLoaded: Driver Not Loaded", "gpus": []})
    )
    log = tmp_path / "broken.log"
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    command = [
        *(sys.executable, "-m", "shorthop.cli", "node-agent", "--node", name),
        *("--kubeconfig", str(scene.cluster.kubeconfig), "--fake-nvml", str(recording)),
        *("--nvidia-smi", str(tmp_path / "no-nvidia-smi"), "--backoff-max", "5"),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    agent = AgentProcess(name, proc, log)
    try:

        def warned() -> Any:
            _alive(agent)
            events = scene.cluster.core.list_namespaced_event(
                "default", field_selector=f"involvedObject.kind=Node,involvedObject.name={name}"
            ).items
            return [e for e in events if e.reason == "GPUTopologyUnreadable"]

        (event,) = kube.wait_for(f"a Warning event on {name}", warned, timeout=60)
        assert event.type == "Warning"
        assert "Driver Not Loaded" in event.message
        assert "no-nvidia-smi topo -m" in event.message
        node_uid = scene.cluster.core.read_node(name).metadata.uid
        assert event.involved_object.uid == node_uid  # so `kubectl describe node` shows it
        # It keeps retrying (backing off) instead of exiting: two more failed rounds, still alive.
        kube.wait_for(
            "two retries",
            lambda: log.read_text().count("retrying in") >= 3 or _alive(agent),
            timeout=60,
        )
        _alive(agent)
        assert len(warned()) == 1, "the same failure is reported once, not every round"
        described = scene.cluster.kubectl("describe", "node", name).stdout
        assert "GPUTopologyUnreadable" in described
    finally:
        agent.stop()
        scene.cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)

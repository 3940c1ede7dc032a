"""The agent's loop: annotate only on change, warn once per distinct failure, back off, never
raise; and what its health endpoints say."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from shorthop.agent import fakenvml, publisher, reader
from shorthop.agent.kube import AgentKubeError
from shorthop.agent.sysfs import Sysfs
from shorthop.topology import labels, smi

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nvidia-smi"


class FakeNode:
    """The Node as the API holds it, and every call made."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"other": "kept"}
        self.patches: list[dict[str, str]] = []
        self.events: list[tuple[str, str, bool]] = []
        self.refuse: AgentKubeError | None = None

    def annotations(self) -> dict[str, str]:
        return dict(self.values)

    def patch_annotations(self, values: Mapping[str, str]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.patches.append(dict(values))
        self.values.update(values)

    def event(self, *, reason: str, message: str, warning: bool) -> None:
        self.events.append((reason, message, warning))


def _result(name: str, tmp_path: Path) -> reader.Result:
    matrix = smi.parse((FIXTURES / name).read_text())
    recording = fakenvml.recording_from_matrix(matrix)
    root = fakenvml.write_sysfs(recording, tmp_path / name)
    return reader.read(fakenvml.FakeNvml(recording), Sysfs(root))


def test_annotates_once_then_only_when_the_reading_changes(tmp_path: Path) -> None:
    first = _result("real/rtxa6000x3_nvlink_bridge_pair_ansi.txt", tmp_path)
    second = _result("real/rtx6000ada_x4_pcie_nodesys_nics.txt", tmp_path)
    node = FakeNode()
    readings = iter([first, first, second])
    agent = publisher.Agent("n1", lambda: next(readings), node)
    assert agent.round()
    assert set(node.patches[0]) == {labels.SMI_ANNOTATION, labels.TOPOLOGY_ANNOTATION}
    assert smi.parse(node.values[labels.SMI_ANNOTATION]).links_equal(first.matrix)
    assert agent.round()
    assert len(node.patches) == 1, "an unchanged reading must not patch"
    assert agent.round()
    assert len(node.patches) == 2
    assert node.values["other"] == "kept"
    assert node.events == []


def test_a_failed_reading_warns_on_the_node_once_per_message_and_the_loop_goes_on(
    tmp_path: Path,
) -> None:
    node = FakeNode()
    failures = iter(["no driver", "no driver", "still no driver"])

    def read() -> reader.Result:
        raise reader.ReadError(next(failures))

    agent = publisher.Agent("n1", read, node)
    assert [agent.round() for _ in range(3)] == [False, False, False]
    assert [(r, w) for r, _, w in node.events] == [("GPUTopologyUnreadable", True)] * 2
    assert "no driver" in node.events[0][1]
    assert "still no driver" in node.events[1][1]
    assert node.patches == []
    assert agent.health.ready()


def test_a_refused_patch_is_reported_on_the_node(tmp_path: Path) -> None:
    node = FakeNode()
    node.refuse = AgentKubeError("annotate node n1", 403, "denied by the admission policy")
    result = _result("real/h200x1_real_ansi.txt", tmp_path)
    agent = publisher.Agent("n1", lambda: result, node)
    assert not agent.round()
    assert node.events[0][0] == "GPUTopologyNotPublished"
    assert "denied by the admission policy" in node.events[0][1]


def test_backoff_doubles_from_the_first_failure_and_is_capped() -> None:
    timing = publisher.Timing(interval_s=300, backoff_initial_s=5, backoff_max_s=60)
    assert [timing.delay(f) for f in range(7)] == [300, 5, 10, 20, 40, 60, 60]


class CountingStop(threading.Event):
    """Records every wait and stops the loop after ``rounds`` of them (no real sleeping)."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        if len(self.waits) >= self.rounds:
            self.set()
        return self.is_set()


def test_run_backs_off_while_failing_and_returns_to_the_interval_after_success(
    tmp_path: Path,
) -> None:
    result = _result("real/h200x1_real_ansi.txt", tmp_path)
    outcomes = iter([False, False, False, True, False])

    def read() -> reader.Result:
        if next(outcomes):
            return result
        raise reader.ReadError("nvml gone")

    stop = CountingStop(rounds=5)
    timing = publisher.Timing(interval_s=100, backoff_initial_s=2, backoff_max_s=5)
    publisher.Agent("n1", read, FakeNode(), timing=timing).run(stop)
    assert stop.waits == [2, 4, 5, 100, 2]


def test_health_is_ready_after_the_first_round_and_not_alive_when_a_round_hangs() -> None:
    now = [0.0]
    health = publisher.Health(stall_s=60, clock=lambda: now[0])
    assert health.alive()
    assert not health.ready()
    health.busy_since = now[0]
    now[0] = 59
    assert health.alive()
    now[0] = 61
    assert not health.alive()


def test_summary_names_the_source_links_and_nics(tmp_path: Path) -> None:
    line = publisher.summary(_result("real/h200x8_hgx_nv18_12nic.txt", tmp_path))
    assert line.startswith(
        "8 GPU(s) NVIDIA GPU via nvml: GPU pairs NV18 x28; 12 NIC(s); NUMA 0,0,0,0,1,1,1,1"
    )


@pytest.mark.parametrize("status", [0, 500, 409])
def test_an_unreachable_api_is_retried_without_an_event(tmp_path: Path, status: int) -> None:
    node = FakeNode()
    node.refuse = AgentKubeError("annotate node n1", status, "boom")
    result = _result("real/h200x1_real_ansi.txt", tmp_path)
    assert not publisher.Agent("n1", lambda: result, node).round()
    assert node.events == []


def test_the_probe_endpoints_answer_from_health() -> None:
    import socket
    import urllib.error
    import urllib.request

    from shorthop.agent import probes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = [0.0]
    health = publisher.Health(stall_s=60, clock=lambda: now[0])
    server = probes.serve(port, health, address="127.0.0.1")

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    try:
        assert (status("/healthz"), status("/readyz")) == (200, 503)
        health.finished_rounds = 1
        health.busy_since, now[0] = 0.0, 120.0
        assert (status("/healthz"), status("/readyz")) == (503, 200)
        assert status("/metrics") == 404
    finally:
        server.shutdown()
        server.server_close()


def test_an_unexpected_error_while_reading_is_a_failed_round_not_a_crash() -> None:
    node = FakeNode()

    def read() -> reader.Result:
        raise RuntimeError("the binding segfaulted politely")

    assert not publisher.Agent("n1", read, node).round()
    assert node.events[0][0] == "GPUTopologyUnreadable"
    assert "RuntimeError: the binding segfaulted politely" in node.events[0][1]

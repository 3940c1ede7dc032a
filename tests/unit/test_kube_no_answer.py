"""An API call that gets no answer (connection refused, reset, the response lost) is a retriable
``KubeError`` with status 0, like any failed call; it used to escape as a urllib3 exception,
which skipped the reconciler's clean-up: the pod's assumed GPUs stayed taken for two minutes and
the deployment waited as unschedulable (found by chaos/test_apiserver.py)."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from shorthop import errors
from shorthop.controller import kube

from tests import operator_harness as oh
from tests.recording_kube import one_node_reconciler


def _serving(handle: Callable[[socket.socket], None], join_s: float = 5) -> Iterator[str]:
    """A loopback server that hands each connection to ``handle``, then closes it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(join_s)
    server.close()


def _serve(reply: bytes) -> Iterator[str]:
    """Each request is read, answered with ``reply`` and its connection closed."""

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        conn.recv(65536)
        if reply:
            conn.sendall(reply)

    yield from _serving(handle)


@pytest.fixture
def hanging_up() -> Iterator[str]:
    """Every connection is closed without an answer."""
    yield from _serve(b"")


@pytest.fixture
def cutting_off() -> Iterator[str]:
    """Every answer starts (status, headers, part of a chunk) and is cut off mid-body, as when
    the API server is killed while answering."""
    yield from _serve(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n400\r\n{"kind": "Pod", "meta'
    )


def _kube(tmp_path: Path, server: str, retries: int | None = None) -> kube.Kube:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return kube.Kube(kube.api_client(str(path), retries=retries))


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p"},
    "spec": {"containers": [{"name": "c", "image": "x"}]},
}


def _each_is_a_no_answer(*calls: Callable[[], object]) -> None:
    for call in calls:
        with pytest.raises(errors.NoAnswer) as caught:
            call()
        assert caught.value.status == 0
        assert caught.value.retriable


def test_a_call_without_an_answer_is_a_retriable_kube_error(
    tmp_path: Path, hanging_up: str
) -> None:
    k = _kube(tmp_path, hanging_up)
    _each_is_a_no_answer(
        lambda: k.create_pod("ns", POD),  # POST: not retried by urllib3
        lambda: k.bind("ns", "p", "n"),
        lambda: k.delete_pod("ns", "p"),
        lambda: k.patch_status("ns", "d", {"phase": "Running"}),
        lambda: k.get_pod("ns", "p"),  # GET: retried by urllib3, then given up
    )


def test_an_answer_cut_off_mid_body_is_a_retriable_kube_error(
    tmp_path: Path, cutting_off: str
) -> None:
    k = _kube(tmp_path, cutting_off)
    _each_is_a_no_answer(
        lambda: k.create_pod("ns", POD),
        lambda: k.bind("ns", "p", "n"),
        lambda: k.patch_status("ns", "d", {"phase": "Running"}),
        lambda: k.ensure_service("ns", {"metadata": {"name": "s"}}),
        lambda: k.get_pod("ns", "p"),
    )


def test_a_lost_create_neither_raises_out_of_reconcile_nor_keeps_gpus_assumed(
    tmp_path: Path, hanging_up: str
) -> None:
    k = _kube(tmp_path, hanging_up)
    live, reconciler, key = one_node_reconciler(k, oh.deployment("d", "ns", None, [("r", 1, 4, 4)]))
    outcome = reconciler.reconcile(key)
    assert outcome.retry
    assert reconciler.metrics.errors.labels(reason="http-0")._value.get() == 1
    snap = live.snapshot()
    assert int(snap.free_counts[snap.index.row_of["n1"]]) == 8, "the failed pod's GPUs leaked"


LEASE = json.dumps(
    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}}
).encode()


def _read_request(conn: socket.socket) -> None:
    """Read one HTTP request whole: the headers, then a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)


@pytest.fixture
def answering_late() -> Iterator[tuple[str, queue.Queue[str]]]:
    """Each request is answered (a Lease) only if the client still waits 20 s later; what the
    server saw first per request ("client gave up" or "answered") is recorded."""
    seen: queue.Queue[str] = queue.Queue()

    def handle(conn: socket.socket) -> None:
        conn.settimeout(20)
        _read_request(conn)
        try:
            if conn.recv(1) == b"":
                seen.put("client gave up")
                return
        except TimeoutError:
            pass
        seen.put("answered")
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(LEASE)}\r\n\r\n".encode()
            + LEASE
        )

    for url in _serving(handle, join_s=25):
        yield url, seen


def test_lease_requests_end_at_their_timeout_when_no_answer_comes(
    tmp_path: Path, answering_late: tuple[str, queue.Queue[str]]
) -> None:
    """The leader bounds each lease request (runtime/leader.py ``timeout``) on a client that
    urllib3 does not retry (commands/run.py): a hung request must fail in time for the next try
    instead of holding the renewal until the deadline."""
    server, seen = answering_late
    k = _kube(tmp_path, server, retries=0)
    lease = client.V1Lease(metadata=client.V1ObjectMeta(name="l", namespace="ns"))
    _each_is_a_no_answer(
        lambda: k.replace_lease("ns", lease, timeout=0.5),
        lambda: k.create_lease("ns", lease, timeout=0.5),
    )
    # What the server saw of each request (it records it once the client hung up).
    assert [seen.get(timeout=30) for _ in range(2)] == ["client gave up", "client gave up"]
    assert seen.empty(), "a timed-out lease request was retried by urllib3"

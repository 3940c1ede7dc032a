"""The operator as a process under test: what /proc and /metrics say about it, and a supervisor
that restarts it when it exits (what the kubelet does for the chart's pods)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests import operator_harness as oh

# -- /metrics ---------------------------------------------------------------------------------


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.append((sample.name, dict(sample.labels), float(sample.value)))
    return out


def total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples(text)
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for sample, have, value in samples(text):
        if sample == name:
            out[have.get(label, "")] = out.get(have.get(label, ""), 0.0) + value
    return out


def histogram(text: str, name: str) -> dict[str, float]:
    """Count, mean and p50/p90/p99 (bucket upper bounds) of a Prometheus histogram."""
    buckets = sorted(
        (float(have["le"]), value)
        for sample, have, value in samples(text)
        if sample == f"{name}_bucket"
    )
    count = total(text, f"{name}_count")
    summed = total(text, f"{name}_sum")
    out = {"count": count, "mean_s": summed / count if count else 0.0}
    for q in (0.5, 0.9, 0.99):
        bound = next((le for le, cumulative in buckets if count and cumulative >= q * count), 0.0)
        out[f"p{round(q * 100)}_le_s"] = bound
    return out


def merge_counts(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in set(a) | set(b)}


# -- /proc ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStats:
    rss_mib: float
    threads: int
    fds: int
    apiserver_connections: int


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(entry)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def tcp_connections(pid: int, remote_port: int) -> int:
    """ESTABLISHED TCP connections of ``pid`` to ``remote_port`` (from /proc/PID/net/tcp*)."""
    inodes = _socket_inodes(pid)
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            remote, state, inode = parts[2], parts[3], parts[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                count += inode in inodes
    return count


def proc_stats(pid: int, apiserver_port: int) -> ProcStats:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return ProcStats(
        rss_mib=round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        threads=int(fields["Threads"].strip()),
        fds=len(list(Path(f"/proc/{pid}/fd").iterdir())),
        apiserver_connections=tcp_connections(pid, apiserver_port),
    )


# -- supervision ------------------------------------------------------------------------------


@dataclass
class Supervisor:
    """Keeps one operator running: restarts it when it exits (restartPolicy: Always), scrapes
    its /metrics every second, and adds up counters over restarts."""

    operator: oh.OperatorProcess
    counters: tuple[str, ...] = ("shorthop_reconcile_errors_total", "shorthop_binds_total")
    restarts: list[tuple[float, int | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last: str = ""
    _carried: dict[str, dict[str, float]] = field(default_factory=dict)

    def start(self) -> Supervisor:
        self.operator.start()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            proc = self.operator.proc
            if proc is not None and proc.poll() is not None:
                self._carry()
                self.restarts.append((time.monotonic(), proc.returncode))
                time.sleep(1.0)  # the kubelet's first back-off is longer; keep tests quick
                if not self._stop.is_set():
                    self.operator.start()
                continue
            with contextlib.suppress(OSError):
                self._last = self.operator.metrics()

    def _carry(self) -> None:
        for name in self.counters:
            label = "reason" if "errors" in name else "result"
            self._carried[name] = merge_counts(
                self._carried.get(name, {}), by_label(self._last, name, label)
            )
        self._last = ""

    def counts(self, name: str) -> dict[str, float]:
        """A counter by its label, summed over every process this supervisor ran."""
        label = "reason" if "errors" in name else "result"
        with contextlib.suppress(OSError):
            self._last = self.operator.metrics()
        return merge_counts(self._carried.get(name, {}), by_label(self._last, name, label))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.operator.stop()


def tracebacks(logs: Iterable[str]) -> list[str]:
    """Traceback excerpts in operator logs."""
    out = []
    for text in logs:
        at = text.find("Traceback (most recent call last)")
        while at >= 0:
            out.append(text[max(0, at - 300) : at + 1500])
            at = text.find("Traceback (most recent call last)", at + 1)
    return out

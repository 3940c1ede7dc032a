"""The operator at 10,000 nodes and 100,000 pods: memory, first sync, snapshot refresh, latency.

The real operator (``shorthop run``, as the chart runs it: kopf, leader election, informers,
``LiveCluster``, snapshot, solver, pods created and bound through the API) runs as a process of
its own against :mod:`bench.loopback_api`, which serves a cluster from :mod:`bench.bigcluster`:
realistic Node and Pod objects (managedFields, statuses, images), daemon pods on every node and
GPU job pods on ``occupancy`` of the GPUs. Measured, in one run:

1. **first sync**: from the operator's start until its informers have listed every node and pod
   (in pages of 500; its log line ``caches synced in ...``), and its RSS then;
2. **churn**: an hour's worth of changes — ``replacements_per_hour`` GPU job pods ending and new
   ones starting (4 watch events each), and every node's status updated every 5 minutes (as the
   kubelet's ``nodeStatusReportFrequency``) — replayed ``speedup`` times faster than real time;
   the operator's CPU-seconds for it and its RSS afterwards;
3. **deployments**: ``deployments`` InferenceDeployments created one after another while the same
   churn runs at its real-time rate; for each, the time from its create (the server's ADDED
   event) until its last pod is bound (the server receives the binding), on the server's clock;
   and the operator's snapshot refresh time per planning cycle (``shorthop_snapshot_refresh_
   seconds``).

Why a loopback server rather than the real API server: :func:`probe_apiserver` loads the local
control plane with realistic nodes and pods and measures what they cost it; the report states
those figures next to the choice.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common, throughput

Log = Callable[[str], None]
PAGE_SECONDS = 300  # the kubelet's default nodeStatusReportFrequency


@dataclass(frozen=True)
class FootprintSettings:
    nodes: int = 10_000
    pods: int = 100_000
    occupancy: float = 0.5
    deployments: int = 60
    replacements_per_hour: int = 10_000
    speedup: float = 20.0
    probe_pods: int = 2_000  # pods created in the local API server to price it (0: no probe)


QUICK = FootprintSettings(
    nodes=300, pods=3_000, deployments=6, replacements_per_hour=2_000, speedup=600.0, probe_pods=0
)


@dataclass
class Footprint:
    settings: FootprintSettings
    nodes: int
    pods: int
    gpus: int
    object_sizes: dict[str, int]
    sync_s: float  # the operator's own figure: informers started -> every list done
    start_to_sync_s: float  # process start -> synced (imports, lease, kopf included)
    list_calls: int
    rss_synced_mib: float
    churn_events: int
    churn_wall_s: float
    churn_cpu_s: float
    rss_churned_mib: float
    rss_peak_mib: float
    latencies_s: list[float]
    deployment_pods: list[int]
    snapshot_refresh: dict[str, float]  # count, mean_s, p99_le_s (bucket bound)
    rss_end_mib: float
    requests: dict[str, int]
    load: str
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def p50_s(self) -> float:
        return common.percentile(self.latencies_s, 50)

    @property
    def p99_s(self) -> float:
        return common.percentile(self.latencies_s, 99)


def _proc(pid: int) -> tuple[float, float, float]:
    """(RSS MiB, peak RSS MiB, CPU-seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return rss, peak, cpu_seconds(pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of a process (``/proc/<pid>/stat`` utime + stime)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """The loopback API server process."""

    def __init__(self, s: FootprintSettings, workdir: Path) -> None:
        self.log_path = workdir / "loopback-api.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loopback_api",
                f"--nodes={s.nodes}",
                f"--pods={s.pods}",
                f"--occupancy={s.occupancy}",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("wb"),
            cwd=common.REPO,
        )
        line = self.proc.stdout.readline().decode() if self.proc.stdout else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(
                f"the loopback API did not start: {self.log_path.read_text()[-2000:]}"
            )
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "loopback", "cluster": {"server": self.url}}],
            "users": [{"name": "anyone", "user": {}}],
            "contexts": [
                {"name": "loopback", "context": {"cluster": "loopback", "user": "anyone"}}
            ],
            "current-context": "loopback",
        }
        path.write_text(json.dumps(config))
        return path

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def _idle(pid: int, window: float = 1.0) -> bool:
    """Whether the process used under 5% of a core over ``window`` seconds (it has applied
    every event it was sent)."""
    before = cpu_seconds(pid)
    time.sleep(window)
    return cpu_seconds(pid) - before < 0.05 * window


def _wait(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def _synced(operator: Any) -> re.Match[str] | None:
    if not operator.alive():
        raise RuntimeError(f"the operator exited:\n{operator.log[-3000:]}")
    return re.search(
        r"caches synced in ([0-9.]+)s: (\d+) nodes .*?(\d+) pods \((\d+) list calls\)", operator.log
    )


def _histogram(metrics: str, name: str) -> dict[str, float]:
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append(
                (float("inf") if bound == "+Inf" else float(bound), float(line.split()[-1]))
            )
        elif line.startswith(f"{name}_sum"):
            total = float(line.split()[-1])
        elif line.startswith(f"{name}_count"):
            count = float(line.split()[-1])
    p99 = next((b for b, n in sorted(buckets) if count and n >= 0.99 * count), float("nan"))
    return {"count": count, "mean_s": total / count if count else float("nan"), "p99_le_s": p99}


def _deployment(name: str, large: bool) -> dict[str, Any]:
    doc = throughput.deployment(name, "tenants")
    if large:  # the placement benchmark's deployment: 16 x 4 GPUs + 16 x (2 pods x 4 GPUs)
        roles = doc["spec"]["roles"]  # type: ignore[index]
        roles[0]["replicas"], roles[1]["replicas"] = 16, 16
    return doc


def probe_apiserver(pods: int = 2_000, *, log: Log = print) -> dict[str, float]:
    """What ``pods`` of the benchmark's pods cost the local control plane: the wall time to
    create them (8 client threads), the CPU-seconds and the RSS growth of kube-apiserver and
    etcd. They name a node that does not exist, so neither kube-scheduler nor kwok acts on them."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client, config

    from bench import bigcluster
    from e2e.controlplane import cluster as controlplane

    cluster = bigcluster.generate(20, pods, 0.5)
    renderer = bigcluster.PodRenderer()
    bodies = []
    for seed in list(cluster.pods.values())[:pods]:
        body = json.loads(renderer.render(seed))
        meta = body["metadata"]
        for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
            meta.pop(key, None)
        meta["namespace"] = "probe"
        body["spec"]["nodeName"] = "probe-absent-node"
        # The namespace's own account (the daemons' accounts do not exist there).
        body["spec"]["serviceAccountName"] = body["spec"]["serviceAccount"] = "default"
        bodies.append(body)
    with tempfile.TemporaryDirectory(prefix="shorthop-probe-") as tmp:
        local = controlplane.LocalCluster(Path(tmp) / "cluster", tie_to_parent=True)
        local.up()
        try:
            api = config.new_client_from_config(config_file=str(local.kubeconfig))
            api.configuration.connection_pool_maxsize = 16
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="probe")))
            _wait(
                "the probe namespace's default ServiceAccount",
                lambda: (
                    core.list_namespaced_service_account(
                        "probe", field_selector="metadata.name=default"
                    ).items
                ),
                60,
                0.2,
            )
            pids = [local.pids()[name] for name in ("kube-apiserver", "etcd")]
            time.sleep(5)  # the control plane's own start-up work settles

            def totals() -> tuple[float, float]:
                found = [_proc(pid) for pid in pids]
                return sum(rss for rss, _, _ in found), sum(cpu for _, _, cpu in found)

            rss_before, cpu_before = totals()
            log(f"footprint probe: creating {len(bodies):,} pods in the local API server")
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda b: core.create_namespaced_pod("probe", b, _preload_content=False),
                        bodies,
                    )
                )
            seconds = time.monotonic() - started
            rss_after, cpu_after = totals()
        finally:
            local.down()
    return {"pods": float(len(bodies)), "seconds": seconds, "cpu_s": cpu_after - cpu_before,
            "rss_mib": rss_after - rss_before, "load": common.load()}  # fmt: skip


def run(s: FootprintSettings = FootprintSettings(), *, log: Log = print) -> Footprint:
    from bench import bigcluster
    from tests import operator_harness as oh

    sizes = dict(bigcluster.sizes(bigcluster.generate(20, 200, s.occupancy)))
    probe = probe_apiserver(s.probe_pods, log=log) if s.probe_pods else {}
    with tempfile.TemporaryDirectory(prefix="shorthop-footprint-") as tmp:
        workdir = Path(tmp)
        log(f"footprint: generating {s.nodes:,} nodes and {s.pods:,} pods in the loopback API")
        server = Server(s, workdir)
        operator: oh.OperatorProcess | None = None
        try:
            state = server.call("/bench/state")
            operator = oh.OperatorProcess(
                server.kubeconfig(workdir / "kubeconfig"), workdir, identity="footprint"
            )
            started = time.monotonic()
            operator.start()
            assert operator.proc is not None
            pid = operator.proc.pid
            synced = _wait("the first sync", lambda: _synced(operator), 1800, 0.1)
            start_to_sync = time.monotonic() - started
            rss_synced, _, _ = _proc(pid)
            log(f"footprint: synced in {float(synced.group(1)):.1f}s, RSS {rss_synced:.0f} MiB")

            per_s = s.speedup / 3600
            churn = {
                "seconds": 3600 / s.speedup,
                "replacements_per_s": s.replacements_per_hour * per_s,
                "node_updates_per_s": s.nodes * 3600 / PAGE_SECONDS * per_s,
            }
            _, _, cpu_before = _proc(pid)
            began = time.monotonic()
            server.call("/bench/churn", churn)
            _wait(
                "the churn",
                lambda: not server.call("/bench/state")["churn"]["running"],
                3600 / s.speedup + 600,
                0.5,
            )
            failed = server.call("/bench/state")["churn"].get("error")
            if failed:
                raise RuntimeError(f"the loopback API's churn failed: {failed}")
            _wait(
                "the operator to catch up",
                lambda: server.call("/bench/state")["backlog"] == 0,
                600,
                0.2,
            )
            _wait("the operator to be idle", lambda: _idle(pid), 600, 0)
            churn_wall = time.monotonic() - began
            rss_churned, _, cpu_after = _proc(pid)
            done = server.call("/bench/state")["churn"]
            events = 4 * int(done["replaced"]) + int(done["node_updates"])
            log(f"footprint: churn of {events:,} events in {churn_wall:.0f}s")
            log(f"footprint: RSS after the churn {rss_churned:.0f} MiB")

            real_time = {
                **churn,
                "seconds": 24 * 3600,
                "replacements_per_s": churn["replacements_per_s"] / s.speedup,
                "node_updates_per_s": churn["node_updates_per_s"] / s.speedup,
            }
            server.call("/bench/churn", real_time)
            latencies, pods = [], []
            for i in range(s.deployments):
                doc = _deployment(f"infd-{i:03d}", large=i % 2 == 1 and s.nodes >= 1000)
                pods.append(int(server.call("/bench/deployments", doc)["pods"]))
                key = f"tenants/infd-{i:03d}"
                record = _wait(
                    f"{key} to be bound",
                    lambda k=key: (
                        server.call("/bench/state")["deployments"][k].get("done")
                        and server.call("/bench/state")["deployments"][k]
                    ),
                    120,
                    0.02,
                )
                latencies.append(record["done"] - record["created"])
            p50, p99 = common.percentile(latencies, 50), common.percentile(latencies, 99)
            log(f"footprint: {len(latencies)} deployments, p50 {p50:.2f}s p99 {p99:.2f}s")
            end = server.call("/bench/state")
            rss_end, peak, _ = _proc(pid)
            refresh = _histogram(operator.metrics(), "shorthop_snapshot_refresh_seconds")
            return Footprint(
                settings=s,
                nodes=s.nodes,
                pods=int(state["pods"]),
                gpus=int(state["gpus"]),
                object_sizes=sizes,
                sync_s=float(synced.group(1)),
                start_to_sync_s=start_to_sync,
                list_calls=int(synced.group(4)),
                rss_synced_mib=rss_synced,
                churn_events=events,
                churn_wall_s=churn_wall,
                churn_cpu_s=cpu_after - cpu_before,
                rss_churned_mib=rss_churned,
                rss_peak_mib=peak,
                latencies_s=latencies,
                deployment_pods=pods,
                snapshot_refresh=refresh,
                rss_end_mib=rss_end,
                requests={k: int(v) for k, v in end["requests"].items()},
                load=common.load(),
                probe=probe,
            )
        except RuntimeError as exc:
            tail = operator.log[-4000:] if operator is not None else ""
            requests = server.call("/bench/state")["requests"]
            raise RuntimeError(
                f"{exc}; requests served: {requests}; the operator's log ends:\n{tail}"
            ) from None
        finally:
            if operator is not None:
                operator.stop()
            server.stop()

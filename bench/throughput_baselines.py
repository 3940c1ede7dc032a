"""End-to-end throughput side by side, in one run: shorthop against what users would run instead
(issue L, phase 2).

One private local control plane (built from source, see e2e/controlplane) with ``nodes`` fake GPU
nodes (kwok, the shape of ``bench/throughput.py``). The same ``pods`` pods of 4 GPUs, as
``pods / 8`` groups of 4 prefill pods and 4 decode pods (2 decode replicas x 2 pods), placed
once per mode, one mode after the other, every mode starting from the same empty nodes:

- ``bare pods``: the pods themselves, created by a client, bound by kube-scheduler;
- ``StatefulSets``: per group one StatefulSet per role (podManagementPolicy Parallel, a headless
  Service each, as LeaderWorkerSet does underneath), created by the client; kube-controller-
  manager creates the pods, kube-scheduler binds them;
- ``shorthop``: per group one InferenceDeployment (``bench.throughput.deployment``); the operator
  (``shorthop run``, started for the mode, leading before the clock starts) creates and binds
  the pods, once per binding mode of ``bench.throughput.MODES``: device plugin, then DRA (the
  nodes replaced by DRA nodes, a ResourceClaim per pod; every claim checked allocated).

The client creates the objects from 16 threads, as fast as the API server takes them. The clock
runs from the first create until a pod watch (a process of its own, the same in every mode) has
seen every pod bound, then every pod Running (kwok runs them). Around each mode the CPU-seconds
of every control-plane process (``/proc/<pid>/stat``: utime + stime, all threads) and the API
server's ``apiserver_request_total`` counters are read; the differences are the mode's cost,
per pod. They include the background (kwok's node heartbeats, leases), which is the same in
every mode.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shorthop.topology import fake

from bench import common
from bench import throughput as tp

Log = Callable[[str], None]
PROCESSES = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "operator")
# Per group: (role, pods) - the pods of bench.throughput.deployment (4 prefill x 1 pod, 2 decode
# replicas x 2 pods), 4 GPUs each.
ROLES = (("prefill", 4), ("decode", 4))
GPUS_PER_POD = 4
IMAGE = "vllm/vllm-openai:v0.11.0"
SHORTHOP_MODES = tp.MODES  # device-plugin, then DRA


@dataclass(frozen=True)
class Mode:
    """One mode's measurements: seconds from the first create, CPU-seconds and requests."""

    name: str
    pods: int
    bound_s: float
    running_s: float
    cpu_s: dict[str, float]  # process -> CPU-seconds during the mode
    requests: dict[tuple[str, str], float]  # (verb, resource[/subresource]) -> count

    @property
    def rate(self) -> float:
        return self.pods / self.bound_s

    def cpu_per_pod_ms(self, process: str) -> float | None:
        seconds = self.cpu_s.get(process)
        return None if seconds is None else 1e3 * seconds / self.pods

    def requests_per_pod(self) -> dict[str, float]:
        """Requests per pod by verb."""
        by_verb: dict[str, float] = {}
        for (verb, _), n in self.requests.items():
            by_verb[verb] = by_verb.get(verb, 0.0) + n
        return {verb: n / self.pods for verb, n in by_verb.items()}


@dataclass
class SideBySide:
    nodes: int
    pods: int
    modes: list[Mode] = field(default_factory=list)
    load_after: str = ""
    failed: dict[str, str] = field(default_factory=dict)  # mode -> why it has no figure

    def mode(self, name: str) -> Mode | None:
        return next((m for m in self.modes if m.name == name), None)


# -- what is measured around a mode ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of a process, all its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime 14, stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_counts(metrics: str) -> dict[tuple[str, str], float]:
    """``apiserver_request_total`` summed by (verb, resource[/subresource]).

    >>> request_counts('apiserver_request_total{code="201",resource="pods",'
    ...     'subresource="binding",verb="POST"} 3\\n'
    ...     'apiserver_request_total{code="409",resource="pods",'
    ...     'subresource="binding",verb="POST"} 1')
    {('POST', 'pods/binding'): 4.0}
    """
    counts: dict[tuple[str, str], float] = {}
    for labels, value in _SAMPLE.findall(metrics):
        found = dict(_LABEL.findall(labels))
        resource = found.get("resource", "") + (
            f"/{found['subresource']}" if found.get("subresource") else ""
        )
        key = (found.get("verb", ""), resource)
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


class Meter:
    """CPU-seconds of named processes and the API server's request counters, read now; the
    difference to a later reading is what happened in between."""

    def __init__(self, local: Any, pids: dict[str, int]) -> None:
        self._local, self._pids = local, pids
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.requests = request_counts(str(local.get("/metrics", timeout=30)))

    def since(self, before: Meter) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
        cpu = {name: self.cpu[name] - before.cpu[name] for name in self.cpu}
        keys = set(self.requests) | set(before.requests)
        diff = {k: self.requests.get(k, 0.0) - before.requests.get(k, 0.0) for k in keys}
        return cpu, {k: n for k, n in diff.items() if n > 0}


# -- the pod watch: bound, then Running ------------------------------------------------------------


# -- the objects each mode creates -----------------------------------------------------------------


def _container() -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(GPUS_PER_POD)}
    return {"name": "engine", "image": IMAGE, "resources": {"limits": limits}}


def bare_pods(group: int) -> list[dict[str, Any]]:
    """The group's pods as bare pods (kube-scheduler binds them)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"g{group:03d}-{role}-{i}", "labels": {"role": role}},
            "spec": {"containers": [_container()]},
        }
        for role, pods in ROLES
        for i in range(pods)
    ]


def stateful_sets(group: int) -> list[dict[str, Any]]:
    """Per role a headless Service and a StatefulSet of its pods (Parallel pod management)."""
    objects: list[dict[str, Any]] = []
    for role, pods in ROLES:
        name = f"g{group:03d}-{role}"
        labels = {"group": f"g{group:03d}", "role": role}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 8000}]},
            }
        )
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": name},
                "spec": {
                    "replicas": pods,
                    "serviceName": name,
                    "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [_container()]},
                    },
                },
            }
        )
    return objects


# -- the run ---------------------------------------------------------------------------------------


def _create_all(
    create: Callable[[dict[str, Any]], None], objects: Iterable[dict[str, Any]]
) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, objects))


def _namespace(core: Any, name: str) -> None:
    from kubernetes import client

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def account() -> bool:
        return any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        )

    tp._wait(f"the default service account of {name}", account, 60)


def _timed(
    name: str,
    local: Any,
    pids: dict[str, int],
    namespace: str,
    pods: int,
    create: Callable[[], None],
    log: Log,
    profile: Path | None = None,
) -> Mode:
    """Run ``create`` with the clock, the watch and the meters around it; with ``profile``,
    py-spy samples the operator meanwhile (its CPU then counts in no process measured here, but
    the operator's is disturbed by the sampling: a profiling run is not a measuring run)."""
    watcher = tp.PhaseWatch(local.kubeconfig, namespace, pods)
    spy = None
    try:
        if profile is not None:
            spy = _py_spy(pids["operator"], profile)
        before = Meter(local, pids)
        started = time.monotonic()
        create()
        log(f"throughput: {name}: created in {time.monotonic() - started:.2f}s")
        bound_s = watcher.wait(f"{name}: every pod bound", 900) - started
        try:
            running_s = watcher.wait(f"{name}: every pod Running", 300) - started
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; {_census(local, namespace)}") from None
        cpu, requests = Meter(local, pids).since(before)
    finally:
        watcher.close()
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
    mode = Mode(name, pods, bound_s, running_s, cpu, requests)
    log(
        f"throughput: {name}: {pods} pods bound in {bound_s:.2f}s ({mode.rate:.1f} pods/s), "
        f"Running in {running_s:.2f}s; CPU-s " + ", ".join(f"{p} {s:.1f}" for p, s in cpu.items())
    )
    return mode


def _census(local: Any, namespace: str) -> str:
    """What a mode that did not finish left: the pods by phase and node, and which control-plane
    processes are alive."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(local.kubeconfig)))
    items = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)["items"]
    phases: dict[str, int] = {}
    for pod in items:
        bound = "bound" if pod["spec"].get("nodeName") else "unbound"
        key = f"{(pod.get('status') or {}).get('phase')}/{bound}"
        phases[key] = phases.get(key, 0) + 1
    return f"{len(items)} pods in {namespace}: {phases}; processes alive: {local.running()}"


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid``'s stacks (collapsed, "raw" format) into ``out`` until SIGINT."""
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    return subprocess.Popen(
        [
            *command,
            "--nonblocking",
            *os.environ.get("BENCH_PY_SPY_FLAGS", "").split(),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def hot_functions(collapsed: str, top: int = 15) -> list[tuple[str, float]]:
    """The functions with the largest share of samples anywhere on the stack (inclusive), from
    py-spy's collapsed stacks ("frame;frame;frame count" per line).

    >>> hot_functions("main (a.py:1);f (a.py:2) 3\\nmain (a.py:1);g (a.py:5) 1", top=2)
    [('main (a.py)', 1.0), ('f (a.py)', 0.75)]
    """
    total = 0
    inclusive: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        frames = {re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")}
        for frame in frames:
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return [(frame, n / total) for frame, n in ranked]


def _gone(core: Any, namespace: str) -> None:
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    tp._wait(f"the {namespace} pods to go", lambda: tp._bound(core, namespace)[0] == 0, 300, 0.5)


def shorthop_namespace(binding: str) -> str:
    return "shorthop" if binding == "device-plugin" else f"shorthop-{binding}"


def _shorthop(
    local: Any,
    pids: dict[str, int],
    binding: str,
    groups: int,
    tmp: Path,
    log: Log,
    profile: Path | None,
) -> Mode:
    """One shorthop mode: an operator started and leading, then the deployments, timed."""
    from kubernetes import client, config

    from tests import operator_harness as oh

    api = config.new_client_from_config(config_file=str(local.kubeconfig))
    api.configuration.connection_pool_maxsize = 32
    custom = client.CustomObjectsApi(api)
    namespace = shorthop_namespace(binding)
    _namespace(client.CoreV1Api(api), namespace)
    operator = oh.OperatorProcess(local.kubeconfig, tmp / namespace, identity=f"bench-{binding}")
    operator.start()
    try:
        operator.wait_leading(timeout=120)
        assert operator.proc is not None
        with_operator = {**pids, "operator": operator.proc.pid}
        docs = [tp.deployment(f"infd-{g:03d}", namespace) for g in range(groups)]

        def create() -> None:
            _create_all(
                lambda body: custom.create_namespaced_custom_object(
                    "shorthop.io", "v1alpha1", namespace, "inferencedeployments", body
                ),
                docs,
            )

        name = {"device-plugin": "shorthop (device plugin)", "dra": "shorthop (DRA)"}[binding]
        return _timed(name, local, with_operator, namespace, groups * 8, create, log, profile)
    finally:
        operator.stop()


def run(
    nodes: int = 1000, pods: int = 512, *, log: Log = print, profile: Path | None = None
) -> SideBySide:
    """Place the pods in every mode; with ``profile``, py-spy's collapsed stacks of the operator
    during its mode are written there (see :func:`hot_functions`)."""
    from kubernetes import client, config

    from e2e.controlplane import cluster as controlplane

    groups = pods // 8
    result = SideBySide(nodes=0, pods=groups * 8)
    with tempfile.TemporaryDirectory(prefix="shorthop-side-by-side-") as tmp:
        local = controlplane.LocalCluster(Path(tmp) / "cluster", tie_to_parent=True)
        local.up()
        try:
            kubeconfig = local.kubeconfig
            api = config.new_client_from_config(config_file=str(kubeconfig))
            api.configuration.connection_pool_maxsize = 32
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            tp._kubectl(kubeconfig, "apply", "--server-side", "-f", str(tp.REPO / "crds"))
            node_objects = fake.nodes(tp._shape(nodes))
            result.nodes = len(node_objects)
            log(f"throughput: creating {len(node_objects)} fake GPU nodes")
            for start in range(0, len(node_objects), 250):
                chunk = fake.as_list(node_objects[start : start + 250])
                tp._kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(chunk))
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name="shorthop-system"))
            )
            for ns in ("bare", "sts"):
                _namespace(core, ns)

            def ready() -> bool:
                listed = core.list_node().items
                return len(listed) == len(node_objects) and all(
                    any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                    for n in listed
                )

            tp._wait("kwok to mark nodes Ready", ready, 120, 1.0)
            pids = {name: local.pids()[name] for name in PROCESSES if name != "operator"}

            # (a) bare pods, kube-scheduler.
            def create_bare() -> None:
                objects = [p for g in range(groups) for p in bare_pods(g)]
                _create_all(lambda body: core.create_namespaced_pod("bare", body), objects)

            result.modes.append(
                _timed("bare pods", local, pids, "bare", groups * 8, create_bare, log)
            )
            _gone(core, "bare")

            # (b) StatefulSets + headless Services; kube-controller-manager, kube-scheduler.
            def create_sts() -> None:
                def one(body: dict[str, Any]) -> None:
                    if body["kind"] == "Service":
                        core.create_namespaced_service("sts", body)
                    else:
                        apps.create_namespaced_stateful_set("sts", body)

                _create_all(one, [o for g in range(groups) for o in stateful_sets(g)])

            result.modes.append(
                _timed("StatefulSets", local, pids, "sts", groups * 8, create_sts, log)
            )
            apps.delete_collection_namespaced_stateful_set("sts")
            _gone(core, "sts")

            # (c) shorthop, per binding mode (bench.throughput.MODES), each with an operator of
            # its own; the DRA mode replaces the nodes by DRA nodes (bench.throughput), so it
            # runs last, after the device-plugin mode's deployments and pods are gone.
            for binding in SHORTHOP_MODES:
                namespace = shorthop_namespace(binding)
                try:
                    if binding == "dra":
                        tp._as_dra_nodes(kubeconfig, core, tp._shape(nodes), log)
                    mode = _shorthop(local, pids, binding, groups, Path(tmp), log, profile)
                    if binding == "dra":
                        tp._check_claims(api, namespace, groups * 8)
                    result.modes.append(mode)
                except RuntimeError as exc:  # the DRA mode's timeouts: reported, not fatal
                    if binding != "dra":
                        raise
                    result.failed[binding] = str(exc)
                    log(f"throughput: shorthop ({binding}) not measured: {exc}")
                    break
                tp._clear(api, namespace)
        finally:
            local.down()
    result.load_after = common.load()
    return result


if __name__ == "__main__":
    # python -m bench.throughput_baselines NODES PODS PROFILE: a profiling run (its figures are
    # disturbed by py-spy); prints the modes and the operator's hottest functions.
    out = Path(sys.argv[3])
    found = run(int(sys.argv[1]), int(sys.argv[2]), profile=out)
    for mode in found.modes:
        print(f"{mode.name}: {mode.rate:.1f} pods/s, CPU-s {mode.cpu_s}")
    for frame, share in hot_functions(out.read_text(), top=40):
        print(f"{share:6.1%}  {frame}")

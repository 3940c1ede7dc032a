"""Scale soak: a cluster of its own with many fake 8-GPU nodes; rounds of creating many
InferenceDeployments, scaling half of them, and deleting them all.

After every phase, every placement must be valid (no GPU double-booked, no node overcommitted,
every deployment's pods exactly its desired set, status matching the pods). The operator's RSS,
threads, open files and connections to the API server are read from /proc after the caches
synced and at the end of every round: memory must stay flat once warm (the first round fills
caches and memos) and the number of API connections must not grow (no leaked watches).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from shorthop.topology import fake

from chaos import checks, pick
from chaos.fixtures import poll, recorder
from chaos.ops import proc_stats, tracebacks
from tests import kube
from tests import operator_harness as oh

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

NS = "soak"
CRD = Path(__file__).resolve().parents[1] / "crds" / "inferencedeployments.shorthop.io.yaml"
# Warm rounds may grow the heap a little (allocator fragmentation); a leak grows it every round.
RSS_GROWTH_LIMIT_MIB = 40.0
# API threads (32) + reconcile workers (16) + asyncio's default executor (cpu_count + 4, at most
# 32) + the informers, the lease, the metrics and health servers and the main thread.
THREAD_CAP = 32 + 16 + 32 + 12


@pytest.fixture
def soak_cluster(tmp_path: Path) -> Iterator[kube.Cluster]:
    """A control plane of its own: a thousand nodes would slow every other test's lists."""
    from e2e.controlplane import cluster as controlplane

    local = controlplane.LocalCluster(tmp_path / "cluster", tie_to_parent=True)
    local.up()
    try:
        yield kube.Cluster(kubeconfig=local.kubeconfig, local=local)
    finally:
        local.down()


def _create_all(api: client.ApiClient, docs: list[dict[str, Any]]) -> None:
    custom = client.CustomObjectsApi(api)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda d: custom.create_namespaced_custom_object(
                    checks.GROUP, checks.VERSION, NS, checks.PLURAL, d
                ),
                docs,
            )
        )


def _patch_decode(api: client.ApiClient, names: list[str], replicas: int) -> None:
    custom = client.CustomObjectsApi(api)

    def patch(name: str) -> None:
        body = custom.get_namespaced_custom_object(
            checks.GROUP, checks.VERSION, NS, checks.PLURAL, name
        )
        roles = body["spec"]["roles"]
        for role in roles:
            if role["name"] == "decode":
                role["replicas"] = replicas
        custom.patch_namespaced_custom_object(
            checks.GROUP, checks.VERSION, NS, checks.PLURAL, name, {"spec": {"roles": roles}}
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(patch, names))


def _watches(cluster: kube.Cluster) -> int:
    """Watches open on the API server (every client's; this cluster has no other workload)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _delete_all(api: client.ApiClient) -> None:
    client.CustomObjectsApi(api).delete_collection_namespaced_custom_object(
        checks.GROUP, checks.VERSION, NS, checks.PLURAL
    )


def _violations(cluster: kube.Cluster, names: set[str]) -> list[str]:
    pods = checks.list_pods(cluster.core, NS)
    out = checks.node_violations(checks.list_nodes(cluster.core), pods)
    bodies = {d["metadata"]["name"]: d for d in checks.list_deployments(cluster.api, NS)}
    for name in sorted(names):
        if name not in bodies:
            out.append(f"{name} is missing")
        else:
            out += checks.deployment_violations(bodies[name], pods, running=True)
    if not names:
        out += [f"{p['metadata']['name']} is left" for p in pods]
        out += [f"{n} is left" for n in bodies]
    return out


def test_soak_many_deployments_memory_flat_and_placements_valid(
    soak_cluster: kube.Cluster, tmp_path: Path
) -> None:
    cluster = soak_cluster
    nodes_wanted = pick(96, 1000)
    count = pick(24, 200)
    rounds = pick(2, 3)
    record = recorder("soak")
    started = time.monotonic()
    cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    cluster.wait_established("inferencedeployments.shorthop.io")
    nodes = fake.nodes(fake.ClusterShape(hgx_units=nodes_wanted // 8, nodes_per_unit=8))
    for at in range(0, len(nodes), 250):
        cluster.kubectl(
            "apply", "-f", "-", input=yaml.safe_dump(fake.as_list(nodes[at : at + 250]))
        )
    oh.ensure_namespace(cluster, NS)
    oh.ensure_namespace(cluster, "shorthop-system")
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.configuration.connection_pool_maxsize = 16
    operator = oh.OperatorProcess(
        cluster.kubeconfig, tmp_path / "operator", identity="soak", namespaces=(NS,)
    ).start()
    try:
        operator.wait_leading(timeout=180)
        assert operator.proc is not None
        pid = operator.proc.pid
        port = cluster.local.ports()["apiserver"] if cluster.local else 0
        time.sleep(2.0)  # let every watch open

        def sample(when: str) -> dict[str, Any]:
            return {"when": when, **asdict(proc_stats(pid, port)), "watches": _watches(cluster)}

        samples = [sample("synced")]
        record.set("nodes", len(nodes))
        record.set("gpus", 8 * len(nodes))
        record.set("deployments_per_round", count)
        record.set("rounds", rounds)
        phases: list[dict[str, Any]] = []
        for r in range(rounds):
            names = [f"s{r}-{i:03d}" for i in range(count)]
            docs = [
                oh.deployment(n, NS, None, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)])
                for n in names
            ]
            steps: list[tuple[str, Callable[[], object], set[str]]] = [
                ("create", partial(_create_all, api, docs), set(names)),
                ("scale", partial(_patch_decode, api, names[::2], 2), set(names)),
                ("scale-back", partial(_patch_decode, api, names[::2], 1), set(names)),
                ("delete", partial(_delete_all, api), set()),
            ]
            for what, act, alive in steps:
                t0 = time.monotonic()
                act()
                seconds, left = poll(
                    f"round {r} {what}", lambda a=alive: _violations(cluster, a), timeout=600
                )
                phase = {
                    "round": r,
                    "phase": what,
                    "seconds": round(seconds, 1),
                    "violations": left[:10],
                }
                phases.append(phase)
                record.set("phases", phases)
                print(
                    f"[soak] round {r} {what}: {time.monotonic() - t0:.1f}s, "
                    f"violations {len(left)}",
                    flush=True,
                )
                assert not left, yaml.safe_dump(phase)
            samples.append(sample(f"round {r} done"))
            record.set("samples", samples)
            print(f"[soak] {samples[-1]}", flush=True)
        record.set("seconds", round(time.monotonic() - started, 1))
        found = tracebacks([operator.log])
        record.set("operator_tracebacks", len(found))
        assert operator.alive(), "the operator exited"
        assert not found, found[0]
        warm, last = samples[1], samples[-1]
        growth = last["rss_mib"] - warm["rss_mib"]
        record.set("rss_growth_after_warm_round_mib", round(growth, 1))
        assert growth < RSS_GROWTH_LIMIT_MIB, samples
        # As many watches open on the API server as before any deployment existed: none leaked.
        # (Threads and pooled connections grow up to their pools' sizes on first use, then stay.)
        assert last["watches"] <= samples[0]["watches"] + 1, samples
        assert last["threads"] <= THREAD_CAP, samples
    finally:
        operator.stop()

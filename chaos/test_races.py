"""Races with kube-scheduler: plain GPU pods (bound by kube-scheduler) and shorthop deployments
(bound by shorthop) compete for the same nodes at the same moment.

Each run draws, from its own seed: a pool of 3-5 fake HGX H100 nodes (8 GPUs each), one or two
deployments (gpusPerPod 4 or 8), plain pods of 1, 2 or 4 GPUs asking for the rest of the pool
(from 8 GPUs less to 16 more), and which goes first: the plain pods (created by 8 threads) or the
``kubectl apply`` of the deployments, up to 0.3 s apart.

At every state a pod watch shows during the run (``tests/gpu_ledger.py``): no node holds more
GPUs than it has by the pods of one scheduler, and no GPU index is held twice; a node
overcommitted by two binds racing (kube-scheduler's and shorthop's: the API server arbitrates
nothing between them) must stop being so by shorthop moving its pod away. After each run: no
node overcommitted at all, every deployment either Running with a status that matches its pods,
or waiting (Pending, Unschedulable, or Degraded with its Placed condition Unschedulable) for
room that kube-scheduler's pods took, with no duplicate or foreign pod. Conflicts are counted
from the operator's ``shorthop_binds_total`` and its re-planning events; overcommit episodes
from the watch.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from shorthop.topology import fake

from chaos import checks, pick
from chaos.fixtures import OperatorFactory, poll, recorder, settle_namespace
from chaos.ops import by_label, tracebacks
from tests import kube, watching
from tests import operator_harness as oh
from tests.gpu_ledger import GpuLedger

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

GPUS_PER_NODE = 8
SETTLE_SECONDS = 90.0
WAITING = ("Pending", "Unschedulable")


def _waiting(status: dict[str, Any]) -> bool:
    """Waiting for room: Pending/Unschedulable, or Degraded because the pods it yielded to a
    concurrent bind find no room now (its Placed condition says Unschedulable)."""
    if status.get("phase") in WAITING:
        return True
    placed = next((c for c in status.get("conditions") or [] if c.get("type") == "Placed"), {})
    return status.get("phase") == "Degraded" and placed.get("reason") == "Unschedulable"


@pytest.fixture
def race_namespace(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("race") as ns:
        yield ns


def _plain_pod(name: str, pool: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"chaos": "plain"}},
        "spec": {
            "tolerations": [
                {"key": oh.POOL_TAINT, "operator": "Equal", "value": pool, "effect": "NoSchedule"}
            ],
            "containers": [
                {"name": "c", "image": "x", "resources": {"limits": {checks.GPU: str(gpus)}}}
            ],
        },
    }


def _draw(
    rng: random.Random, nodes: int
) -> tuple[list[list[tuple[str, int, int, int]]], list[int]]:
    """The deployments' roles and the plain pods' GPU counts of one run: together they ask for
    about the whole pool, sometimes a little less, sometimes more (then someone must wait)."""
    capacity = nodes * GPUS_PER_NODE
    deployments = []
    used = 0
    for _ in range(rng.choice((1, 2))):
        per_pod = rng.choice((4, 8))
        roles = [("prefill", rng.randint(1, 2), per_pod, per_pod), ("decode", 1, 8, per_pod)]
        demand = sum(r * g for _, r, g, _ in roles)
        if deployments and used + demand > capacity * 2 // 3:
            break
        deployments.append(roles)
        used += demand
    plain: list[int] = []
    room = capacity - used + rng.randint(-8, 16)
    while room > 0:
        gpus = rng.choice((1, 2, 2, 4))
        plain.append(gpus)
        room -= gpus
    return deployments, plain


def test_kube_scheduler_and_shorthop_never_leave_a_node_overcommitted(
    cluster: kube.Cluster, operators: OperatorFactory, race_namespace: str
) -> None:
    ns = race_namespace
    runs = pick(3, 20)
    record = recorder("races")
    record.set("runs_planned", runs)
    record.set("runs", [])
    operator = operators.start(namespaces=(ns,))
    operator.wait_leading(timeout=90)
    started = time.monotonic()
    failures: list[dict[str, Any]] = []
    for run in range(runs):
        rng = random.Random(1000 + run)
        shape = fake.ClusterShape(hgx_units=1, nodes_per_unit=rng.randint(3, 5))
        deployments, plain = _draw(rng, shape.hgx_units * shape.nodes_per_unit)
        delay = round(rng.uniform(-0.3, 0.3), 2)
        with oh.node_pool(cluster, shape, prefix="rc") as (pool, names):
            ledger = GpuLedger(dict.fromkeys(names, GPUS_PER_NODE))
            pods = watching.pod_watch(cluster.core, namespace=ns, check=ledger).start()
            try:
                infds = [f"r{run}-{i}-{uuid.uuid4().hex[:3]}" for i in range(len(deployments))]
                body = yaml.safe_dump_all(
                    oh.deployment(name, ns, pool, roles)
                    for name, roles in zip(infds, deployments, strict=True)
                )
                applier = threading.Thread(
                    target=cluster.kubectl, args=("apply", "-f", "-"), kwargs={"input": body}
                )
                # Both at once: the plain pods a little before or a little after the apply.
                if delay >= 0:
                    applier.start()
                time.sleep(abs(delay))
                with ThreadPoolExecutor(8) as creators:
                    list(
                        creators.map(
                            lambda ig, run=run: cluster.core.create_namespaced_pod(
                                ns, _plain_pod(f"p{run}-{ig[0]}", pool, ig[1])
                            ),
                            enumerate(plain),
                        )
                    )
                    if delay < 0:
                        applier.start()
                applier.join()

                def violations(infds: list[str] = infds) -> list[str]:
                    pods = checks.list_pods(cluster.core, ns)
                    nodes = [
                        n for n in checks.list_nodes(cluster.core) if n["metadata"]["name"] in names
                    ]
                    out = checks.node_violations(nodes, pods)
                    for name in infds:
                        infd = checks.get_deployment(cluster.api, ns, name)
                        if infd is None:
                            out.append(f"{name} is gone")
                        elif _waiting(infd.get("status") or {}):
                            # Waiting for room: what it has must still be its own, exactly named
                            # pods (a replica that yielded a pod to a concurrent bind keeps its
                            # others while it waits, as a repair after a node loss does).
                            out += [
                                v
                                for v in checks.deployment_violations(infd, pods, running=False)
                                if "missing pods" not in v
                            ]
                        else:
                            out += checks.deployment_violations(infd, pods, running=True)
                    return out

                seconds, left = poll(f"run {run}", violations, timeout=SETTLE_SECONDS)
                # Every state up to now checked, the transient ones included.
                try:
                    pods.assert_held()
                except AssertionError as exc:
                    left.append(str(exc))
                left += [f"overcommit not ended by shorthop: {e}" for e in ledger.unresolved()]
            finally:
                pods.stop()
            phases = {
                name: (
                    (checks.get_deployment(cluster.api, ns, name) or {}).get("status") or {}
                ).get("phase")
                for name in infds
            }
            bound_plain = sum(
                1
                for p in checks.list_pods(cluster.core, ns, "chaos=plain")
                if p["spec"].get("nodeName")
            )
            result = {
                "run": run,
                "nodes": len(names),
                "deployments": [[list(r) for r in roles] for roles in deployments],
                "plain_pods": len(plain),
                "plain_gpus": sum(plain),
                "plain_bound": bound_plain,
                "delay_s": delay,
                "phases": phases,
                "settled_s": round(seconds, 2) if not left else None,
                "states_checked": ledger.states,
                "transient_overcommit": [str(e) for e in ledger.episodes],
                "violations": left,
            }
            record.append("runs", result)
            print(
                f"[races] {run:2d} {result['phases']} plain {bound_plain}/{len(plain)} "
                f"settled={result['settled_s']} transient={result['transient_overcommit']} "
                f"violations={len(left)}",
                flush=True,
            )
            if left:
                failures.append(result)
            settle_namespace(cluster, ns)
            cluster.core.delete_collection_namespaced_pod(
                ns, label_selector="chaos=plain", grace_period_seconds=0
            )
            kube.wait_for(
                "the plain pods to go",
                lambda: not checks.list_pods(cluster.core, ns, "chaos=plain"),
                timeout=60,
            )
    metrics = operator.metrics()
    binds = by_label(metrics, "shorthop_binds_total", "result")
    yielded = sum(
        1
        for e in cluster.core.list_namespaced_event(ns).items
        if e.message and "overcommitted by a concurrent bind" in e.message
    )
    record.set("binds", binds)
    record.set("replans_after_overcommit_events", yielded)
    record.set("seconds", round(time.monotonic() - started, 1))
    found = tracebacks(operators.logs())
    record.set("operator_tracebacks", len(found))
    assert not failures, yaml.safe_dump(failures)
    assert not found, found[0]
    assert operator.alive(), "the operator exited"

"""Crash consistency on the DRA path: the operator dies between writing a pod's ResourceClaim
(allocated and reserved) and binding the pod (crash point ``after-claim``), between creating and
binding, or by SIGKILL at a random time, while it places a deployment on nodes whose GPUs are
published in ResourceSlices; the restarted operator (or a standby) converges with the same
zero-tolerance checks as ``test_crash``: no device in two claims at any observed state (a watch
on every claim), every pod's claim allocated to exactly its planned devices and reserved for it,
no orphan or duplicate pod, and after the deployment is deleted no claim of shorthop's left.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from chaos import checks, dra_checks, full, pick
from chaos.fixtures import OperatorFactory, poll, recorder, settle_namespace
from e2e import dra as fdra
from tests import claim_watch, kube
from tests import operator_harness as oh

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

SHAPE = fdra.fake.ClusterShape(hgx_units=2, nodes_per_unit=8, dra=frozenset({"hgx"}))  # 128 GPUs
ROLES = [("prefill", 4, 4, 4), ("decode", 4, 8, 4)]  # 4 + 8 pods, 48 GPUs
LEASE_SECONDS = 5.0
CONVERGE_SECONDS = 150.0


@dataclass(frozen=True)
class Fault:
    point: str  # a crash point, or "sigkill"
    count: int = 0
    delay: float = 0.0
    standby: bool = False

    @property
    def label(self) -> str:
        return (
            f"sigkill@{self.delay:.2f}s"
            if self.point == "sigkill"
            else f"{self.point}:{self.count}"
        )


def fault_plan(seed: int = 11) -> list[Fault]:
    rng = random.Random(seed)
    if not full():
        return [
            Fault("after-claim", 2),
            Fault("after-claim", 7, standby=True),
            Fault("after-create", 4),
            Fault("sigkill", delay=round(rng.uniform(0.1, 0.6), 2)),
        ]
    plan = [Fault("after-claim", n) for n in (1, 2, 3, 5, 8, 11, 12)]
    plan += [Fault("after-create", n) for n in (1, 4, 9)]
    plan += [Fault("after-bind", n) for n in (2, 7)]
    plan += [Fault("sigkill", delay=round(rng.uniform(0.0, 0.8), 2)) for _ in range(8)]
    return [Fault(f.point, f.count, f.delay, standby=i % 3 == 1) for i, f in enumerate(plan)]


@pytest.fixture
def dra_pool(cluster: kube.Cluster) -> Iterator[fdra.DraCluster]:
    tag = uuid.uuid4().hex[:5]
    gpus = fdra.dra_cluster(
        SHAPE, pool=f"crd{tag}", background_namespace=f"crd-{tag}-bg", occupancy=0.5,
        busy=("h100-su0-n07", "h100-su1-n07"),
    )  # fmt: skip
    try:
        fdra.create(cluster, gpus)
        yield gpus
    finally:
        fdra.delete(cluster, gpus)


def _violations(cluster: kube.Cluster, ns: str, name: str) -> list[str]:
    body = checks.get_deployment(cluster.api, ns, name)
    if body is None:
        return [f"{name} is gone"]
    pods = checks.list_pods(cluster.core, ns)
    return checks.deployment_violations(body, pods) + dra_checks.claim_violations(
        pods, claim_watch.list_claims(cluster.api)
    )


def test_crashes_on_the_dra_path_converge_with_no_device_in_two_claims(
    cluster: kube.Cluster, operators: OperatorFactory, dra_pool: fdra.DraCluster
) -> None:
    record = recorder("crash-dra")
    plan = fault_plan()
    record.set("plan", [f.label for f in plan])
    record.set("shape", "16 HGX H100 nodes publishing their GPUs in ResourceSlices; 4 + 8 pods")
    record.set("runs", [])
    watch = claim_watch.ClaimWatch(cluster.api)
    identity = f"dra-{uuid.uuid4().hex[:4]}"
    leader: oh.OperatorProcess | None = None
    results = []
    with cluster.namespace("crash-dra") as ns, watch.running():
        for k, fault in enumerate(plan):
            name = f"d{k}"
            env = {} if fault.point == "sigkill" else {"SHORTHOP_FAULTS": fault.label}
            if leader is not None:
                leader.kill()
            faulty = operators.start(
                identity, namespaces=(ns,), lease_duration=LEASE_SECONDS, env=env
            )
            faulty.wait_leading(timeout=90)
            standby = (
                operators.start(f"{identity}-sb{k}", namespaces=(ns,), lease_duration=LEASE_SECONDS)
                if fault.standby
                else None
            )
            doc = oh.deployment(name, ns, dra_pool.pool, ROLES)
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
            if fault.point == "sigkill":
                time.sleep(fault.delay)
                faulty.kill()
                fired = True
            else:
                deadline = time.monotonic() + 30
                while faulty.alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
                fired = (
                    not faulty.alive() and faulty.proc is not None and faulty.proc.returncode == 137
                )
                faulty.kill()
            claims_at_crash = len(claim_watch.list_claims(cluster.api, ns))
            if standby is not None:
                leader, identity = standby, standby.identity
            else:
                leader = operators.start(identity, namespaces=(ns,), lease_duration=LEASE_SECONDS)
            seconds, violations = poll(
                name,
                lambda name=name: _violations(cluster, ns, name),  # type: ignore[misc]
                timeout=CONVERGE_SECONDS,
            )
            settle_namespace(cluster, ns)
            kube.wait_for(
                "shorthop's claims to be collected",
                lambda: (
                    not dra_checks.leaked_claims(
                        checks.list_pods(cluster.core, ns), claim_watch.list_claims(cluster.api, ns)
                    )
                ),
                timeout=120,
            )
            result = {
                "fault": fault.label,
                "standby": fault.standby,
                "fired": fired,
                "claims_at_crash": claims_at_crash,
                "converged_s": round(seconds, 2) if not violations else None,
                "violations": violations
                + checks.orphans(
                    checks.list_pods(cluster.core, ns), checks.list_deployments(cluster.api, ns)
                ),
            }
            results.append(result)
            record.append("runs", result)
            print(f"[crash-dra] {k:2d} {fault.label:24} {result}", flush=True)
        if leader is not None:
            leader.stop()
    record.set("claim_events_watched", watch.events)
    record.set("double_allocations_observed", len(watch.violations))
    watch.check()
    bad = [r for r in results if r["violations"]]
    assert not bad, yaml.safe_dump(bad)
    tracebacks = [t for t in operators.logs() if "Traceback" in t]
    assert not tracebacks, tracebacks[0][-3000:]
    assert pick(2, 8) <= sum(r["fired"] for r in results), "too few crash points were reached"
    assert any(r["claims_at_crash"] for r in results if r["fault"].startswith("after-claim"))

"""Crash consistency: the operator dies mid-placement (at every crash point of
``shorthop.controller.faults``, at several counts, and by SIGKILL at random times), a new one
takes over, and the deployment converges with no GPU double-booked, no orphan or duplicate pod,
and a status that matches the pods.

Each iteration, on one node pool (fake GB200 NVL72 racks) reused throughout:

1. the faulty operator starts (``SHORTHOP_FAULTS=<point>:<count>``) and takes the lease;
2. it places an 8-prefill + 8-decode deployment (24 pods) - or, for ``after-delete``, places it
   and then scales it down to 4 + 4 (12 deletions) - and dies at the crash point
   (``os._exit(137)``, no clean-up, lease not released), or is SIGKILLed after a random delay;
3. recovery: the restarted process (same identity: it renews the lease at once, as a container
   restarted by the kubelet does) or a standby (another identity: it waits for the lease to
   expire) takes over;
4. every invariant of ``chaos.checks`` must hold within the timeout; the deployment is then
   deleted, and after garbage collection no orphan may remain;
5. every crash point the plan names must have been reached (the process exited 137 there), and
   every random kill must have met a live operator: a fault that did not happen tests nothing.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop.topology import fake

from chaos import checks, full
from chaos.fixtures import OperatorFactory, poll, recorder, settle_namespace
from tests import kube
from tests import operator_harness as oh

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

SHAPE = fake.ClusterShape(nvl72_racks=4, trays_per_rack=18)  # 72 trays, 288 GPUs: two deployments
FULL_ROLES = [("prefill", 8, 4, 4), ("decode", 8, 8, 4)]  # 8 + 16 pods, 96 GPUs
SCALED_ROLES = [("prefill", 4, 4, 4), ("decode", 4, 8, 4)]
# The operator's default lease: a faulty leader must die at its crash point, not lose the lease
# because the machine is busy. A restart in place (same identity) renews it at once; a standby
# waits for it to expire (about 15 s).
LEASE_SECONDS = 15.0
CONVERGE_SECONDS = 150.0
POINT_SECONDS = 120.0  # at most this long for the faulty operator to reach its crash point


@dataclass(frozen=True)
class Fault:
    point: str  # a shorthop.controller.faults point, or "sigkill"
    count: int = 0  # which visit of the point dies
    delay: float = 0.0  # sigkill: seconds after the change was applied
    scale_down: bool = False  # the crash happens while scaling 8+8 down to 4+4
    standby: bool = False  # a standby takes over (else the process restarts in place)

    @property
    def label(self) -> str:
        what = (
            f"sigkill@{self.delay:.2f}s"
            if self.point == "sigkill"
            else f"{self.point}:{self.count}"
        )
        return what + (" (scale-down)" if self.scale_down else "")


def fault_plan(seed: int = 7) -> list[Fault]:
    """The (point, count) pairs and random kill times of one run."""
    rng = random.Random(seed)
    if not full():
        return [
            Fault("after-create", 3),
            Fault("after-bind", 5, standby=True),
            Fault("after-delete", 2, scale_down=True),
            Fault("sigkill", delay=round(rng.uniform(0.05, 0.6), 2)),
        ]
    plan = [Fault("before-create", n) for n in (1, 2, 4, 7, 11, 16, 20, 24)]
    plan += [Fault("after-create", n) for n in (1, 2, 3, 6, 9, 13, 17, 21, 24)]
    plan += [Fault("after-bind", n) for n in (1, 3, 5, 8, 12, 15, 19, 24)]
    # Every count must be reached (the test fails on a crash point that was not): 24 pods are
    # created and bound, 12 deleted by the scale-down, but the status may be written just once
    # per change (when the first visit after the binds already sees every pod Ready).
    plan += [Fault("before-status", 1)]
    plan += [Fault("after-delete", n, scale_down=True) for n in (1, 2, 4, 7, 10, 12)]
    plan += [Fault("before-status", 1, scale_down=True)]
    plan += [
        Fault("sigkill", delay=round(rng.uniform(0.0, 0.8), 2), scale_down=i % 5 == 4)
        for i in range(20)
    ]
    # Every third recovery is a standby taking an expired lease; the rest restart in place.
    return [
        Fault(f.point, f.count, f.delay, f.scale_down, standby=i % 3 == 1)
        for i, f in enumerate(plan)
    ]


@pytest.fixture
def crash_namespace(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("crash") as ns:
        yield ns


def _apply(cluster: kube.Cluster, doc: dict[str, Any]) -> None:
    """Create, or replace the spec of, an InferenceDeployment (the Python client: quicker than
    kubectl, so a kill delay counts from the API write)."""
    custom = client.CustomObjectsApi(cluster.api)
    meta = doc["metadata"]
    try:
        custom.create_namespaced_custom_object(
            checks.GROUP, checks.VERSION, meta["namespace"], checks.PLURAL, doc
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        custom.patch_namespaced_custom_object(
            checks.GROUP, checks.VERSION, meta["namespace"], checks.PLURAL, meta["name"],
            {"spec": doc["spec"]},
        )  # fmt: skip


class Lane:
    """One operator identity on one pool: runs faults one after another."""

    def __init__(
        self, cluster: kube.Cluster, operators: OperatorFactory, ns: str, pool: str, nodes: list
    ) -> None:
        self.cluster = cluster
        self.operators = operators
        self.ns = ns
        self.pool = pool
        self.nodes = nodes
        self.identity = f"lane-{uuid.uuid4().hex[:4]}"
        self.leader: oh.OperatorProcess | None = None

    def _start(self, identity: str, env: dict[str, str] | None = None) -> oh.OperatorProcess:
        return self.operators.start(
            identity,
            namespaces=(self.ns,),
            lease_duration=LEASE_SECONDS,
            env=env or {},
        )

    def _check(self, name: str, running: bool = True) -> list[str]:
        body = checks.get_deployment(self.cluster.api, self.ns, name)
        if body is None:
            return [f"{name} is gone"]
        pods = checks.list_pods(self.cluster.core, self.ns)
        node_objs = [
            n for n in checks.list_nodes(self.cluster.core) if n["metadata"]["name"] in self.nodes
        ]
        return checks.deployment_violations(body, pods, running=running) + checks.node_violations(
            node_objs, pods
        )

    def run(self, k: int, fault: Fault) -> dict[str, Any]:
        name = f"c{k}"
        t0 = time.monotonic()
        marks: dict[str, float] = {}
        env = (
            {} if fault.point == "sigkill" else {"SHORTHOP_FAULTS": f"{fault.point}:{fault.count}"}
        )
        if fault.scale_down:
            # The fault-free leader places the full deployment; the faulty one only scales it.
            if self.leader is None:
                self.leader = self._start(self.identity)
                self.leader.wait_leading(timeout=90)
            _apply(self.cluster, oh.deployment(name, self.ns, self.pool, FULL_ROLES))
            oh.wait_running(self.cluster, self.ns, name, timeout=CONVERGE_SECONDS)
        # Hand over: the previous (idle) leader dies, the faulty one takes its identity and lease.
        if self.leader is not None:
            self.leader.kill()
        faulty = self._start(self.identity, env)
        faulty.wait_leading(timeout=90)
        marks["lead"] = time.monotonic() - t0
        standby = self._start(f"{self.identity}-sb{k}") if fault.standby else None
        roles = SCALED_ROLES if fault.scale_down else FULL_ROLES
        _apply(self.cluster, oh.deployment(name, self.ns, self.pool, roles))
        triggered = time.monotonic()
        if fault.point == "sigkill":
            time.sleep(fault.delay)  # the random moment of the kill, not a wait for anything
            # Fired when the kill is what ended it (it had not exited on its own before).
            fired = faulty.alive()
            faulty.kill()
            fired = fired and faulty.exit_code() == -signal.SIGKILL
        else:
            # The crash point ends the process (os._exit(137)); waiting on its exit is waiting
            # on the event itself. A process that never gets there is killed after a while and
            # the point counts as not reached, which fails the test.
            fired = faulty.wait_exit(POINT_SECONDS) == 137
            if not fired:
                faulty.kill()
        crashed = time.monotonic()
        pods_at_crash = len(
            checks.list_pods(self.cluster.core, self.ns, f"{checks.DEPLOYMENT_LABEL}={name}")
        )
        if standby is not None:
            recovery = standby
            self.identity = standby.identity
        else:
            recovery = self._start(self.identity)
        self.leader = recovery
        marks["crash"] = time.monotonic() - t0
        seconds, violations = poll(name, lambda: self._check(name), timeout=CONVERGE_SECONDS)
        marks["converged"] = time.monotonic() - t0
        # Clean up; after garbage collection nothing labelled shorthop's may be left ownerless.
        settle_namespace(self.cluster, self.ns)
        marks["settled"] = time.monotonic() - t0
        orphaned = checks.orphans(
            checks.list_pods(self.cluster.core, self.ns),
            checks.list_deployments(self.cluster.api, self.ns),
        )
        return {
            "fault": fault.label,
            **{
                k2: v
                for k2, v in asdict(fault).items()
                if k2 != "delay" or fault.point == "sigkill"
            },
            "fired": fired,
            "crashed_after_s": round(crashed - triggered, 2),
            "pods_at_crash": pods_at_crash,
            "recovery": "standby" if fault.standby else "restart",
            "converged_s": round(seconds, 2) if not violations else None,
            "violations": violations + orphaned,
            "timeline_s": {k2: round(v, 2) for k2, v in marks.items()},
        }


def test_crash_points_and_random_kills_converge_consistently(
    cluster: kube.Cluster, operators: OperatorFactory, crash_namespace: str
) -> None:
    record = recorder("crash")
    plan = fault_plan()
    record.set("plan", [f.label for f in plan])
    record.set(
        "shape",
        "4 GB200 NVL72 racks (72 trays x 4 GPUs); 8 prefill x 4 GPUs + 8 decode x 8 GPUs (2 pods)",
    )
    record.set("lease_seconds", LEASE_SECONDS)
    record.set("runs", [])
    started = time.monotonic()
    with oh.node_pool(cluster, SHAPE, prefix="cr") as (pool, nodes):
        lane = Lane(cluster, operators, crash_namespace, pool, nodes)
        results = []
        for k, fault in enumerate(plan):
            result = lane.run(k, fault)
            results.append(result)
            record.append("runs", result)
            print(
                f"[crash] {k:2d} {fault.label:32} fired={result['fired']} "
                f"converged={result['converged_s']} violations={len(result['violations'])} "
                f"{result['timeline_s']}",
                flush=True,
            )
        if lane.leader is not None:
            lane.leader.stop()
    record.set("seconds", round(time.monotonic() - started, 1))
    tracebacks = [t for t in operators.logs() if "Traceback" in t]
    record.set("operator_tracebacks", len(tracebacks))
    bad = [r for r in results if r["violations"]]
    assert not bad, yaml.safe_dump(bad)
    assert not tracebacks, tracebacks[0][-3000:]
    missed = [r["fault"] for r in results if not r["fired"]]
    assert not missed, f"crash points (or kills) that never happened: {missed}"

"""The operator against the real API server: placement, status, idempotence, scaling, repair,
races with kube-scheduler, clean-up, restarts, HA fail-over, invalid specs, metrics."""

from __future__ import annotations

import contextlib
import urllib.error
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop.topology import fake

from tests import gpu_ledger, kube, watching
from tests import operator_harness as oh

pytestmark = pytest.mark.cluster
NVL = fake.ClusterShape(nvl72_racks=2, trays_per_rack=6, hgx_units=1, nodes_per_unit=4)


@pytest.fixture(scope="module")
def operator(
    cluster: kube.Cluster, infd_crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[oh.OperatorProcess]:
    with oh.leading_operator(cluster, tmp_path_factory.mktemp("operator"), "it") as op:
        yield op


@pytest.fixture
def ns(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("op") as name:
        yield name


def apply(cluster: kube.Cluster, doc: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def test_create_places_every_pod_on_the_expected_tiers_and_fills_status(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL, operator=operator) as (pool, _):
        apply(
            cluster,
            oh.deployment(
                "llm", ns, pool, [("prefill", 2, 4, 4), ("decode", 2, 8, 4)], placement={}
            ),
        )
        body = oh.wait_running(cluster, ns, "llm")
        status = body["status"]
        assert status["ready"] == "6/6"
        assert status["observedGeneration"] == body["metadata"]["generation"]
        # Decode replicas span two trays of one NVL72 rack; prefill sits next to its decode peer.
        assert {r["tier"] for r in status["replicas"] if r["role"] == "decode"} == {"nvlink-domain"}
        # Traffic all-to-all (the default): every prefill GPU with every decode GPU.
        assert status["tiers"] == {"nvlink-domain": (2 * 4) * (2 * 8)}
        assert status["kvTransfers"] == []  # peer pairs are for paired edges only
        (edge,) = status["kvTraffic"]
        assert (edge["from"], edge["to"], edge["pattern"]) == ("prefill", "decode", "all-to-all")
        assert edge["replicaPairs"] == {"nvlink-domain": 2 * 2}
        assert edge["gpuPairs"] == {"nvlink-domain": (2 * 4) * (2 * 8)}
        assert edge["meanModeledMs"] > 0
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Placed": "True",
            "Ready": "True",
            "Degraded": "False",
        }
        # Nothing churned since the plan: a fresh plan on the same GPUs costs the same.
        score = status["placementScore"]
        assert score["current"] == status["cost"]["total"] > 0
        assert score["achievable"] == score["current"]
        assert score["ratio"] == 1.0
        placed = oh.pods(cluster, ns, "llm")
        assert len(placed) == 6
        for pod in placed:
            assert pod.spec.scheduler_name == "shorthop"
            assert pod.spec.node_name.startswith(pool)
            assert pod.metadata.owner_references[0].kind == "InferenceDeployment"
            assert len(pod.metadata.annotations["shorthop.io/gpus"].split(",")) == 4
            env = {e.name: e.value for e in pod.spec.containers[0].env}
            assert env["SHORTHOP_ROLE"] == pod.metadata.labels["shorthop.io/role"]
            assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"
        prefill0 = next(p for p in placed if p.metadata.name == "llm-prefill-0-0")
        env0 = {e.name: e.value for e in prefill0.spec.containers[0].env}
        assert env0["SHORTHOP_PEER_SERVICES"] == f"llm-decode.{ns}.svc"
        assert not env0["SHORTHOP_PEERS"]  # no paired edge (an empty value reads as None)
        services = {s.metadata.name for s in cluster.core.list_namespaced_service(ns).items}
        assert services == {"llm-prefill", "llm-decode"}
        oh.wait_event(cluster, ns, "llm", "Placed")
        table = cluster.kubectl("get", "infd", "llm", "-n", ns).stdout.splitlines()
        assert table[1].split()[1:4] == ["Running", "6/6", "nvlink-domain"]


def _written(cluster: kube.Cluster, ns: str, name: str) -> dict[str, Any]:
    """Everything a visit of the deployment could write, by resourceVersion (and the events)."""
    return {
        "deployment": oh.get_infd(cluster, ns, name)["metadata"]["resourceVersion"],
        "pods": {p.metadata.name: p.metadata.resource_version for p in oh.pods(cluster, ns, name)},
        "services": {
            s.metadata.name: s.metadata.resource_version
            for s in cluster.core.list_namespaced_service(ns).items
        },
        "events": sorted(
            (e.metadata.name, e.metadata.resource_version) for e in oh.events(cluster, ns, name)
        ),
    }


def _settled(cluster: kube.Cluster, ns: str, name: str, pods: int) -> bool:
    """The operator has written the status of the last state it can see: Running, every pod
    Ready and counted, for the current generation (nothing left for a visit to change)."""
    body = oh.get_infd(cluster, ns, name)
    status = body.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    ready = [
        p
        for p in oh.pods(cluster, ns, name)
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return (
        status.get("phase") == "Running"
        and status.get("ready") == f"{pods}/{pods}"
        and status.get("observedGeneration") == body["metadata"]["generation"]
        and conditions.get("Ready") == "True"
        and len(ready) == pods
    )


def test_second_reconcile_of_the_same_generation_changes_nothing(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    """A visit that writes nothing cannot be waited for, so the second visit runs here, in this
    process (the operator's reconciler against the real API server, after a touch of the
    object's labels): when it returns it is done, and nothing it could write has changed."""
    with oh.node_pool(cluster, NVL, operator=operator) as (pool, _):
        apply(cluster, oh.deployment("idem", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)]))
        kube.wait_for("the final status", lambda: _settled(cluster, ns, "idem", 3), timeout=90)
        cluster.kubectl("label", "infd", "idem", "-n", ns, "touched=yes")
        status = oh.get_infd(cluster, ns, "idem")["status"]
        before = _written(cluster, ns, "idem")
        oh.visit_once(cluster, ns, "idem")
        assert _written(cluster, ns, "idem") == before, "the visit wrote to the cluster"
        assert oh.get_infd(cluster, ns, "idem")["status"] == status


def test_scale_up_and_down(cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str) -> None:
    with oh.node_pool(cluster, NVL, operator=operator) as (pool, _):
        apply(
            cluster, oh.deployment("scale", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)])
        )
        oh.wait_running(cluster, ns, "scale")
        first = {p.metadata.name: p.spec.node_name for p in oh.pods(cluster, ns, "scale")}
        apply(
            cluster, oh.deployment("scale", ns, pool, [("prefill", 3, 4, 4), ("decode", 2, 8, 4)])
        )
        kube.wait_for(
            "7 pods running",
            lambda: oh.get_infd(cluster, ns, "scale")["status"].get("ready") == "7/7",
            timeout=90,
        )
        after = {p.metadata.name: p.spec.node_name for p in oh.pods(cluster, ns, "scale")}
        assert all(after[name] == node for name, node in first.items()), (
            "existing replicas must stay"
        )
        apply(
            cluster, oh.deployment("scale", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)])
        )
        kube.wait_for(
            "3 pods",
            lambda: (
                len([p for p in oh.pods(cluster, ns, "scale") if not p.metadata.deletion_timestamp])
                == 3
            ),
            timeout=60,
        )
        oh.wait_running(cluster, ns, "scale")
        assert oh.get_infd(cluster, ns, "scale")["status"]["ready"] == "3/3"


def test_deleting_a_node_repairs_only_the_replica_that_lost_it(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL, operator=operator) as (pool, _):
        apply(
            cluster, oh.deployment("repair", ns, pool, [("prefill", 1, 4, 4), ("decode", 2, 8, 4)])
        )
        oh.wait_running(cluster, ns, "repair")
        before = {p.metadata.name: p.spec.node_name for p in oh.pods(cluster, ns, "repair")}
        victim = before["repair-decode-1-0"]
        cluster.core.delete_node(victim)

        def moved() -> bool:
            now = {
                p.metadata.name: p.spec.node_name
                for p in oh.pods(cluster, ns, "repair")
                if not p.metadata.deletion_timestamp
            }
            return (
                len(now) == len(before)
                and victim not in now.values()
                and all(now.get(k) for k in before)
            )

        kube.wait_for("the lost pod re-placed", moved, timeout=90)
        after = {p.metadata.name: p.spec.node_name for p in oh.pods(cluster, ns, "repair")}
        untouched = {k: v for k, v in before.items() if v != victim}
        assert all(after[k] == v for k, v in untouched.items()), "pods on healthy nodes must stay"
        oh.wait_running(cluster, ns, "repair")
        oh.wait_event(cluster, ns, "repair", "Repairing", contains=victim)


def _plain_gpu_pod(name: str, pool: str, gpus: int) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            tolerations=[client.V1Toleration(key=oh.POOL_TAINT, value=pool, effect="NoSchedule")],
            containers=[
                client.V1Container(
                    name="c",
                    image="x",
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
                )
            ],
        ),
    )


def test_bind_races_with_kube_scheduler_never_let_one_scheduler_overcommit_a_node(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    """Checked at every state the pod watch shows, not at samples: no node ever holds more GPUs
    than it has by the pods of one scheduler, no GPU index is held twice, and an overcommit by
    two binds racing (kube-scheduler's and shorthop's, which the API server does not arbitrate;
    see tests/gpu_ledger.py) ends by shorthop moving its pod away."""
    shape = fake.ClusterShape(hgx_units=1, nodes_per_unit=4)
    with oh.node_pool(cluster, shape, operator=operator) as (pool, names):
        ledger = gpu_ledger.GpuLedger(dict.fromkeys(names, 8))
        with watching.pod_watch(cluster.core, namespace=ns, check=ledger) as pods:
            # kube-scheduler floods the same nodes with plain GPU pods while shorthop places.
            # Every pod takes 4 GPUs, so whatever nodes kube-scheduler picks, what is left
            # always fits the deployment (2-GPU plain pods spread over the nodes could strand
            # it).
            apply(
                cluster,
                oh.deployment("race", ns, pool, [("prefill", 2, 4, 4), ("decode", 1, 8, 4)]),
            )
            for i in range(4):
                cluster.core.create_namespaced_pod(ns, _plain_gpu_pod(f"plain-{i}", pool, 4))

            def full(state: Mapping[str, Mapping[str, Any]]) -> bool:
                """All 8 pods bound, the pool's 32 GPUs taken, nothing left to bind, and no
                node over its GPUs (a racing overcommit has been resolved)."""
                mine = list(state.values())
                return (
                    len(mine) == 8
                    and all(gpu_ledger.active(p) for p in mine)
                    and not any(p["metadata"].get("deletionTimestamp") for p in mine)
                    and sum(gpu_ledger.gpu_request(p) for p in mine) == 32
                    and not ledger.open_episodes()
                )

            pods.wait_until("the pool to fill without an overcommitted node", full, timeout=120)
            oh.wait_running(cluster, ns, "race")
            pods.assert_held()
        assert not ledger.unresolved(), ledger.unresolved()
        print(f"[race] {ledger.summary()}")


def test_deleting_the_deployment_removes_its_pods_and_services(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL, operator=operator) as (pool, _):
        apply(cluster, oh.deployment("gone", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)]))
        oh.wait_running(cluster, ns, "gone")
        cluster.kubectl("delete", "infd", "gone", "-n", ns, "--wait=true")
        kube.wait_for(
            "pods garbage-collected", lambda: not oh.pods(cluster, ns, "gone"), timeout=60
        )
        kube.wait_for(
            "services garbage-collected",
            lambda: not cluster.core.list_namespaced_service(ns).items,
            timeout=60,
        )


def test_unknown_tier_is_reported_as_an_invalid_condition(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    doc = oh.deployment("typo", ns, None, [("decode", 1, 8, 8)])
    doc["spec"]["roles"][0]["replicaScope"] = "nvlink-domian"
    apply(cluster, doc)
    kube.wait_for("Invalid", lambda: oh.phase(cluster, ns, "typo") == "Invalid", timeout=30)
    status = oh.get_infd(cluster, ns, "typo")["status"]
    assert "spec.roles[0].replicaScope" in status["message"]
    assert "nvlink-domain" in status["message"]
    oh.wait_event(cluster, ns, "typo", "InvalidSpec", contains="replicaScope")
    assert not oh.pods(cluster, ns, "typo")


def _bound_to(state: Mapping[str, Mapping[str, Any]], nodes: list[str]) -> list[str]:
    return [
        f"{watching.pod_name(p)} bound to {p['spec']['nodeName']}"
        for p in state.values()
        if p["spec"].get("nodeName") in nodes
    ]


def test_infeasible_deployment_is_unschedulable_then_placed_when_room_appears(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    one_node = fake.ClusterShape(hgx_units=1, nodes_per_unit=1)
    with oh.node_pool(cluster, one_node, operator=operator) as (pool, _):
        apply(cluster, oh.deployment("big", ns, pool, [("decode", 2, 8, 8)]))
        kube.wait_for(
            "Unschedulable", lambda: oh.phase(cluster, ns, "big") == "Unschedulable", timeout=30
        )
        message = oh.get_infd(cluster, ns, "big")["status"]["message"]
        assert "spec.roles[0]" in message
        assert "role decode" in message
        # A second pool with a different taint cannot help: a visit that sees it (run here, so
        # that it is known to have happened) creates nothing and leaves it Unschedulable ...
        with (
            oh.node_pool(cluster, one_node, prefix=pool[:1]) as (_, other),
            watching.pod_watch(
                cluster.core, namespace=ns, check=lambda state: _bound_to(state, other)
            ) as pods,
        ):
            oh.visit_once(cluster, ns, "big")
            assert not oh.pods(cluster, ns, "big")
            assert oh.phase(cluster, ns, "big") == "Unschedulable"
            # ... one in the same pool does, and the other pool is never used.
            extra = oh.pool_nodes(pool, one_node)
            extra[0]["metadata"]["name"] += "-extra"
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(extra[0]))
            try:
                oh.wait_running(cluster, ns, "big", timeout=60)
                pods.assert_held()
            finally:
                cluster.core.delete_node(extra[0]["metadata"]["name"])


def test_metrics_endpoint_serves_the_named_metrics(
    cluster: kube.Cluster, operator: oh.OperatorProcess
) -> None:
    text = operator.metrics()
    for name in (
        "shorthop_placement_latency_seconds_bucket",
        "shorthop_unschedulable_deployments",
        "shorthop_leader 1.0",
        "shorthop_binds_total",
        "shorthop_pods_per_tier",
        "shorthop_placement_score",
    ):
        assert name in text, name
    assert operator.get(operator.health_port, "/healthz") == "ok"
    # Ready once the leader's caches synced (503 before: run alone, this test may come first).
    kube.wait_for("/readyz to answer ok", lambda: _ready(operator), timeout=60)


def _ready(operator: oh.OperatorProcess) -> bool:
    try:
        return operator.get(operator.health_port, "/readyz") == "ok"
    except urllib.error.HTTPError as exc:
        if exc.code != 503:  # anything but "not ready yet" is a failure
            raise
        return False


@contextlib.contextmanager
def standing_down(operator: oh.OperatorProcess) -> Iterator[None]:
    """The module's operator stopped (it hands its lease back) while a test runs operators of its
    own, and started again afterwards, whatever happened: the tests after it need it."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()
        operator.wait_leading()


def test_restart_mid_placement_converges_without_duplicates(
    cluster: kube.Cluster, infd_crd: str, ns: str, tmp_path: Path, operator: oh.OperatorProcess
) -> None:
    # The module's operator stands down; a second one takes the lease after the first is killed.
    with (
        standing_down(operator),
        oh.node_pool(cluster, fake.ClusterShape(nvl72_racks=2, trays_per_rack=18)) as (pool, _),
    ):
        op = oh.OperatorProcess(cluster.kubeconfig, tmp_path, identity="restart-a").start()
        try:
            op.wait_leading()
            apply(
                cluster,
                oh.deployment("crash", ns, pool, [("prefill", 8, 4, 4), ("decode", 8, 8, 4)]),
            )
            kube.wait_for(
                "some pods created",
                lambda: len(oh.pods(cluster, ns, "crash")) >= 1,
                timeout=30,
                interval=0.02,
            )
        finally:
            op.kill()
        op2 = oh.OperatorProcess(cluster.kubeconfig, tmp_path, identity="restart-b").start()
        try:
            op2.wait_leading(timeout=60)
            oh.wait_running(cluster, ns, "crash", timeout=120)
            placed = oh.pods(cluster, ns, "crash")
            assert sorted(p.metadata.name for p in placed) == sorted(
                [f"crash-prefill-{r}-0" for r in range(8)]
                + [f"crash-decode-{r}-{p}" for r in range(8) for p in range(2)]
            )
            used: dict[tuple[str, str], str] = {}
            for p in placed:
                for g in p.metadata.annotations["shorthop.io/gpus"].split(","):
                    assert (p.spec.node_name, g) not in used, (
                        f"GPU {g} of {p.spec.node_name} double-booked"
                    )
                    used[(p.spec.node_name, g)] = p.metadata.name
        finally:
            op2.stop()


def _standby(op: oh.OperatorProcess) -> bool:
    """Serving, ready, and saying it does not lead (not merely unreachable)."""
    try:
        ready = op.get(op.health_port, "/readyz") == "ok"
        return ready and "shorthop_leader 0.0" in op.metrics()
    except OSError:
        return False


def test_ha_standby_takes_over_when_the_leader_dies(
    cluster: kube.Cluster, infd_crd: str, ns: str, tmp_path: Path, operator: oh.OperatorProcess
) -> None:
    """Every state of the Lease is watched: it names a while a lives (b runs, as a standby, all
    that time), then b; never b before a was killed."""
    holders: list[str | None] = []

    def record(leases: Mapping[str, Mapping[str, Any]]) -> list[str]:
        holders.append(watching.holder(leases))
        return []

    coordination = client.CoordinationV1Api(cluster.api)
    with standing_down(operator), oh.node_pool(cluster, NVL) as (pool, _):
        a = oh.OperatorProcess(cluster.kubeconfig, tmp_path, identity="ha-a").start()
        b = oh.OperatorProcess(cluster.kubeconfig, tmp_path, identity="ha-b")
        lease = watching.lease_watch(coordination, a.lease_namespace, "shorthop-leader", record)
        try:
            a.wait_leading()
            with lease:
                b.start()
                kube.wait_for("b serving as a standby", lambda: _standby(b), timeout=60)
                lease.caught_up()
                before_kill = len(holders)
                a.kill()
                b.wait_leading(timeout=60)
                lease.wait_until("b to hold the lease", lambda s: watching.holder(s) == "ha-b", 30)
            apply(
                cluster, oh.deployment("ha", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)])
            )
            oh.wait_running(cluster, ns, "ha", timeout=60)
            assert len(oh.pods(cluster, ns, "ha")) == 3
        finally:
            a.stop()
            b.stop()
    assert set(holders[:before_kill]) == {"ha-a"}, holders
    assert [h for i, h in enumerate(holders) if i == 0 or holders[i - 1] != h] == ["ha-a", "ha-b"]


def _serving(state: Mapping[str, Mapping[str, Any]], replica: str) -> bool:
    """Every pod of this decode replica is there, bound, not terminating and Ready."""
    pods = [
        p
        for p in state.values()
        if p["metadata"]["labels"]["shorthop.io/role"] == "decode"
        and p["metadata"]["labels"]["shorthop.io/replica"] == replica
        and p["spec"].get("nodeName")
        and not p["metadata"].get("deletionTimestamp")
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    ]
    return len(pods) == 2


def test_template_change_replaces_replicas_one_at_a_time_on_their_gpus(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL, operator=operator) as (pool, _):
        doc = oh.deployment("roll", ns, pool, [("prefill", 1, 4, 4), ("decode", 2, 8, 4)])
        apply(cluster, doc)
        oh.wait_running(cluster, ns, "roll")
        before = {
            p.metadata.name: (
                p.spec.node_name,
                p.metadata.annotations["shorthop.io/gpus"],
                p.metadata.uid,
            )
            for p in oh.pods(cluster, ns, "roll")
        }
        old_uids = {uid for _, _, uid in before.values()}

        one_down: list[int] = []  # states with a replica down: the roll was seen happening

        def one_serves(state: Mapping[str, Mapping[str, Any]]) -> list[str]:
            """Checked at every state: never both decode replicas down at once."""
            serving = [_serving(state, "0"), _serving(state, "1")]
            if serving.count(False) == 1:
                one_down.append(len(one_down))
            return [] if any(serving) else ["both decode replicas are down"]

        def rolled(state: Mapping[str, Mapping[str, Any]]) -> bool:
            fresh = {
                p["metadata"]["labels"]["shorthop.io/replica"]
                for p in state.values()
                if p["metadata"]["labels"]["shorthop.io/role"] == "decode"
                and p["metadata"]["uid"] not in old_uids
            }
            return fresh == {"0", "1"} and _serving(state, "0") and _serving(state, "1")

        with watching.pod_watch(
            cluster.core, namespace=ns, selector="shorthop.io/deployment=roll", check=one_serves
        ) as pods:
            pods.wait_until(
                "both decode replicas serving",
                lambda state: _serving(state, "0") and _serving(state, "1"),
                timeout=60,
            )
            doc["spec"]["roles"][1]["template"]["spec"]["containers"][0]["env"] = [
                {"name": "VERSION", "value": "2"}
            ]
            apply(cluster, doc)
            pods.wait_until("both decode replicas replaced", rolled, timeout=120)
            oh.wait_running(cluster, ns, "roll")
            pods.assert_held()
        assert one_down, "no state with a decode replica down was seen: the check saw no roll"
        after = {
            p.metadata.name: (p.spec.node_name, p.metadata.annotations["shorthop.io/gpus"])
            for p in oh.pods(cluster, ns, "roll")
        }
        assert after == {name: (node, gpus) for name, (node, gpus, _) in before.items()}, (
            "replicas must keep their GPUs"
        )
        assert before["roll-prefill-0-0"][2] == oh.pods(cluster, ns, "roll")[-1].metadata.uid, (
            "prefill untouched"
        )


def test_metrics_and_health_endpoints_expose_no_credentials(
    cluster: kube.Cluster, operator: oh.OperatorProcess
) -> None:
    kubeconfig = yaml.safe_load(Path(operator.kubeconfig).read_text())
    secrets = []
    for user in kubeconfig["users"]:
        for key, value in user["user"].items():
            if key in ("client-key", "client-certificate"):
                # The base64 lines of the PEM files the operator authenticates with.
                body = Path(value).read_text().splitlines()
                secrets += [line for line in body if line and not line.startswith("-----")]
            elif key in ("client-key-data", "client-certificate-data", "token"):
                secrets.append(value)
    assert secrets, "the test kubeconfig carries credentials to look for"
    pages = [
        operator.metrics(),
        operator.get(operator.health_port, "/healthz"),
        operator.get(operator.health_port, "/readyz"),
    ]
    for page in pages:
        assert "PRIVATE KEY" not in page
        assert "Bearer" not in page
        for secret in secrets:
            assert secret[:32] not in page
    # Nothing but metric families of shorthop, Python and the process.
    families = {line.split()[2] for line in pages[0].splitlines() if line.startswith("# TYPE")}
    assert all(f.startswith(("shorthop_", "python_", "process_")) for f in families), families

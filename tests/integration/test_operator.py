"""The operator against the real API server: placement, status, idempotence, scaling, repair,
races with kube-scheduler, clean-up, restarts, HA fail-over, invalid specs, metrics."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from shorthop.topology import fake

from tests import kube
from tests import operator_harness as oh

pytestmark = pytest.mark.cluster
NVL = fake.ClusterShape(nvl72_racks=2, trays_per_rack=6, hgx_units=1, nodes_per_unit=4)


@pytest.fixture(scope="module")
def operator(
    cluster: kube.Cluster, infd_crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[oh.OperatorProcess]:
    oh.ensure_namespace(cluster, "shorthop-system")
    op = oh.OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator"),
        identity=f"it-{uuid.uuid4().hex[:4]}",
    ).start()
    try:
        op.wait_leading()
        yield op
    finally:
        op.stop()


@pytest.fixture
def ns(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("op") as name:
        yield name


def apply(cluster: kube.Cluster, doc: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def test_create_places_every_pod_on_the_expected_tiers_and_fills_status(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL) as (pool, _):
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
        assert status["tiers"] == {"nvlink-domain": 2 * 4 * 8}
        assert [t["tier"] for t in status["kvTransfers"]] == ["nvlink-domain", "nvlink-domain"]
        assert all(t["modeledMs"] > 0 for t in status["kvTransfers"])
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Placed": "True",
            "Ready": "True",
            "Degraded": "False",
        }
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
        assert (
            "llm-decode-0-0.llm-decode"
            in {e.name: e.value for e in prefill0.spec.containers[0].env}["SHORTHOP_PEERS"]
        )
        services = {s.metadata.name for s in cluster.core.list_namespaced_service(ns).items}
        assert services == {"llm-prefill", "llm-decode"}
        oh.wait_event(cluster, ns, "llm", "Placed")
        table = cluster.kubectl("get", "infd", "llm", "-n", ns).stdout.splitlines()
        assert table[1].split()[1:4] == ["Running", "6/6", "nvlink-domain"]


def test_second_reconcile_of_the_same_generation_changes_nothing(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL) as (pool, _):
        apply(cluster, oh.deployment("idem", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)]))
        body = oh.wait_running(cluster, ns, "idem")
        time.sleep(2)  # let the status settle
        body = oh.get_infd(cluster, ns, "idem")
        versions = {
            p.metadata.name: p.metadata.resource_version for p in oh.pods(cluster, ns, "idem")
        }
        # Touch the object (a label) so the operator reconciles it again; remember that write.
        cluster.kubectl("label", "infd", "idem", "-n", ns, "touched=yes")
        touched = oh.get_infd(cluster, ns, "idem")["metadata"]["resourceVersion"]
        time.sleep(3)
        after = oh.get_infd(cluster, ns, "idem")
        assert after["status"] == body["status"]
        assert after["metadata"]["resourceVersion"] == touched, (
            "the operator wrote to the object again"
        )
        assert {
            p.metadata.name: p.metadata.resource_version for p in oh.pods(cluster, ns, "idem")
        } == versions


def test_scale_up_and_down(cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str) -> None:
    with oh.node_pool(cluster, NVL) as (pool, _):
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
    with oh.node_pool(cluster, NVL) as (pool, _):
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


def test_bind_races_with_kube_scheduler_never_overcommit_a_node(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    shape = fake.ClusterShape(hgx_units=1, nodes_per_unit=4)
    with oh.node_pool(cluster, shape) as (pool, names):
        # kube-scheduler floods the same nodes with plain GPU pods while shorthop places.
        plain = [
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=f"plain-{i}"),
                spec=client.V1PodSpec(
                    tolerations=[
                        client.V1Toleration(key=oh.POOL_TAINT, value=pool, effect="NoSchedule")
                    ],
                    containers=[
                        client.V1Container(
                            name="c",
                            image="x",
                            resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "4"}),
                        )
                    ],
                ),
            )
            for i in range(4)
        ]
        # Every pod takes 4 GPUs, so whatever nodes kube-scheduler picks, what is left always
        # fits the deployment (2-GPU plain pods spread over the nodes could strand it).
        apply(cluster, oh.deployment("race", ns, pool, [("prefill", 2, 4, 4), ("decode", 1, 8, 4)]))
        for pod in plain:
            cluster.core.create_namespaced_pod(ns, pod)

        def settled() -> bool:
            bound = oh.gpus_bound(cluster)
            return (
                all(bound.get(n, 0) <= 8 for n in names)
                and sum(bound.get(n, 0) for n in names) == 32
            )

        kube.wait_for("the pool to fill without overcommit", settled, timeout=120)
        oh.stable(
            lambda: (
                [None for n, g in oh.gpus_bound(cluster).items() if n in names and g > 8] == []
                or pytest.fail("overcommitted")
            ),
            3,
        )


def test_deleting_the_deployment_removes_its_pods_and_services(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL) as (pool, _):
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
    assert "spec.roles[decode].replicaScope" in status["message"]
    assert "nvlink-domain" in status["message"]
    oh.wait_event(cluster, ns, "typo", "InvalidSpec", contains="replicaScope")
    assert not oh.pods(cluster, ns, "typo")


def test_infeasible_deployment_is_unschedulable_then_placed_when_room_appears(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, fake.ClusterShape(hgx_units=1, nodes_per_unit=1)) as (pool, _):
        apply(cluster, oh.deployment("big", ns, pool, [("decode", 2, 8, 8)]))
        kube.wait_for(
            "Unschedulable", lambda: oh.phase(cluster, ns, "big") == "Unschedulable", timeout=30
        )
        message = oh.get_infd(cluster, ns, "big")["status"]["message"]
        assert "spec.roles[decode]" in message
        with oh.node_pool(
            cluster, fake.ClusterShape(hgx_units=1, nodes_per_unit=1), prefix=pool[:1]
        ) as (pool2, _):
            del pool2  # a second pool with a different taint cannot help ...
            time.sleep(2)
            assert oh.phase(cluster, ns, "big") == "Unschedulable"
        extra = oh.pool_nodes(pool, fake.ClusterShape(hgx_units=1, nodes_per_unit=1))
        extra[0]["metadata"]["name"] += "-extra"
        cluster.kubectl(
            "apply", "-f", "-", input=yaml.safe_dump(extra[0])
        )  # ... one in the same pool does
        try:
            oh.wait_running(cluster, ns, "big", timeout=60)
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
    ):
        assert name in text, name
    assert operator.get(operator.health_port, "/healthz") == "ok"
    assert operator.get(operator.health_port, "/readyz") == "ok"


def test_restart_mid_placement_converges_without_duplicates(
    cluster: kube.Cluster, infd_crd: str, ns: str, tmp_path: Path, operator: oh.OperatorProcess
) -> None:
    # The module's operator stands by; a second one takes the lease after it is killed.
    operator.stop()
    with oh.node_pool(cluster, fake.ClusterShape(nvl72_racks=2, trays_per_rack=18)) as (pool, _):
        op = oh.OperatorProcess(cluster.kubeconfig, tmp_path, identity="restart-a").start()
        op.wait_leading()
        apply(
            cluster, oh.deployment("crash", ns, pool, [("prefill", 8, 4, 4), ("decode", 8, 8, 4)])
        )
        kube.wait_for(
            "some pods created",
            lambda: len(oh.pods(cluster, ns, "crash")) >= 1,
            timeout=30,
            interval=0.02,
        )
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
    operator.start()
    operator.wait_leading()


def test_ha_standby_takes_over_when_the_leader_dies(
    cluster: kube.Cluster, infd_crd: str, ns: str, tmp_path: Path, operator: oh.OperatorProcess
) -> None:
    operator.stop()
    with oh.node_pool(cluster, NVL) as (pool, _):
        a = oh.OperatorProcess(cluster.kubeconfig, tmp_path, identity="ha-a").start()
        a.wait_leading()
        b = oh.OperatorProcess(cluster.kubeconfig, tmp_path, identity="ha-b").start()
        try:
            kube.wait_for(
                "b serving health",
                lambda: b.get(b.health_port, "/readyz") == "ok" if _up(b) else False,
                timeout=30,
            )
            assert not b.leading(), "two leaders"
            a.stop(signal.SIGKILL)
            b.wait_leading(timeout=60)
            apply(
                cluster, oh.deployment("ha", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)])
            )
            oh.wait_running(cluster, ns, "ha", timeout=60)
            assert len(oh.pods(cluster, ns, "ha")) == 3
        finally:
            a.stop()
            b.stop()
    operator.start()
    operator.wait_leading()


def _up(op: oh.OperatorProcess) -> bool:
    try:
        op.get(op.health_port, "/healthz")
    except OSError:
        return False
    return True


def test_template_change_replaces_replicas_one_at_a_time_on_their_gpus(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, NVL) as (pool, _):
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
        doc["spec"]["roles"][1]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "VERSION", "value": "2"}
        ]
        apply(cluster, doc)
        seen_down: set[int] = set()

        def rolled() -> bool:
            current = oh.pods(cluster, ns, "roll")
            live = [p for p in current if not p.metadata.deletion_timestamp]
            replaced = {
                p.metadata.labels["shorthop.io/replica"]
                for p in live
                if p.metadata.labels["shorthop.io/role"] == "decode"
                and p.metadata.uid != before[p.metadata.name][2]
            }
            # Never both decode replicas down at once.
            missing = {
                r
                for r in ("0", "1")
                if sum(
                    1
                    for p in live
                    if p.metadata.labels["shorthop.io/role"] == "decode"
                    and p.metadata.labels["shorthop.io/replica"] == r
                )
                < 2
            }
            seen_down.add(len(missing))
            return (
                replaced == {"0", "1"}
                and not missing
                and oh.phase(cluster, ns, "roll") == "Running"
            )

        kube.wait_for("both decode replicas replaced", rolled, timeout=120, interval=0.1)
        assert max(seen_down) <= 1, "two replicas were down together"
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

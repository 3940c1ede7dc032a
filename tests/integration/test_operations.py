"""What a platform engineer meets on day two, on the real API server with the real operator: its
log (no ERROR on a normal start, even right after the CRD changed; a line for the lease, every
placement and scale-down), its events (asserted by reason, counted in words), and who owns the
fields it writes (``managedFields``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml
from shorthop.api import crd
from shorthop.topology import fake

from tests import kube
from tests import operator_harness as oh

pytestmark = pytest.mark.cluster
HGX = fake.ClusterShape(hgx_units=1, nodes_per_unit=2)


@pytest.fixture(scope="module")
def operator(
    cluster: kube.Cluster, infd_crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[oh.OperatorProcess]:
    """An operator started the moment the CRD changed: the API server re-initialises the
    resource's storage then and answers 429 for a while (kopf used to log that at ERROR)."""
    changed = crd.crd()
    version = changed["spec"]["versions"][0]
    version["additionalPrinterColumns"].append(
        {"name": "Worst", "type": "string", "jsonPath": ".status.worstTier", "priority": 1}
    )
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(changed)
    )
    try:
        with oh.leading_operator(cluster, tmp_path_factory.mktemp("operator"), "ops") as op:
            yield op
    finally:
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=crd.render()
        )
        cluster.wait_established(infd_crd)


@pytest.fixture
def ns(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("ops") as name:
        yield name


def _apply(cluster: kube.Cluster, doc: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def _lines(log: str, level: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(rf" {level} ", line)]


def test_a_start_logs_no_error_and_names_the_lease_and_every_placement(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, HGX, operator=operator) as (pool, _):
        _apply(cluster, oh.deployment("one", ns, pool, [("decode", 1, 8, 8)]))
        oh.wait_running(cluster, ns, "one")
        oh.wait_event(cluster, ns, "one", "Placed", contains="placed 1 pod (")
        log = operator.log
        assert not _lines(log, "ERROR"), "\n".join(_lines(log, "ERROR"))
        assert "Traceback" not in log, log[-3000:]
        took = [line for line in _lines(log, "INFO") if "took the lease" in line]
        assert took, log[-3000:]
        assert f"{operator.identity} took the lease shorthop-system/shorthop-leader" in took[0]
        placed = [line for line in _lines(log, "INFO") if f"{ns}/one: placed 1 pod " in line]
        assert placed, log[-3000:]
        assert re.search(
            r"cost \d+ = intra \d+ \+ traffic \d+\) in \d+ ms \(plan \d+ ms\)", placed[0]
        )


def test_scale_down_records_an_event_and_a_log_line(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, HGX, operator=operator) as (pool, _):
        doc = oh.deployment("shrink", ns, pool, [("decode", 2, 8, 4)])
        _apply(cluster, doc)
        oh.wait_running(cluster, ns, "shrink")
        oh.wait_event(cluster, ns, "shrink", "Placed", contains="placed 4 pods (")
        doc["spec"]["roles"][0]["replicas"] = 1
        _apply(cluster, doc)
        oh.wait_event(
            cluster,
            ns,
            "shrink",
            "ScaledDown",
            contains="scaled decode down to 1 replica (removed replica ",
        )
        kube.wait_for("2 pods left", lambda: len(oh.pods(cluster, ns, "shrink")) == 2, timeout=60)
        (event,) = [e for e in oh.events(cluster, ns, "shrink") if e.reason == "ScaledDown"]
        assert event.type == "Normal"
        assert event.message.endswith(": 2 pods)"), event.message
        lines = [line for line in _lines(operator.log, "INFO") if f"{ns}/shrink: scaled" in line]
        assert lines, operator.log[-3000:]
        assert "scaled decode down to 1 replica (removed replica " in lines[0]


def _managers(obj: dict) -> dict[str, set[str]]:
    """Manager -> the operations (and subresources) it recorded, from ``managedFields``."""
    out: dict[str, set[str]] = {}
    for entry in obj["metadata"].get("managedFields") or []:
        where = (
            f"{entry['operation']}{'/' + entry['subresource'] if entry.get('subresource') else ''}"
        )
        out.setdefault(entry["manager"], set()).add(where)
    return out


def test_every_write_of_the_operator_is_managed_by_shorthop(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, HGX, operator=operator) as (pool, _):
        _apply(cluster, oh.deployment("owned", ns, pool, [("decode", 1, 8, 4)]))
        oh.wait_running(cluster, ns, "owned")
        oh.wait_event(cluster, ns, "owned", "Placed")

        def get(*what: str) -> dict:
            out = cluster.kubectl("get", *what, "-o", "json", "--show-managed-fields").stdout
            return dict(yaml.safe_load(out))

        infd = get("infd", "owned", "-n", ns)
        assert "Update/status" in _managers(infd).get("shorthop", set()), _managers(infd)
        pods = get("pods", "-n", ns, "-l", "shorthop.io/deployment=owned")["items"]
        services = get("services", "-n", ns)["items"]
        events = get("events", "-n", ns)["items"]
        lease = get("lease", "shorthop-leader", "-n", "shorthop-system")
        assert len(pods) == 2
        assert services
        assert events
        for obj in [*pods, *services, *events, lease]:
            managers = _managers(obj)
            assert "shorthop" in managers, (obj["kind"], obj["metadata"]["name"], managers)
            # Nothing the operator wrote is recorded under the client library's default name.
            assert not any(m.startswith("OpenAPI-Generator") for m in managers), managers
        for pod in pods:
            assert pod["spec"]["nodeName"].startswith(pool)
        assert not any(m.startswith("OpenAPI-Generator") for m in _managers(infd))


def test_free_gpu_gauge_follows_a_delete_without_waiting_for_the_resync(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    from shorthop.controller.operator import RESYNC_SECONDS

    rack = fake.ClusterShape(nvl72_racks=1, trays_per_rack=2)
    with oh.node_pool(cluster, rack, operator=operator) as (pool, names):
        domain = oh.pool_nodes(pool, rack)[0]["metadata"]["labels"]["nvidia.com/gpu.clique"]
        gpus = 4 * len(names)

        def free() -> float | None:
            return oh.gauge(operator.metrics(), "shorthop_free_gpus", domain)

        kube.wait_for(f"{gpus} free GPUs in {domain}", lambda: free() == gpus, timeout=20)
        _apply(cluster, oh.deployment("gauge", ns, pool, [("decode", 1, 4, 4)]))
        oh.wait_running(cluster, ns, "gauge")
        kube.wait_for(f"{gpus - 4} free", lambda: free() == gpus - 4, timeout=20)
        # 4-GPU pods, and a node with 4 free: nothing stranded.
        assert oh.gauge(operator.metrics(), "shorthop_stranded_gpus", domain) == 0
        cluster.kubectl("delete", "infd", "gauge", "-n", ns, "--wait=false")
        kube.wait_for("the pods gone", lambda: not oh.pods(cluster, ns, "gauge"), timeout=60)
        # Well before the periodic refresh (RESYNC_SECONDS) could have run.
        kube.wait_for(f"{gpus} free again", lambda: free() == gpus, timeout=RESYNC_SECONDS / 3)


def test_headless_service_port_follows_the_role_then_the_setting(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, HGX, operator=operator) as (pool, _):
        doc = oh.deployment("ports", ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 4, 4)])
        doc["spec"]["roles"][0]["servicePort"] = 9443
        _apply(cluster, doc)
        oh.wait_running(cluster, ns, "ports")
        ports = {
            s.metadata.name: [(p.port, p.target_port, p.protocol) for p in s.spec.ports]
            for s in cluster.core.list_namespaced_service(ns).items
        }
        # The operator runs with the default setting (8000) here.
        assert ports == {
            "ports-prefill": [(9443, 9443, "TCP")],
            "ports-decode": [(8000, 8000, "TCP")],
        }

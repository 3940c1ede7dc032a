"""The templates' scheduling rules against the real API server: heterogeneous prefill/decode lands
on the products each role selects (checked at every pod state), an infeasible selector is
explained in the status and an event, a label changed between plan and bind is caught before the
bind, a pod the kubelet rejects is replaced once with its node excluded (remembered across a
restart), and fields shorthop does not apply are named in a Warning event."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop.controller.faults import Faults
from shorthop.topology import fake

from tests import kube, scheduling_check, watching
from tests import operator_harness as oh

pytestmark = pytest.mark.cluster
PRODUCT = "nvidia.com/gpu.product"
TAINTS = r"its tolerations \(untolerated NoSchedule/NoExecute taints\)"
H100, H200 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"
# Two scalable units of four HGX nodes: one of H100s, one of H200s.
MIXED = (
    fake.ClusterShape(hgx_units=1, nodes_per_unit=4),
    fake.ClusterShape(hgx_units=1, nodes_per_unit=4, hgx_product="h200"),
)


@pytest.fixture(scope="module")
def operator(
    cluster: kube.Cluster, infd_crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[oh.OperatorProcess]:
    with oh.leading_operator(cluster, tmp_path_factory.mktemp("operator"), "rules") as op:
        yield op


@pytest.fixture
def ns(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("rules") as name:
        yield name


@contextlib.contextmanager
def standing_down(operator: oh.OperatorProcess) -> Iterator[None]:
    """The module's operator stopped (it hands its lease back) while the test drives the
    reconciler itself, and started again afterwards."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()
        operator.wait_leading()


def apply(cluster: kube.Cluster, doc: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def with_rules(doc: dict[str, Any], **per_role: dict[str, Any]) -> dict[str, Any]:
    for role in doc["spec"]["roles"]:
        role["template"]["spec"].update(per_role.get(role["name"], {}))
    return doc


def required(key: str, operator: str, *values: str) -> dict[str, Any]:
    expression: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        expression["values"] = list(values)
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [expression]}]
                }
            }
        }
    }


def node_labels(cluster: kube.Cluster, names: list[str]) -> dict[str, dict[str, str]]:
    return {n: dict(cluster.core.read_node(n).metadata.labels or {}) for n in names}


def rule_check(doc: Mapping[str, Any], labels: Mapping[str, Mapping[str, str]]) -> watching.Check:
    """At a pod state: every bound pod of the deployment sits on a node its role's template
    admits (the nodes' labels do not change in the test)."""
    name = doc["metadata"]["name"]
    templates = {(name, r["name"]): r["template"]["spec"] for r in doc["spec"]["roles"]}
    return scheduling_check.bound_by_the_rules(templates, labels.get)


def test_heterogeneous_roles_land_on_the_products_they_select(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, MIXED, operator=operator) as (pool, names):
        labels = node_labels(cluster, names)
        doc = with_rules(
            oh.deployment("hetero", ns, pool, [("prefill", 3, 4, 4), ("decode", 2, 16, 8)]),
            prefill={"nodeSelector": {PRODUCT: H100}},
            decode=required("nvidia.com/gpu.memory", "Gt", "100000"),  # the H200's 141 GB
        )
        with watching.pod_watch(cluster.core, namespace=ns, check=rule_check(doc, labels)) as pods:
            apply(cluster, doc)
            status = oh.wait_running(cluster, ns, "hetero")["status"]
            pods.assert_held()
        placed = {p.metadata.name: p.spec.node_name for p in oh.pods(cluster, ns, "hetero")}
        assert len(placed) == 3 + 4
        for pod, node in placed.items():
            assert labels[node][PRODUCT] == (H100 if "-prefill-" in pod else H200), (pod, node)
        assert status["excludedNodes"] == []
        assert {r["role"]: r["tier"] for r in status["replicas"]} == {
            "prefill": "same-node-nvlink",
            "decode": "rack",
        }


def test_an_infeasible_selector_is_explained_in_status_and_an_event(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, MIXED, operator=operator) as (pool, _):
        # Five 16-GPU decode replicas on H200 nodes: four nodes hold 32 GPUs, 80 are needed.
        doc = with_rules(
            oh.deployment("wide", ns, pool, [("prefill", 1, 4, 4), ("decode", 5, 16, 8)]),
            decode={"nodeSelector": {PRODUCT: H200}},
        )
        apply(cluster, doc)
        # Other tests' node pools, tainted against this deployment, may be there too (and be
        # counted under taints until they go).
        expected = re.compile(
            rf"spec\.roles\[1\]\.template\.spec(\.nodeSelector)?: ({TAINTS} and )?nodeSelector "
            r"nvidia\.com/gpu\.product=NVIDIA-H200 leaves? 4 nodes with 32 free GPUs; needs 80 "
            r"for role decode \(nodes left out: (\d+ by taints, )?4 by nodeSelector\)"
        )

        def explained() -> str | None:
            status = oh.get_infd(cluster, ns, "wide").get("status") or {}
            message = str(status.get("message"))
            return (
                message
                if status.get("phase") == "Unschedulable" and expected.fullmatch(message)
                else None
            )

        reason = kube.wait_for("the reason in the status", explained, timeout=60)
        status = oh.get_infd(cluster, ns, "wide")["status"]
        placed = {c["type"]: c for c in status["conditions"]}["Placed"]
        assert (placed["status"], placed["reason"], placed["message"]) == (
            "False",
            "Unschedulable",
            reason,
        )
        oh.wait_event(cluster, ns, "wide", "Unschedulable", contains=reason)
        assert not oh.pods(cluster, ns, "wide"), "a gang: nothing is created"


class _RelabelBeforeBind(Faults):
    """At the first ``after-create`` point (a pod created, its bind not yet made) the node that
    pod was planned on loses the label its role selects; every bind of the visit comes after."""

    def __init__(self, cluster: kube.Cluster, namespace: str, key: str, value: str) -> None:
        super().__init__()
        self.cluster, self.namespace, self.key, self.value = cluster, namespace, key, value
        self.node: str | None = None
        self._lock = threading.Lock()

    def point(self, name: str) -> None:
        if name != "after-create":
            return
        with self._lock:
            if self.node is not None:
                return
            created = self.cluster.core.list_namespaced_pod(self.namespace).items
            self.node = created[0].metadata.annotations["shorthop.io/planned-node"]
            patch = {"metadata": {"labels": {self.key: self.value}}}
            self.cluster.core.patch_node(self.node, patch)


def test_a_label_changed_between_plan_and_bind_is_caught_before_the_bind(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    """The reconciler runs here (visits of the operator's own code against the real API server)
    so that the label changes exactly between the plan and the bind."""
    one_unit = fake.ClusterShape(hgx_units=1, nodes_per_unit=3, hgx_product="h200")
    with standing_down(operator), oh.node_pool(cluster, one_unit) as (pool, names):
        for name in names:
            cluster.core.patch_node(name, {"metadata": {"labels": {"lane": "fast"}}})
        doc = with_rules(
            oh.deployment("lane", ns, pool, [("decode", 1, 8, 8)]),
            decode={"nodeSelector": {"lane": "fast"}},
        )
        faults = _RelabelBeforeBind(cluster, ns, "lane", "slow")

        def never_on_the_relabelled_node(pods: Mapping[str, Mapping[str, Any]]) -> list[str]:
            return [
                f"{watching.pod_name(p)} bound to {faults.node} after it lost lane=fast"
                for p in pods.values()
                if faults.node and (p.get("spec") or {}).get("nodeName") == faults.node
            ]

        with watching.pod_watch(
            cluster.core, namespace=ns, check=never_on_the_relabelled_node
        ) as pods:
            apply(cluster, doc)
            oh.visit_once(cluster, ns, "lane", faults=faults)
            assert faults.node in names
            oh.wait_event(cluster, ns, "lane", "BindConflict", contains="no longer matches")
            pods.wait_until("the unbound pod deleted", lambda state: not state, timeout=30)
            oh.visit_once(cluster, ns, "lane")
            bound = pods.wait_until(
                "the pod bound",
                lambda state: [
                    p["spec"]["nodeName"] for p in state.values() if p["spec"].get("nodeName")
                ],
                timeout=30,
            )
            pods.assert_held()
        assert bound[0] in set(names) - {faults.node}
        events = [e.message for e in oh.events(cluster, ns, "lane") if e.reason == "BindConflict"]
        assert any(
            f"node {faults.node} no longer matches nodeSelector lane=fast "
            "(spec.roles[0].template.spec.nodeSelector)" in (m or "")
            for m in events
        ), events


def _reject(cluster: kube.Cluster, ns: str, pod: str, reason: str) -> None:
    """What a kubelet does to a pod its admission refuses."""
    cluster.core.patch_namespaced_pod_status(
        pod,
        ns,
        {"status": {"phase": "Failed", "reason": reason, "message": f"Pod was rejected: {reason}"}},
    )


def _node_of(cluster: kube.Cluster, ns: str, pod: str) -> tuple[str, str] | None:
    """(uid, node) of the pod when it is bound and not failed."""
    with contextlib.suppress(client.ApiException):
        found = cluster.core.read_namespaced_pod(pod, ns)
        if found.spec.node_name and found.status.phase != "Failed":
            return found.metadata.uid, found.spec.node_name
    return None


def test_a_pod_the_kubelet_rejects_is_replaced_once_elsewhere_and_a_restart_remembers(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    """kwok runs no kubelet admission: the test fails the pod as a kubelet would."""
    one_unit = fake.ClusterShape(hgx_units=1, nodes_per_unit=3)
    op = operator
    pod = "rej-decode-0-0"
    with oh.node_pool(cluster, one_unit, operator=operator) as (pool, names):
        try:
            apply(cluster, oh.deployment("rej", ns, pool, [("decode", 1, 8, 8)]))
            oh.wait_running(cluster, ns, "rej")
            first_uid, first = kube.wait_for("the pod bound", lambda: _node_of(cluster, ns, pod))
            _reject(cluster, ns, pod, "NodeAffinity")
            second_uid, second = kube.wait_for(
                "a replacement bound",
                lambda: (found := _node_of(cluster, ns, pod)) and found[0] != first_uid and found,
                timeout=60,
            )
            assert second != first
            status = oh.wait_running(cluster, ns, "rej")["status"]
            assert [(e["role"], e["node"], e["reason"]) for e in status["excludedNodes"]] == [
                ("decode", first, "NodeAffinity")
            ]
            oh.wait_event(cluster, ns, "rej", "AdmissionRejected", contains=f"node {first}")
            op.stop()
            # While no operator runs, the replacement is rejected too. The next operator knows
            # the first node from the status: the pod goes to the third node, not back.
            _reject(cluster, ns, pod, "OutOfnvidia.com/gpu")
            op.start().wait_leading()
            _, third = kube.wait_for(
                "a second replacement bound",
                lambda: (found := _node_of(cluster, ns, pod)) and found[0] != second_uid and found,
                timeout=60,
            )
            assert third not in (first, second)
            status = oh.wait_running(cluster, ns, "rej")["status"]
            assert sorted((e["node"], e["reason"]) for e in status["excludedNodes"]) == sorted(
                [(first, "NodeAffinity"), (second, "OutOfnvidia.com/gpu")]
            )
            # Every node rejected it: nothing is left, and the status says why.
            _reject(cluster, ns, pod, "UnexpectedAdmissionError")
            kube.wait_for(
                "Unschedulable", lambda: oh.phase(cluster, ns, "rej") == "Unschedulable", timeout=60
            )
            message = oh.get_infd(cluster, ns, "rej")["status"]["message"]
            assert re.fullmatch(
                rf"(status\.excludedNodes|spec\.roles\[0\]\.template\.spec): ({TAINTS} and )?"
                rf"the kubelet rejections excluding {', '.join(sorted(names))} leaves? 0 nodes "
                r"with 0 free GPUs; needs 8 for role decode \(nodes left out: (\d+ by taints, )?"
                r"3 by rejected\)",
                message,
            ), message
        finally:
            if not op.alive():
                op.start().wait_leading()


def test_fields_shorthop_does_not_apply_are_named_in_a_warning_event(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    with oh.node_pool(cluster, fake.ClusterShape(hgx_units=1, nodes_per_unit=1)) as (pool, _):
        spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                   "whenUnsatisfiable": "DoNotSchedule",
                   "labelSelector": {"matchLabels": {"app": "x"}}}]  # fmt: skip
        doc = with_rules(
            oh.deployment("odd", ns, pool, [("decode", 1, 8, 8)]),
            decode={"topologySpreadConstraints": spread, "schedulingGates": [{"name": "wait"}]},
        )
        apply(cluster, doc)
        oh.wait_running(cluster, ns, "odd")
        oh.wait_event(
            cluster,
            ns,
            "odd",
            "IgnoredSchedulingFields",
            contains="spec.roles[0].template.spec.topologySpreadConstraints: not applied",
        )
        warning = next(
            e for e in oh.events(cluster, ns, "odd") if e.reason == "IgnoredSchedulingFields"
        )
        assert warning.type == "Warning"
        assert (
            "spec.roles[0].template.spec.schedulingGates: removed from the pods" in warning.message
        )
        placed = oh.pods(cluster, ns, "odd")
        assert [p.spec.scheduling_gates for p in placed] == [None]


def test_a_runtime_class_is_applied_as_the_api_server_applies_it(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    """The RuntimeClass a template names: its node selector keeps the pods on the H200 nodes, its
    toleration is the pods' only one of the pool's taint, and its overhead (20 CPUs beside 100;
    an HGX node has 224) leaves room for one pod per node where two fit without it: four replicas
    on the four H200 nodes, one each, and the pods carry the overhead the API server set. A class
    that does not exist makes a deployment Invalid, naming the field, and nothing is created;
    once the class is made, the operator (coming back on its own) places it."""
    name = f"{ns}-kata"  # cluster-scoped: named after the test's namespace
    with oh.node_pool(cluster, MIXED, operator=operator) as (pool, names):
        labels = node_labels(cluster, names)
        toleration = {"key": oh.POOL_TAINT, "operator": "Equal", "value": pool,
                      "effect": "NoSchedule"}  # fmt: skip
        apply(cluster, {
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name},
            "handler": "kata", "overhead": {"podFixed": {"cpu": "20", "memory": "1Gi"}},
            "scheduling": {"nodeSelector": {PRODUCT: H200}, "tolerations": [toleration]},
        })  # fmt: skip
        try:
            doc = oh.deployment("rc", ns, pool, [("decode", 4, 4, 4)])
            template = doc["spec"]["roles"][0]["template"]["spec"]
            template["tolerations"] = []
            template["runtimeClassName"] = name
            template["containers"][0]["resources"] = {"requests": {"cpu": "100"}}
            apply(cluster, doc)
            oh.wait_running(cluster, ns, "rc")
            placed = oh.pods(cluster, ns, "rc")
            h200 = sorted(n for n in names if labels[n][PRODUCT] == H200)
            assert sorted(p.spec.node_name for p in placed) == h200
            assert [p.spec.overhead for p in placed] == [{"cpu": "20", "memory": "1Gi"}] * 4
            missing = oh.deployment("norc", ns, pool, [("decode", 1, 4, 4)])
            missing["spec"]["roles"][0]["template"]["spec"]["runtimeClassName"] = f"{name}-x"
            apply(cluster, missing)
            expected = (
                "spec.roles[0].template.spec.runtimeClassName: "
                f'RuntimeClass "{name}-x" does not exist'
            )

            def invalid() -> str | None:
                status = oh.get_infd(cluster, ns, "norc").get("status") or {}
                message = str(status.get("message"))
                return message if status.get("phase") == "Invalid" else None

            message = kube.wait_for("the deployment Invalid", invalid, timeout=60)
            assert message.startswith(expected), message
            assert not oh.pods(cluster, ns, "norc")
            apply(cluster, {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                            "metadata": {"name": f"{name}-x"}, "handler": "runc"})  # fmt: skip
            oh.wait_running(cluster, ns, "norc")
        finally:
            cluster.kubectl("delete", "runtimeclass", name, f"{name}-x", "--ignore-not-found")


def test_another_resource_the_pods_request_keeps_them_to_nodes_with_enough_of_it(
    cluster: kube.Cluster, operator: oh.OperatorProcess, ns: str
) -> None:
    """``rdma/ib`` (as the RDMA device plugin publishes it) on three nodes of eight: one each on
    two, two on a third. Four 4-GPU pods requesting one each would share two nodes; counted as
    the kubelet counts it, they land one, one and two on those three, never elsewhere."""
    amounts = {0: "1", 1: "1", 4: "2"}  # by position in the pool (H100 nodes first)

    def with_rdma(nodes: list[dict[str, Any]]) -> None:
        for i, amount in amounts.items():
            for part in ("capacity", "allocatable"):
                nodes[i]["status"][part]["rdma/ib"] = amount

    with oh.node_pool(cluster, MIXED, operator=operator, prepare=with_rdma) as (pool, names):
        doc = oh.deployment("rdma", ns, pool, [("decode", 4, 4, 4)])
        doc["spec"]["roles"][0]["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"rdma/ib": "1"}
        }
        apply(cluster, doc)
        oh.wait_running(cluster, ns, "rdma")
        placed = [p.spec.node_name for p in oh.pods(cluster, ns, "rdma")]
        assert {n: placed.count(n) for n in set(placed)} == {
            names[i]: int(amount) for i, amount in amounts.items()
        }

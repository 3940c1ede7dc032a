"""End to end in DRA mode: GPUs published by the NVIDIA DRA driver (fake, in its format), the Helm
chart installed, the operator running as the chart's ServiceAccount, and a prefill/decode
deployment whose every pod holds exactly the devices the plan chose, through a ResourceClaim
shorthop allocated.

One scenario, in order (the tests share the module's state): placement and the claims, what
status and ``kubectl get resourceclaims`` show, kube-scheduler scheduling pods with
ResourceClaimTemplates on the same nodes at the same time, scaling, a template update, losing a
node, a device vanishing from its slice, a claim removed under a running pod, and deleting
everything. A watch on every ResourceClaim of the cluster runs throughout: no device may be in
two claims at any observed state. kwok marks bound pods Running; no kubelet prepares devices.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import dra as fdra
from e2e import fixtures as fx
from tests import claim_watch, kube
from tests import operator_harness as oh

pytestmark = pytest.mark.cluster

SHAPE = fdra.fake.ClusterShape(hgx_units=2, nodes_per_unit=4, l40s_nodes=2, dra=frozenset({"hgx"}))
BUSY = ("h100-su0-n03", "h100-su1-n03", "l40s-n01")
NAME = "llama"
MANAGED = "app.kubernetes.io/managed-by=shorthop"


@dataclass
class Scenario:
    cluster: kube.Cluster
    gpus: fdra.DraCluster
    operator: fx.Operator
    user: str
    watch: claim_watch.ClaimWatch

    def deployment(
        self, name: str, roles: list[tuple[str, int, int, int]], **spec: Any
    ) -> dict[str, Any]:
        doc = oh.deployment(name, self.user, self.gpus.pool, roles, **spec)
        return doc

    def apply(self, doc: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))

    def pods(self, name: str) -> list[client.V1Pod]:
        return [
            p for p in oh.pods(self.cluster, self.user, name) if not p.metadata.deletion_timestamp
        ]

    def claims(self) -> dict[str, dict[str, Any]]:
        return {
            c["metadata"]["name"]: c for c in claim_watch.list_claims(self.cluster.api, self.user)
        }

    def wait_running(self, name: str, timeout: float = 120) -> dict[str, Any]:
        """Running for the current generation, every pod bound: a phase of Running alone may
        still describe the spec before a change (the status is written after the binds)."""

        def settled() -> bool:
            body = oh.get_infd(self.cluster, self.user, name)
            status = body.get("status") or {}
            return (
                status.get("phase") == "Running"
                and status.get("observedGeneration") == body["metadata"]["generation"]
                and all(p.spec.node_name for p in self.pods(name))
            )

        try:
            kube.wait_for(f"{self.user}/{name} Running and bound", settled, timeout=timeout)
            return oh.get_infd(self.cluster, self.user, name)
        except AssertionError as exc:
            status = oh.get_infd(self.cluster, self.user, name).get("status") or {}
            raise AssertionError(
                f"{exc}\n{name}: {status.get('phase')!r} {status.get('message')!r}\n"
                f"operator log:\n{self.operator.process.log[-3000:]}"
            ) from None


@pytest.fixture(scope="module")
def helm(cluster: kube.Cluster, tmp_path_factory: pytest.TempPathFactory) -> fx.Helm:
    binary = fx.helm_binary()
    if binary is None:
        pytest.fail("no helm: run `make controlplane` to build it")
    return fx.Helm(binary, cluster.kubeconfig, tmp_path_factory.mktemp("helm-dra"))


@pytest.fixture(scope="module")
def scenario(
    cluster: kube.Cluster, infd_crd: str, helm: fx.Helm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    tag = uuid.uuid4().hex[:5]
    release, home, user = f"dra{tag}", f"dra-{tag}-system", f"dra-{tag}-user"
    gpus = fdra.dra_cluster(
        SHAPE, pool=f"dra{tag}", background_namespace=f"dra-{tag}-bg", occupancy=0.5, busy=BUSY
    )
    watch = claim_watch.ClaimWatch(cluster.api)
    operator: fx.Operator | None = None
    with watch.running():
        try:
            fdra.create(cluster, gpus)
            fx.install_chart(helm, release, home)
            operator = fx.start_operator(
                cluster, release, home, tmp_path_factory.mktemp("dra-op"), identity=f"dra-{tag}"
            )
            operator.process.wait_leading(timeout=90)
            oh.ensure_namespace(cluster, user)
            yield Scenario(cluster, gpus, operator, user, watch)
        finally:
            if operator is not None:
                operator.process.stop()
            helm("uninstall", release, "--namespace", home, check=False)
            for ns in (user, home):
                fx.delete_namespace(cluster, ns)
            fdra.delete(cluster, gpus)


@pytest.fixture
def s(scenario: Scenario) -> Scenario:
    return scenario


def _held(claim: dict[str, Any]) -> list[tuple[str, str]]:
    return [(pool, device) for _, pool, device in claim_watch.allocated(claim)]


def check_claims(s: Scenario, name: str) -> None:
    """Every pod of the deployment: no GPU request, its own claim allocated to exactly the
    devices planned (annotation and status), pinned to its node and reserved for it."""
    pods = s.pods(name)
    claims = s.claims()
    status = oh.get_infd(s.cluster, s.user, name)["status"]
    in_status = {p["name"]: p for r in status["replicas"] for p in r["pods"]}
    assert pods
    for pod in pods:
        node = pod.spec.node_name
        planned = pod.metadata.annotations["shorthop.io/devices"].split(",")
        assert len(planned) == len(fx.pod_gpus(pod))
        for c in pod.spec.containers:
            assert "nvidia.com/gpu" not in ((c.resources.limits or {}) if c.resources else {})
        (ref,) = pod.spec.resource_claims
        claim = claims[ref.resource_claim_name]
        assert ref.resource_claim_name == f"{pod.metadata.name}-gpus"
        assert claim["metadata"]["ownerReferences"][0]["uid"] == pod.metadata.uid
        assert _held(claim) == [(node, d) for d in planned]
        terms = claim["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"]
        assert terms[0]["matchFields"][0]["values"] == [node]
        assert [r["uid"] for r in claim["status"]["reservedFor"]] == [pod.metadata.uid]
        assert in_status[pod.metadata.name]["devices"] == planned
    everywhere = claim_watch.list_claims(s.cluster.api)
    assert (
        claim_watch.double_allocations(
            {f"{c['metadata']['namespace']}/{c['metadata']['name']}": c for c in everywhere}
        )
        == {}
    )


# -- placement ------------------------------------------------------------------------------------


def test_a_prefill_decode_deployment_runs_on_exactly_the_planned_devices(s: Scenario) -> None:
    s.apply(s.deployment(NAME, [("prefill", 2, 4, 4), ("decode", 2, 8, 4)]))
    s.wait_running(NAME)
    pods = s.pods(NAME)
    assert len(pods) == 2 + 4
    dra_nodes = set(s.gpus.dra_names)
    assert {p.spec.node_name for p in pods} <= dra_nodes  # HGX beats L40S for this deployment
    check_claims(s, NAME)
    # Devices the background claims hold were not planned.
    background = {
        d for c in claim_watch.list_claims(s.cluster.api, s.gpus.background_namespace)
        for d in _held(c)
    }  # fmt: skip
    ours = {d for c in s.claims().values() for d in _held(c)}
    assert background
    assert not background & ours


def test_kubectl_shows_the_claims_allocated_and_reserved(s: Scenario) -> None:
    out = s.cluster.kubectl("get", "resourceclaims", "-n", s.user).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert len(rows) == 6
    assert {row[1] for row in rows} == {"allocated,reserved"}


# -- another scheduler at the same time ----------------------------------------------------------


def _claim_pods(s: Scenario, count: int) -> list[dict[str, Any]]:
    """Ordinary pods kube-scheduler schedules, each with a ResourceClaimTemplate for one GPU,
    kept to this scenario's HGX nodes."""
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                           "values": s.gpus.dra_names}]}
                ]
            }
        }
    }  # fmt: skip
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"trainer-{i}", "namespace": s.user},
            "spec": {
                "affinity": affinity,
                "tolerations": s.gpus.toleration(),
                "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}],
                "containers": [
                    {
                        "name": "c",
                        "image": "registry.invalid/train:1",
                        "resources": {"claims": [{"name": "gpu"}]},
                    }
                ],
            },
        }
        for i in range(count)
    ]


def test_kube_scheduler_claims_and_shorthop_share_the_nodes_at_the_same_time(s: Scenario) -> None:
    resource = client.ResourceV1Api(s.cluster.api)
    resource.create_namespaced_resource_claim_template(
        s.user,
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "one-gpu"},
            "spec": {"spec": {"devices": {"requests": [
                {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 1}}
            ]}}},
        },
    )  # fmt: skip
    pods = _claim_pods(s, 10)
    second = s.deployment("second", [("prefill", 1, 2, 2), ("decode", 1, 4, 4)])

    def kube_scheduler_pods() -> None:
        for pod in pods:
            s.cluster.core.create_namespaced_pod(s.user, pod)

    thread = threading.Thread(target=kube_scheduler_pods)
    thread.start()
    s.apply(second)
    thread.join()
    s.wait_running("second")

    def all_bound() -> bool:
        listed = s.cluster.core.list_namespaced_pod(s.user, label_selector="!shorthop.io/role")
        return all(p.spec.node_name for p in listed.items) and len(listed.items) == len(pods)

    kube.wait_for("kube-scheduler to bind its pods", all_bound, timeout=120)
    check_claims(s, "second")
    check_claims(s, NAME)
    by_kube = [c for c in s.claims().values() if c["metadata"]["name"].startswith("trainer-")]
    assert len(by_kube) == len(pods)
    assert all(_held(c) for c in by_kube)
    s.watch.check()
    assert s.watch.allocations_seen > 0


# -- day two -------------------------------------------------------------------------------------


def test_scaling_up_and_down_creates_and_removes_claims(s: Scenario) -> None:
    doc = s.deployment(NAME, [("prefill", 2, 4, 4), ("decode", 3, 8, 4)])
    s.apply(doc)
    kube.wait_for("6 decode pods", lambda: len([p for p in s.pods(NAME)
                                                if "decode" in p.metadata.name]) == 6)  # fmt: skip
    s.wait_running(NAME)
    check_claims(s, NAME)
    s.apply(s.deployment(NAME, [("prefill", 2, 4, 4), ("decode", 1, 8, 4)]))

    def shrunk() -> bool:
        names = {p.metadata.name for p in s.pods(NAME)}
        claims = {n for n in s.claims() if n.startswith(f"{NAME}-")}
        return len(names) == 4 and claims == {f"{n}-gpus" for n in names}

    kube.wait_for("the scaled-down pods' claims to go", shrunk, timeout=120)
    s.wait_running(NAME)
    check_claims(s, NAME)
    s.watch.check()


def test_a_template_update_replaces_pods_and_their_claims(s: Scenario) -> None:
    before = {p.metadata.name: p.metadata.uid for p in s.pods(NAME)}
    doc = s.deployment(NAME, [("prefill", 2, 4, 4), ("decode", 1, 8, 4)])
    for role in doc["spec"]["roles"]:
        role["template"]["spec"]["containers"][0]["env"] = [{"name": "VERSION", "value": "2"}]
    s.apply(doc)

    def rolled() -> bool:
        pods = s.pods(NAME)
        return len(pods) == 4 and all(before.get(p.metadata.name) != p.metadata.uid for p in pods)

    kube.wait_for("every pod replaced with the new template", rolled, timeout=240)
    s.wait_running(NAME)
    check_claims(s, NAME)
    s.watch.check()


def test_losing_a_node_re_places_its_pods_with_new_claims(s: Scenario) -> None:
    pods = s.pods(NAME)
    lost = pods[0].spec.node_name
    on_it = {p.metadata.name for p in pods if p.spec.node_name == lost}
    s.cluster.core.delete_node(lost)  # its slice is collected with it (owned by the Node)

    def replaced() -> bool:
        now = s.pods(NAME)
        return len(now) == 4 and lost not in {p.spec.node_name for p in now}

    kube.wait_for(f"the pods on {lost} re-placed", replaced, timeout=120)
    s.wait_running(NAME)
    check_claims(s, NAME)
    assert not [c for c in s.claims().values() for pool, _ in _held(c) if pool == lost]
    assert on_it
    s.watch.check()


def test_a_device_vanishing_from_its_slice_moves_the_pod_using_it(s: Scenario) -> None:
    pod = s.pods(NAME)[0]
    node = pod.spec.node_name
    device = pod.metadata.annotations["shorthop.io/devices"].split(",")[0]
    published = copy.deepcopy(s.gpus.slice_of(node))
    resource = client.ResourceV1Api(s.cluster.api)
    current = resource.read_resource_slice(published["metadata"]["name"])
    body = {
        **published,
        "metadata": {**published["metadata"], "resourceVersion": current.metadata.resource_version},
    }
    body["spec"]["devices"] = [d for d in body["spec"]["devices"] if d["name"] != device]
    body["spec"]["pool"]["generation"] = 2
    resource.replace_resource_slice(published["metadata"]["name"], body)

    def moved() -> bool:
        now = {p.metadata.name: p for p in s.pods(NAME)}
        again = now.get(pod.metadata.name)
        return again is not None and again.metadata.uid != pod.metadata.uid

    kube.wait_for(f"the pod on {node}/{device} to be placed again", moved, timeout=120)
    s.wait_running(NAME)
    check_claims(s, NAME)
    assert (node, device) not in {d for c in s.claims().values() for d in _held(c)}
    s.watch.check()


def test_a_claim_removed_under_a_running_pod_is_allocated_again(s: Scenario) -> None:
    pod = s.pods(NAME)[-1]
    name = f"{pod.metadata.name}-gpus"
    held = _held(s.claims()[name])
    resource = client.ResourceV1Api(s.cluster.api)
    resource.delete_namespaced_resource_claim(name, s.user)
    # Its finalizer keeps it while reserved; someone forces it out.
    resource.patch_namespaced_resource_claim(name, s.user, {"metadata": {"finalizers": None}})

    def back() -> bool:
        claim = s.claims().get(name)
        return (
            claim is not None
            and not claim["metadata"].get("deletionTimestamp")
            and bool(_held(claim))
        )

    kube.wait_for("shorthop to allocate the claim again", back, timeout=90)
    assert _held(s.claims()[name]) == held
    check_claims(s, NAME)
    s.watch.check()


def test_deleting_the_deployments_leaves_no_claim(s: Scenario) -> None:
    for name in (NAME, "second"):
        s.cluster.kubectl("delete", "inferencedeployment", name, "-n", s.user, "--wait=false")

    def clean() -> bool:
        left = [c for c in s.claims() if not c.startswith("trainer-")]
        return not left and not oh.pods(s.cluster, s.user, NAME)

    kube.wait_for("garbage collection of pods and claims", clean, timeout=120)
    s.watch.check()
    tracebacks = "Traceback" in s.operator.process.log
    assert not tracebacks, s.operator.process.log[-3000:]

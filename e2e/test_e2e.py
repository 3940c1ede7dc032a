"""End to end, as a user meets shorthop: a fake GPU cluster (two GB200 NVL72 racks, two HGX H100
scalable units, L40S nodes, some GPUs already busy), the Helm chart installed, the operator
running with exactly the chart's RBAC, and the two documented examples applied with kubectl.

One scenario, in order (the tests share the module's state and build on each other), once with
each supported Helm major: placement on the best tiers, what ``kubectl get infd``, the status,
events and /metrics show, scaling a role up and down, losing a node, deleting the deployments, the
ServiceAccount's limits, and ``helm uninstall``. Helm installs the InferenceDeployment CRD itself
(from the chart's crds/; any earlier copy is removed first), so that uninstalling shows that helm
keeps a CRD it created, and the custom resources in it. From the first ``kubectl apply`` on, every
state of the deployments' pods is checked against their templates' required scheduling rules (the
examples select GPU products).

The chart's operator pods cannot run here (no container runtime), so the chart is installed with
a nodeSelector that matches no node and ``shorthop run`` runs as a local process instead, with the
chart's rendered config.yaml and a TokenRequest token of the chart's ServiceAccount.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from e2e import fixtures as fx
from tests import helm as helm_bin
from tests import kube, scheduling_check, watching
from tests import operator_harness as oh

pytestmark = pytest.mark.cluster

DEEPSEEK, LLAMA = "deepseek-r1", "llama-70b"
EXAMPLES = {DEEPSEEK: "deepseek-nvl72.yaml", LLAMA: "llama-70b-h100.yaml"}
H100 = "NVIDIA-H100-80GB-HBM3"
GB200 = "NVIDIA-GB200"


CRD_NAME = "inferencedeployments.shorthop.io"


@dataclass
class Scenario:
    cluster: kube.Cluster
    helm: fx.Helm
    release: str
    home: str  # the release namespace
    user: str  # where the InferenceDeployments live
    gpus: fx.GpuCluster
    operator: fx.Operator
    docs: dict[str, dict[str, Any]]
    crd_uid: str  # of the CRD `helm install` created
    rules: watching.ObjectWatch  # every pod state, checked against the templates' rules
    uninstalled: bool = False

    def infd(self, name: str) -> dict[str, Any]:
        return oh.get_infd(self.cluster, self.user, name)

    def pods(self, name: str) -> list[client.V1Pod]:
        return [
            p for p in oh.pods(self.cluster, self.user, name) if not p.metadata.deletion_timestamp
        ]

    def placement(self, name: str) -> dict[str, str]:
        return {p.metadata.name: p.spec.node_name for p in self.pods(name)}

    def apply(self, name: str) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(self.docs[name]))


@pytest.fixture(scope="module", params=helm_bin.MAJORS, ids=[f"helm{m}" for m in helm_bin.MAJORS])
def helm(
    request: pytest.FixtureRequest, cluster: kube.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> fx.Helm:
    major: int = request.param
    binary = helm_bin.binary(major)
    if binary is None:
        if os.environ.get(kube.KUBECONFIG_ENV):
            pytest.skip(f"no helm {major}: not in the control-plane cache and not on PATH")
        pytest.fail(f"no helm {major}: run `make controlplane` to build it")
    return fx.Helm(binary, cluster.kubeconfig, tmp_path_factory.mktemp(f"helm{major}"))


def _crd_uid(cluster: kube.Cluster) -> str | None:
    found = cluster.kubectl("get", "crd", CRD_NAME, "-o", "jsonpath={.metadata.uid}", check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def _remove_crd(cluster: kube.Cluster) -> None:
    """Delete the CRD (and so every InferenceDeployment) so that `helm install` creates it. On a
    cluster the suite did not start, refuse when that would delete someone's deployments."""
    if _crd_uid(cluster) is None:
        return
    if cluster.local is None:
        existing = cluster.kubectl("get", "infd", "-A", "-o", "name").stdout.split()
        if existing:
            pytest.fail(
                f"the e2e suite lets helm install the CRD, which deletes it first; this cluster "
                f"has {len(existing)} InferenceDeployments ({existing[:3]}...): use another cluster"
            )
    cluster.kubectl("delete", "crd", CRD_NAME, "--wait=true", "--timeout=120s")


@pytest.fixture(scope="module")
def scenario(
    cluster: kube.Cluster, helm: fx.Helm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    tag = uuid.uuid4().hex[:5]
    release, home, user = f"e2e{tag}", f"e2e-{tag}-system", f"e2e-{tag}-user"
    gpus = fx.gpu_cluster(pool=f"e2e{tag}", background_namespace=f"e2e-{tag}-background")
    workdir = tmp_path_factory.mktemp("e2e-operator")
    operator: fx.Operator | None = None
    state: Scenario | None = None
    rules: watching.ObjectWatch | None = None
    try:
        fx.create_gpu_cluster(cluster, gpus)
        _remove_crd(cluster)
        fx.install_chart(helm, release, home)
        crd_uid = _crd_uid(cluster)
        assert crd_uid is not None, "helm install did not create the CRD from the chart's crds/"
        cluster.wait_established(CRD_NAME)
        operator = fx.start_operator(cluster, release, home, workdir, identity=f"e2e-{tag}")
        operator.process.wait_leading(timeout=90)
        oh.ensure_namespace(cluster, user)
        # The documented examples, moved into this test's namespace and tolerating this test's
        # node pool (so that, on a shared cluster, they use only the nodes made for them).
        docs = {
            name: fx.retarget(fx.example(path), user, gpus.toleration())
            for name, path in EXAMPLES.items()
        }
        templates = {
            (name, role["name"]): role["template"]["spec"]
            for name, doc in docs.items()
            for role in doc["spec"]["roles"]
        }
        rules = watching.pod_watch(
            cluster.core,
            namespace=user,
            check=scheduling_check.bound_by_the_rules(templates, gpus.labels.get),
        ).start()
        state = Scenario(cluster, helm, release, home, user, gpus, operator, docs, crd_uid, rules)
        for name in docs:
            state.apply(name)
        for name in docs:
            _wait_running(state, name)
        yield state
    finally:
        if rules is not None:
            rules.stop()
        if operator is not None:
            operator.process.stop()
        if state is None or not state.uninstalled:
            helm("uninstall", release, "--namespace", home, check=False)
        for ns in (user, home):
            fx.delete_namespace(cluster, ns)
        fx.delete_gpu_cluster(cluster, gpus)


@pytest.fixture
def s(scenario: Scenario) -> Scenario:
    return scenario


def _wait_running(s: Scenario, name: str, timeout: float = 90) -> None:
    try:
        oh.wait_running(s.cluster, s.user, name, timeout=timeout)
    except AssertionError as exc:
        status = s.infd(name).get("status") or {}
        raise AssertionError(
            f"{exc}\n{name}: phase {status.get('phase')!r}, message {status.get('message')!r}\n"
            f"operator log (tail):\n{s.operator.process.log[-3000:]}"
        ) from None


# -- what the user sees after `kubectl apply` ---------------------------------------------------


def test_operator_runs_with_the_charts_config_as_its_service_account(s: Scenario) -> None:
    settings = yaml.safe_load(fx.chart_config(s.cluster, s.release, s.home))
    assert settings["leaseNamespace"] == s.home
    assert settings["schedulerName"] == "shorthop"
    assert settings["topology"] == {"preset": "plain"}
    whoami = subprocess.run(
        [kube.kubectl_binary(), f"--kubeconfig={s.operator.kubeconfig}", "auth", "whoami",
         "-o", "jsonpath={.status.userInfo.username}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert whoami == s.operator.user
    lease = client.CoordinationV1Api(s.cluster.api).read_namespaced_lease("shorthop-leader", s.home)
    assert lease.spec.holder_identity == s.operator.process.identity

    # The chart's own operator pods exist but cannot be scheduled (no image can run here).
    def chart_pods() -> list[client.V1Pod]:
        listed = s.cluster.core.list_namespaced_pod(
            s.home, label_selector=f"app.kubernetes.io/instance={s.release}"
        ).items
        return listed if len(listed) == 2 else []

    pods = kube.wait_for("the chart's two operator pods", chart_pods, timeout=60)
    assert {p.status.phase for p in pods} == {"Pending"}
    assert not any(p.spec.node_name for p in pods)


def test_deepseek_replicas_each_sit_inside_one_nvl72_rack_next_to_their_peers(s: Scenario) -> None:
    pods = s.pods(DEEPSEEK)
    assert len(pods) == 2 * 2 + 2 * 4
    by_replica: dict[tuple[str, str], list[client.V1Pod]] = {}
    for p in pods:
        assert p.status.phase == "Running"
        assert p.spec.scheduler_name == "shorthop"
        assert s.gpus.product(p.spec.node_name) == GB200
        assert fx.pod_gpus(p) == [0, 1, 2, 3]  # a whole compute tray per pod
        labels = p.metadata.labels
        by_replica.setdefault(
            (labels["shorthop.io/role"], labels["shorthop.io/replica"]), []
        ).append(p)
    assert sorted(by_replica) == [
        ("decode", "0"),
        ("decode", "1"),
        ("prefill", "0"),
        ("prefill", "1"),
    ]
    for (role, _), members in by_replica.items():
        assert len(members) == (4 if role == "decode" else 2)
        cliques = {s.gpus.clique(p.spec.node_name) for p in members}
        assert len(cliques) == 1, f"{role} replica spans NVLink domains {cliques}"
        assert len({p.spec.node_name for p in members}) == len(members)

    status = s.infd(DEEPSEEK)["status"]
    assert {(r["role"], r["tier"]) for r in status["replicas"]} == {
        ("prefill", "nvlink-domain"),
        ("decode", "nvlink-domain"),
    }
    # Every prefill->decode pair stays inside one NVL72 rack: 8 x 16 GPU pairs each.
    assert status["tiers"] == {"nvlink-domain": 2 * 8 * 16}
    assert [t["tier"] for t in status["kvTransfers"]] == ["nvlink-domain"] * 2
    assert status["worstTier"] == "nvlink-domain"


def test_llama_replicas_each_sit_on_one_h100_node_and_share_a_rack_with_their_peers(
    s: Scenario,
) -> None:
    pods = s.pods(LLAMA)
    assert len(pods) == 3 + 2
    for p in pods:
        assert p.status.phase == "Running"
        assert s.gpus.product(p.spec.node_name) == H100
        role = p.metadata.labels["shorthop.io/role"]
        assert len(fx.pod_gpus(p)) == (4 if role == "prefill" else 8)
        assert p.spec.containers[0].resources.requests["cpu"] == (
            "16" if role == "prefill" else "32"
        )
    status = s.infd(LLAMA)["status"]
    assert {r["tier"] for r in status["replicas"]} == {"same-node-nvlink"}
    # 4 + 8 GPUs cannot share an 8-GPU node: the best a prefill->decode pair can get is the
    # same rack (scalable unit); every pair gets it.
    assert set(status["tiers"]) == {"rack"}
    assert sum(status["tiers"].values()) == 3 * 4 * 8
    assert [t["tier"] for t in status["kvTransfers"]] == ["rack"] * 3
    racks = {s.gpus.labels[p.spec.node_name]["topology.shorthop.io/rack"] for p in pods}
    assert len(racks) == 1, racks


def test_no_gpu_is_used_twice_and_background_pods_keep_theirs(s: Scenario) -> None:
    bound = oh.gpus_bound(s.cluster)
    for node in s.gpus.nodes:
        name = node["metadata"]["name"]
        assert bound.get(name, 0) <= int(node["status"]["allocatable"]["nvidia.com/gpu"]), name
    background = s.cluster.core.list_namespaced_pod(s.gpus.background_namespace).items
    assert len(background) == len(s.gpus.background)
    assert {p.status.phase for p in background} == {"Running"}
    taken = {
        (p.spec.node_name, g)
        for name in (DEEPSEEK, LLAMA)
        for p in s.pods(name)
        for g in fx.pod_gpus(p)
    }
    assert len(taken) == sum(
        len(fx.pod_gpus(p)) for name in (DEEPSEEK, LLAMA) for p in s.pods(name)
    )


def test_kubectl_get_infd_shows_phase_ready_tier_and_age(s: Scenario) -> None:
    lines = s.cluster.kubectl("get", "infd", "-n", s.user).stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "READY", "TIER", "AGE"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows[DEEPSEEK][:3] == ["Running", "12/12", "nvlink-domain"]
    assert rows[LLAMA][:3] == ["Running", "5/5", "rack"]
    wide = s.cluster.kubectl("get", "infd", LLAMA, "-n", s.user, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "PHASE", "READY", "TIER", "COST", "AGE"]


def test_status_has_conditions_replicas_cost_and_kv_transfers(s: Scenario) -> None:
    for name in (DEEPSEEK, LLAMA):
        body = s.infd(name)
        status = body["status"]
        assert status["phase"] == "Running"
        assert status["observedGeneration"] == body["metadata"]["generation"]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Placed": "True",
            "Ready": "True",
            "Degraded": "False",
        }
        roles = {r["name"]: r for r in body["spec"]["roles"]}
        assert Counter(r["role"] for r in status["replicas"]) == {
            role: spec["replicas"] for role, spec in roles.items()
        }
        for replica in status["replicas"]:
            for pod in replica["pods"]:
                assert pod["ready"] is True
                assert pod["node"] in s.gpus.labels
        cost = status["cost"]
        assert cost["total"] == pytest.approx(cost["intraReplica"] + cost["traffic"], abs=1e-2)
        assert cost["traffic"] > 0
        assert all(t["modeledMs"] > 0 for t in status["kvTransfers"])
    # Same bytes per GPU link, wider link: the NVL72 pair moves its (smaller, MLA) KV cache faster.
    deepseek_ms = s.infd(DEEPSEEK)["status"]["kvTransfers"][0]["modeledMs"]
    llama_ms = s.infd(LLAMA)["status"]["kvTransfers"][0]["modeledMs"]
    assert deepseek_ms < llama_ms


def test_events_say_where_each_deployment_was_placed(s: Scenario) -> None:
    for name in (DEEPSEEK, LLAMA):
        placed = [e for e in oh.events(s.cluster, s.user, name) if e.reason == "Placed"]
        assert placed, name
        assert placed[0].type == "Normal"
        assert placed[0].source.component or placed[0].reporting_component
    described = s.cluster.kubectl("describe", "infd", DEEPSEEK, "-n", s.user).stdout
    assert "Placed" in described


def test_metrics_show_latency_tiers_and_leadership(s: Scenario) -> None:
    text = s.operator.process.metrics()
    assert fx.metric_value(text, "shorthop_leader") == 1.0
    count = fx.metric_value(text, "shorthop_placement_latency_seconds_count")
    assert count is not None
    assert count >= 2
    assert (fx.metric_value(text, "shorthop_pods_per_tier", {"tier": "nvlink-domain"}) or 0) >= 12
    assert (fx.metric_value(text, "shorthop_pods_per_tier", {"tier": "same-node-nvlink"}) or 0) >= 5
    assert s.operator.process.get(s.operator.process.health_port, "/readyz") == "ok"


# -- day two ------------------------------------------------------------------------------------


def _patch_replicas(s: Scenario, name: str, role: str, replicas: int) -> None:
    index = [r["name"] for r in s.docs[name]["spec"]["roles"]].index(role)
    patch = f'[{{"op":"replace","path":"/spec/roles/{index}/replicas","value":{replicas}}}]'
    s.cluster.kubectl("patch", "infd", name, "-n", s.user, "--type=json", "-p", patch)
    s.docs[name]["spec"]["roles"][index]["replicas"] = replicas


def _settled(s: Scenario, name: str, pods: int) -> bool:
    body = s.infd(name)
    status = body.get("status") or {}
    return (
        status.get("phase") == "Running"
        and status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("ready") == f"{pods}/{pods}"
        and len(s.pods(name)) == pods
    )


def test_scaling_decode_up_and_down_leaves_the_other_replicas_where_they_are(s: Scenario) -> None:
    before = s.placement(DEEPSEEK)
    home = {s.gpus.clique(n) for n in before.values()}
    assert len(home) == 1, "the example prefers one rack, and one has room"
    # Two more 16-GPU decode replicas: the deployment's rack has room for one of them only.
    _patch_replicas(s, DEEPSEEK, "decode", 4)
    kube.wait_for("four decode replicas", lambda: _settled(s, DEEPSEEK, 20), timeout=60)
    grown = s.placement(DEEPSEEK)
    assert {k: grown[k] for k in before} == before, "existing pods must stay"
    new = [p for p in s.pods(DEEPSEEK) if p.metadata.name not in before]
    assert len(new) == 8
    assert {p.metadata.labels["shorthop.io/role"] for p in new} == {"decode"}
    new_cliques = {
        r: {
            s.gpus.clique(p.spec.node_name)
            for p in new
            if p.metadata.labels["shorthop.io/replica"] == r
        }
        for r in ("2", "3")
    }
    assert all(len(c) == 1 for c in new_cliques.values()), new_cliques
    assert sorted(len(c & home) for c in new_cliques.values()) == [0, 1]
    status = s.infd(DEEPSEEK)["status"]
    assert {r["tier"] for r in status["replicas"]} == {"nvlink-domain"}
    # Decode replicas 0-2 share the prefill rack; the one in the other rack talks to its prefill
    # peer over the network (both racks sit in one block).
    assert status["tiers"] == {"nvlink-domain": 3 * 8 * 16, "block": 8 * 16}

    _patch_replicas(s, DEEPSEEK, "decode", 2)
    kube.wait_for("back to two decode replicas", lambda: _settled(s, DEEPSEEK, 12), timeout=60)
    shrunk = s.placement(DEEPSEEK)
    assert all(grown[k] == v for k, v in shrunk.items()), "the replicas that stay do not move"
    assert {s.gpus.clique(n) for n in shrunk.values()} == home
    status = s.infd(DEEPSEEK)["status"]
    assert Counter(r["role"] for r in status["replicas"]) == {"prefill": 2, "decode": 2}
    assert [t["tier"] for t in status["kvTransfers"]] == ["nvlink-domain"] * 2
    assert status["tiers"] == {"nvlink-domain": 2 * 8 * 16}, "status.tiers must not keep old keys"


def test_losing_a_node_re_places_only_the_replica_that_was_on_it(s: Scenario) -> None:
    before = s.placement(DEEPSEEK)
    llama_before = s.placement(LLAMA)
    victim_pod = sorted(k for k in before if "-decode-" in k)[0]
    victim = before[victim_pod]
    clique = s.gpus.clique(victim)
    s.cluster.core.delete_node(victim)

    def repaired() -> bool:
        now = s.placement(DEEPSEEK)
        return (
            set(now) == set(before)
            and victim not in now.values()
            and all(now.values())
            and _settled(s, DEEPSEEK, 12)
        )

    kube.wait_for("the lost decode pod re-placed", repaired, timeout=90)
    after = s.placement(DEEPSEEK)
    assert {k: v for k, v in after.items() if k != victim_pod} == {
        k: v for k, v in before.items() if k != victim_pod
    }, "pods on healthy nodes must stay"
    # The replica is whole again, inside its NVLink domain.
    replica = victim_pod.rsplit("-", 1)[0]
    members = [n for k, n in after.items() if k.startswith(replica + "-")]
    assert {s.gpus.clique(n) for n in members} == {clique}
    assert s.placement(LLAMA) == llama_before
    assert any(
        e.reason == "Repairing" and victim in (e.message or "")
        for e in oh.events(s.cluster, s.user, DEEPSEEK)
    )
    assert set(s.infd(DEEPSEEK)["status"]["tiers"]) == {"nvlink-domain"}


def test_no_pod_was_ever_bound_against_its_templates_rules(s: Scenario) -> None:
    """Every state since the first apply (placement, scaling, repair): each bound pod sits on a
    node its template's nodeSelector / required node affinity admits."""
    s.rules.assert_held()
    assert s.rules.states > len(s.pods(DEEPSEEK)) + len(s.pods(LLAMA))
    bound = [p for p in s.rules.pods() if (p.get("spec") or {}).get("nodeName")]
    assert len(bound) == 12 + 5


# -- least privilege ----------------------------------------------------------------------------


def test_the_service_account_cannot_read_secrets(s: Scenario) -> None:
    for ns in (s.user, s.home):
        answer = s.cluster.kubectl(
            "auth", "can-i", "get", "secrets", "-n", ns, f"--as={s.operator.user}", check=False
        )
        assert answer.stdout.strip() == "no", (ns, answer.stdout, answer.stderr)
    # Not only the authorizer's opinion: the operator's own credentials get 403.
    as_operator = client.CoreV1Api(
        config.new_client_from_config(config_file=str(s.operator.kubeconfig))
    )
    with pytest.raises(client.ApiException) as denied:
        as_operator.list_namespaced_secret(s.user)
    assert denied.value.status == 403
    with pytest.raises(client.ApiException) as denied:
        as_operator.read_namespaced_secret("anything", s.home)
    assert denied.value.status == 403
    # ... while what it needs works with the same credentials.
    assert as_operator.list_node().items


# -- clean-up -----------------------------------------------------------------------------------


def test_deleting_the_deployments_leaves_nothing_behind(s: Scenario) -> None:
    for name in (DEEPSEEK, LLAMA):
        s.cluster.kubectl("delete", "infd", name, "-n", s.user, "--wait=true", "--timeout=60s")

    def empty() -> bool:
        pods = s.cluster.core.list_namespaced_pod(s.user).items
        services = s.cluster.core.list_namespaced_service(s.user).items
        return not pods and not services

    kube.wait_for("pods and services garbage-collected", empty, timeout=90)
    assert not s.cluster.kubectl("get", "infd", "-n", s.user, "-o", "name").stdout.strip()
    text = s.operator.process.metrics()
    assert fx.metric_value(text, "shorthop_leader") == 1.0


NAMESPACED = {
    "serviceaccounts": "ServiceAccount",
    "roles.rbac.authorization.k8s.io": "Role",
    "rolebindings.rbac.authorization.k8s.io": "RoleBinding",
    "deployments.apps": "Deployment",
    "configmaps": "ConfigMap",
    "services": "Service",
    "poddisruptionbudgets.policy": "PodDisruptionBudget",
}
CLUSTER_SCOPED = {
    "clusterroles.rbac.authorization.k8s.io": "ClusterRole",
    "clusterrolebindings.rbac.authorization.k8s.io": "ClusterRoleBinding",
}


def _release_objects(s: Scenario) -> list[str]:
    selector = f"app.kubernetes.io/instance={s.release}"
    found = s.cluster.kubectl(
        "get", ",".join(NAMESPACED), "-n", s.home, "-l", selector, "-o", "name"
    ).stdout.split()
    found += s.cluster.kubectl(
        "get", ",".join(CLUSTER_SCOPED), "-l", selector, "-o", "name"
    ).stdout.split()
    return sorted(found)


def test_helm_uninstall_removes_the_charts_objects_but_keeps_the_crd(s: Scenario) -> None:
    installed = _release_objects(s)
    kinds = Counter(name.split("/")[0].split(".")[0] for name in installed)
    assert kinds == {
        "serviceaccount": 1,
        "role": 1,
        "rolebinding": 1,
        "deployment": 1,
        "configmap": 1,
        "service": 1,
        "poddisruptionbudget": 1,
        "clusterrole": 3,  # cluster-read, the writes, claim-binding (dra.enabled)
        "clusterrolebinding": 3,
    }, installed
    s.operator.process.stop()  # its token dies with the ServiceAccount
    # A user's deployment that exists while the release goes (nobody places it: no operator).
    survivor = fx.retarget(fx.example(EXAMPLES[LLAMA]), s.user)
    survivor["metadata"]["name"] = "survivor"
    s.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(survivor))
    s.helm("uninstall", s.release, "--namespace", s.home, "--wait", "--timeout=60s")
    s.uninstalled = True
    kube.wait_for("the release's objects gone", lambda: not _release_objects(s), timeout=60)
    # Helm never deletes CRDs it installed from crds/ (that would delete every user's
    # InferenceDeployments): the CRD helm created stays, and the deployments in it.
    assert _crd_uid(s.cluster) == s.crd_uid
    kept = oh.get_infd(s.cluster, s.user, "survivor")
    assert [r["name"] for r in kept["spec"]["roles"]] == [
        r["name"] for r in survivor["spec"]["roles"]
    ]
    assert "release: not found" in s.helm("status", s.release, "-n", s.home, check=False).stderr

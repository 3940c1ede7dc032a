"""The node agent's least privilege, on the real API server: the chart's RBAC and
ValidatingAdmissionPolicy installed as rendered, a pod of the agent's ServiceAccount bound to a
(fake) node, a real token requested for that pod, and then, as that token, the agent's own node's
topology annotations may change and nothing else may: not another node, not a label, a taint, the
spec, another annotation, the status, and not with a token that names no node.

The node name in the token (user extra ``authentication.kubernetes.io/node-name``) is what the
policy relies on; the test reads it back through a SelfSubjectReview on whatever server version it
runs against instead of assuming it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop.agent.kube import FIELD_MANAGER, NodeClient

from e2e import fixtures as fx
from tests import kube

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shorthop"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
SMI = "shorthop.io/nvidia-smi-topo"
TOPO = "shorthop.io/gpu-topology"


def server_version(cluster: kube.Cluster) -> tuple[int, int, str]:
    info = client.VersionApi(cluster.api).get_code()
    minor = int("".join(c for c in info.minor if c.isdigit()))
    return int(info.major), minor, info.git_version


def render(cluster: kube.Cluster, release: str, namespace: str, tmp: Path) -> list[dict[str, Any]]:
    """The chart's node-agent objects for ``release``, as helm renders them."""
    binary = fx.helm_binary()
    if binary is None:
        pytest.fail("no helm: run `make controlplane` to build it")
    helm = fx.Helm(binary, cluster.kubeconfig, tmp)
    _, minor, _ = server_version(cluster)
    shown = [
        "templates/node-agent-serviceaccount.yaml",
        "templates/node-agent-rbac.yaml",
        "templates/node-agent-admission-policy.yaml",
    ]
    out = helm(
        "template", release, str(CHART), "--namespace", namespace,
        "--kube-version", f"1.{minor}.0", "--set", "nodeAgent.enabled=true",
        *[flag for path in shown for flag in ("--show-only", path)],
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class Setup:
    cluster: kube.Cluster
    namespace: str
    account: str
    own: str  # the node the agent's pod is bound to
    other: str
    token: str  # bound to that pod
    unbound_token: str  # a plain token of the same account, bound to nothing

    def api(self, token: str) -> client.CoreV1Api:
        base = self.cluster.api.configuration
        configuration = client.Configuration()
        configuration.host = base.host
        configuration.ssl_ca_cert = base.ssl_ca_cert
        configuration.verify_ssl = base.verify_ssl
        configuration.api_key = {"authorization": f"Bearer {token}"}
        return client.CoreV1Api(client.ApiClient(configuration))

    def patch(
        self, node: str, body: Any, *, token: str | None = None, subresource: str = ""
    ) -> int:
        """Merge-patch ``node`` as the agent; the HTTP status (and the message on refusal)."""
        core = self.api(token or self.token)
        call = core.patch_node_status if subresource == "status" else core.patch_node
        try:
            call(node, body, _content_type="application/merge-patch+json", _preload_content=False)
        except client.ApiException as exc:
            self.last_refusal = json.loads(exc.body or "{}").get("message", "")
            return int(exc.status)
        return 200

    last_refusal: str = ""


def _node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "nvidia.com/gpu.present": "true"},
            "annotations": {"example.com/owner": "infra", SMI: "old"},
        },
        "spec": {"taints": [{"key": "shorthop.test/agent", "effect": "NoSchedule"}]},
    }


@pytest.fixture(scope="module")
def setup(cluster: kube.Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tag = uuid.uuid4().hex[:6]
    release, own, other = f"agent{tag}", f"agent-{tag}-own", f"agent-{tag}-other"
    with cluster.namespace("agent") as namespace:
        docs = render(cluster, release, namespace, tmp_path_factory.mktemp("helm"))
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == sorted(
            ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
             "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
        )  # fmt: skip
        try:
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
            for name in (own, other):
                cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(_node(name)))
            account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
            token = _pod_bound_token(cluster, namespace, account, own)
            unbound = cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()
            state = Setup(cluster, namespace, account, own, other, token, unbound)
            _wait_policy_active(state)
            yield state
        finally:
            for name in (own, other):
                cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)
            for doc in docs:
                where = doc["metadata"].get("namespace")
                if where != namespace:  # the namespace's own objects go with it
                    scope = ["-n", where] if where else []
                    cluster.kubectl(
                        "delete", doc["kind"], doc["metadata"]["name"], *scope,
                        "--ignore-not-found", check=False,
                    )  # fmt: skip


def _pod_bound_token(cluster: kube.Cluster, namespace: str, account: str, node: str) -> str:
    """A TokenRequest token bound to a pod of ``account`` that is bound to ``node``."""
    pod = cluster.core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "agent"},
            "spec": {
                "serviceAccountName": account,
                "nodeName": node,  # bound at creation, as the DaemonSet controller does
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "agent", "image": "example.invalid/agent:0"}],
            },
        },
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],
            expiration_seconds=600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name="agent", uid=pod.metadata.uid
            ),
        )
    )
    answer = cluster.core.create_namespaced_service_account_token(account, namespace, request)
    return str(answer.status.token)


def _wait_policy_active(s: Setup) -> None:
    """Policies and bindings reach the admission plugin a moment after they are created: wait
    until the agent's token is refused a label change (and its RBAC lets it get that far)."""

    attempts = iter(range(10_000))

    def refused() -> bool:
        # A new value each time: a patch that changes nothing is no change to refuse.
        body = {"metadata": {"labels": {"shorthop.test/probe": str(next(attempts))}}}
        return s.patch(s.own, body) == 403 and "labels" in s.last_refusal

    kube.wait_for("the admission policy to take effect", refused, timeout=60)


def _annotations(s: Setup, node: str) -> dict[str, str]:
    return dict(s.cluster.core.read_node(node).metadata.annotations or {})


def test_a_token_bound_to_the_pod_names_the_pods_node(setup: Setup) -> None:
    auth = client.AuthenticationV1Api(setup.api(setup.token).api_client)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    review = json.loads(auth.create_self_subject_review(body, _preload_content=False).data)
    user = review["status"]["userInfo"]
    major, minor, version = server_version(setup.cluster)
    assert user["username"] == f"system:serviceaccount:{setup.namespace}:{setup.account}"
    assert user.get("extra", {}).get(NODE_NAME_EXTRA) == [setup.own], (
        f"Kubernetes {version} puts no {NODE_NAME_EXTRA} in pod-bound tokens; "
        "the node agent's admission policy needs it (Kubernetes >= 1.30)"
    )
    assert (major, minor) >= (1, 30)


def test_the_agent_may_change_its_own_nodes_topology_annotations(setup: Setup) -> None:
    assert (
        setup.patch(setup.own, {"metadata": {"annotations": {SMI: "\tGPU0\nGPU0\t X \n"}}}) == 200
    )
    assert setup.patch(setup.own, {"metadata": {"annotations": {TOPO: '{"version":1}'}}}) == 200
    after = _annotations(setup, setup.own)
    assert (after[SMI], after[TOPO]) == ("\tGPU0\nGPU0\t X \n", '{"version":1}')
    assert setup.patch(setup.own, {"metadata": {"annotations": {TOPO: None}}}) == 200
    assert TOPO not in _annotations(setup, setup.own)
    assert after["example.com/owner"] == "infra"


def test_the_agents_writes_are_managed_by_shorthop_node_agent(setup: Setup) -> None:
    """The agent's own client (its calls, its token): its annotations and events are recorded
    under the field manager ``shorthop-node-agent`` (``managedFields``)."""
    agent = NodeClient(setup.api(setup.token).api_client, setup.own)
    # A value no other test wrote: a patch that changes nothing records no manager.
    agent.patch_annotations({SMI: f"\tGPU0\nGPU0\t X \n# {uuid.uuid4().hex}"})
    agent.event(reason="TopologyProbe", message="managed-fields check", warning=False)
    node = setup.cluster.core.read_node(setup.own)
    entries = [(f.manager, f.operation) for f in node.metadata.managed_fields or []]
    assert (FIELD_MANAGER, "Update") in entries, entries
    assert FIELD_MANAGER == "shorthop-node-agent"
    events = [
        e
        for e in setup.cluster.core.list_namespaced_event("default").items
        if e.involved_object.name == setup.own and e.reason == "TopologyProbe"
    ]
    assert events
    assert [f.manager for f in events[0].metadata.managed_fields or []] == [FIELD_MANAGER]


@pytest.mark.parametrize(
    ("case", "body", "words"),
    [
        ("label", {"metadata": {"labels": {"nvidia.com/gpu.present": "false"}}}, "labels"),
        ("taint", {"spec": {"taints": None}}, "spec"),
        ("cordon", {"spec": {"unschedulable": True}}, "spec"),
        (
            "other-annotation",
            {"metadata": {"annotations": {"example.com/owner": "agent"}}},
            "only the annotations",
        ),
        (
            "remove-annotation",
            {"metadata": {"annotations": {"example.com/owner": None}}},
            "only the annotations",
        ),
        (
            "new-annotation",
            {"metadata": {"annotations": {"example.com/new": "x"}}},
            "only the annotations",
        ),
        ("finalizer", {"metadata": {"finalizers": ["example.com/hold"]}}, "finalizers"),
        (
            "mixed",
            {"metadata": {"annotations": {SMI: "new", "example.com/owner": "x"}}},
            "only the annotations",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_everything_else_on_its_own_node_is_denied(
    setup: Setup, case: str, body: Any, words: str
) -> None:
    before = setup.cluster.core.read_node(setup.own)
    assert setup.patch(setup.own, body) == 403, case
    assert words in setup.last_refusal, setup.last_refusal
    after = setup.cluster.core.read_node(setup.own)
    assert after.metadata.resource_version == before.metadata.resource_version


def test_another_nodes_annotation_is_denied(setup: Setup) -> None:
    assert setup.patch(setup.other, {"metadata": {"annotations": {SMI: "forged"}}}) == 403
    assert f"its token names node {setup.own}), not node {setup.other}" in setup.last_refusal
    assert _annotations(setup, setup.other)[SMI] == "old"


def test_status_and_deletion_are_denied(setup: Setup) -> None:
    status = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert setup.patch(setup.own, status, subresource="status") == 403
    with pytest.raises(client.ApiException) as deleted:
        setup.api(setup.token).delete_node(setup.own)
    assert deleted.value.status == 403


def test_a_token_bound_to_no_pod_may_change_nothing(setup: Setup) -> None:
    body = {"metadata": {"annotations": {SMI: "from an unbound token"}}}
    assert setup.patch(setup.own, body, token=setup.unbound_token) == 403
    assert "its token names no node" in setup.last_refusal


def test_other_users_are_not_affected(setup: Setup) -> None:
    setup.cluster.core.patch_node(setup.own, {"metadata": {"labels": {"example.com/admin": "yes"}}})
    assert setup.cluster.core.read_node(setup.own).metadata.labels["example.com/admin"] == "yes"

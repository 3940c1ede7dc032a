"""The Helm chart against the real API server, under both Helm majors: the server accepts what it
renders under restricted Pod Security, a release installs, upgrades and uninstalls, and its
ServiceAccount holds exactly the permissions the operator uses, measured from the API server's
audit log while the operator runs as that account. Rendering without a cluster is
test_chart_render.py."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop.controller import dra
from shorthop.topology import fake

from e2e import dra as fdra
from e2e import fixtures as fx
from tests import helm as helm_bin
from tests import kube
from tests import operator_harness as oh
from tests.helm import CHART, MAJORS, Helm, helm_for

pytestmark = pytest.mark.cluster

# Keeps the chart's own operator pods Pending: no node has this label.
NOWHERE = '{"shorthop.io/test":"nowhere"}'


@pytest.fixture(scope="module")
def server_version(cluster: kube.Cluster) -> str:
    """Render for the Kubernetes the server runs, whatever the build was."""
    return cluster.server_version().git_version


@pytest.fixture(scope="module", params=MAJORS, ids=[f"helm{m}" for m in MAJORS])
def helm(
    request: pytest.FixtureRequest, server_version: str, tmp_path_factory: pytest.TempPathFactory
) -> Helm:
    major: int = request.param
    return helm_for(major, tmp_path_factory.mktemp(f"helm{major}"), server_version)


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _label_restricted(cluster: kube.Cluster, namespace: str) -> None:
    cluster.core.patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                }
            }
        },
    )


@pytest.fixture
def restricted_namespace(cluster: kube.Cluster) -> Iterator[str]:
    with cluster.namespace("chart") as ns:
        _label_restricted(cluster, ns)
        yield ns


# --- what the API server accepts --------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [[], ["--set", "replicaCount=3,logFormat=text,podDisruptionBudget.enabled=false"]],
    ids=["default", "values"],
)
def test_api_server_accepts_the_rendered_manifests(
    cluster: kube.Cluster, infd_crd: str, helm: Helm, restricted_namespace: str, values: list[str]
) -> None:
    ns = restricted_namespace
    docs = helm.template(*values, "--set", f"watchNamespaces={{{ns}}}", namespace=ns)
    text = yaml.safe_dump_all(docs)
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
    assert result.returncode == 0, result.stderr
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(docs), result.stdout


def test_operator_pod_is_admitted_under_restricted_enforcement(
    cluster: kube.Cluster, helm: Helm, restricted_namespace: str
) -> None:
    ns = restricted_namespace
    docs = helm.template(namespace=ns)
    # The ServiceAccount admission plugin wants the pod's account to exist.
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(_one(docs, "ServiceAccount")))
    template = _one(docs, "Deployment")["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], "name": "op"}}
    pod["spec"] = template["spec"]
    result = cluster.kubectl(
        "create", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(pod), check=False
    )
    assert result.returncode == 0, result.stderr
    # The check has teeth: the same pod as root is refused by Pod Security admission.
    pod["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    refused = cluster.kubectl(
        "create", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(pod), check=False
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr


# --- install, upgrade, uninstall ---------------------------------------------------------------


def _release_objects(cluster: kube.Cluster, release: str, home: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={release}"
    kinds = "serviceaccounts,configmaps,services,deployments.apps,roles,rolebindings"
    found = cluster.kubectl("get", kinds, "-n", home, "-l", selector, "-o", "name").stdout.split()
    found += cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
    ).stdout.split()
    return sorted(found)


def _deployment(cluster: kube.Cluster, release: str, home: str) -> client.V1Deployment:
    return client.AppsV1Api(cluster.api).read_namespaced_deployment(fx.fullname(release), home)


def test_permission_questions_must_name_what_the_server_serves(cluster: kube.Cluster) -> None:
    """The RBAC checks below answer "no" only to well-formed questions: a misspelt resource,
    a verb the resource does not have or a namespace on a cluster-scoped one is an error."""
    user = "system:serviceaccount:default:default"
    assert cluster.can(user, "create", "pods/binding", namespace="default") is False
    for bad in (
        {"verb": "get", "resource": "podz"},
        {"verb": "get", "resource": "inferencedeployment", "group": "shorthop.io"},
        {"verb": "bind", "resource": "pods"},
        {"verb": "get", "resource": "pods/bindings"},
        {"verb": "patch", "resource": "inferencedeployments/finalizers", "group": "shorthop.io"},
        {"verb": "list", "resource": "nodes", "namespace": "default"},
        {"verb": "get", "resource": "leases", "group": "coordination.k8s.io.typo"},
    ):
        with pytest.raises(kube.UnknownResource):
            cluster.can(user, **bad)  # type: ignore[arg-type]


def test_install_upgrade_and_uninstall(cluster: kube.Cluster, infd_crd: str, helm: Helm) -> None:
    release = f"sh{helm.major}-{uuid.uuid4().hex[:6]}"
    with (
        cluster.namespace("chart") as home,
        cluster.namespace("watched") as watched,
        cluster.namespace("other") as other,
    ):
        _label_restricted(cluster, home)
        installed = helm(
            "install", release, str(CHART), "--namespace", home,
            "--set", f"watchNamespaces={{{watched}}}",
            # Keep the operator pods Pending: this test is about the API objects, not the image.
            "--set-json", f"nodeSelector={NOWHERE}",
            kubeconfig=cluster.kubeconfig,
        )  # fmt: skip
        try:
            assert f"{home}/shorthop-leader" in installed.stdout  # NOTES.txt
            _check_permissions(cluster, f"system:serviceaccount:{home}:{fx.fullname(release)}",
                               home, watched, other)  # fmt: skip

            # Pod Security enforcement (restricted) admitted the operator pods.
            def pods() -> int:
                listed = cluster.core.list_namespaced_pod(
                    home, label_selector=f"app.kubernetes.io/instance={release}"
                )
                return len(listed.items) if len(listed.items) == 2 else 0

            kube.wait_for("the operator pods to be created", pods, timeout=60)
            before = _deployment(cluster, release, home)
            checksum = before.spec.template.metadata.annotations["checksum/config"]

            helm(
                "upgrade", release, str(CHART), "--namespace", home, "--reuse-values",
                "--set", "replicaCount=3,logFormat=text",
                kubeconfig=cluster.kubeconfig,
            )  # fmt: skip
            after = _deployment(cluster, release, home)
            assert after.spec.replicas == 3
            assert after.spec.template.metadata.annotations["checksum/config"] != checksum
            config = yaml.safe_load(fx.chart_config(cluster, release, home))
            assert config["logFormat"] == "text"
            assert config["namespaces"] == [watched], "--reuse-values kept watchNamespaces"
            status = json.loads(helm("status", release, "-n", home, "-o", "json",
                                     kubeconfig=cluster.kubeconfig).stdout)  # fmt: skip
            assert status["version"] == 2
            assert status["info"]["status"] == "deployed"
        finally:
            helm("uninstall", release, "--namespace", home, kubeconfig=cluster.kubeconfig)
        kube.wait_for(
            "the release's objects gone",
            lambda: not _release_objects(cluster, release, home),
            timeout=60,
        )
        gone = helm("status", release, "-n", home, kubeconfig=cluster.kubeconfig, check=False)
        assert gone.returncode != 0
        assert "not found" in gone.stderr
        # The CRD is not the release's to delete (e2e checks this for a CRD helm installed).
        assert cluster.kubectl("get", "crd", infd_crd, check=False).returncode == 0


def _check_permissions(
    cluster: kube.Cluster, account: str, home: str, watched: str, other: str
) -> None:
    """Where each permission applies: writes in watched namespaces only, reads cluster-wide,
    the Lease in the release namespace. (Which permissions: see the audit test below.)"""
    allowed = [
        ("list", "", "nodes", None),
        ("watch", "", "nodes", None),
        ("list", "", "pods", None),
        ("watch", "", "pods", other),
        ("create", "", "pods", watched),
        ("create", "", "pods/binding", watched),
        ("delete", "", "pods", watched),
        ("create", "", "services", watched),
        ("create", "", "events", watched),
        ("watch", "shorthop.io", "inferencedeployments", watched),
        ("patch", "shorthop.io", "inferencedeployments/status", watched),
        ("update", "shorthop.io", "inferencedeployments/finalizers", watched),
        ("update", "coordination.k8s.io", "leases", home),
        ("get", "node.k8s.io", "runtimeclasses", None),
        # Dynamic Resource Allocation: every slice, claim and class read cluster-wide (busy
        # devices are every claim's, whoever allocated them); each pod's own claim written
        # where its pod is.
        ("list", "resource.k8s.io", "resourceslices", None),
        ("watch", "resource.k8s.io", "resourceslices", None),
        ("list", "resource.k8s.io", "deviceclasses", None),
        ("list", "resource.k8s.io", "resourceclaims", other),
        ("watch", "resource.k8s.io", "resourceclaims", None),
        ("create", "resource.k8s.io", "resourceclaims", watched),
        ("get", "resource.k8s.io", "resourceclaims", watched),
        ("delete", "resource.k8s.io", "resourceclaims", watched),
        ("update", "resource.k8s.io", "resourceclaims/status", watched),
    ]
    kube.wait_for(
        "the chart's RBAC to take effect",
        lambda: cluster.can(account, "list", "nodes"),
        timeout=30,
    )
    refused = [
        a for a in allowed if not cluster.can(account, a[0], a[2], group=a[1], namespace=a[3])
    ]
    assert refused == []
    denied = [
        ("get", "", "secrets", watched),
        ("list", "", "configmaps", home),
        ("create", "", "pods", other),
        ("delete", "", "pods", other),
        ("create", "", "pods/binding", other),
        ("patch", "", "pods", watched),
        ("delete", "", "services", watched),
        ("update", "shorthop.io", "inferencedeployments", watched),
        ("patch", "shorthop.io", "inferencedeployments/status", other),
        ("create", "coordination.k8s.io", "leases", watched),
        ("create", "coordination.k8s.io", "leases", home),  # the chart creates the Lease
        ("delete", "", "nodes", None),
        ("patch", "", "nodes", None),
        ("create", "apps", "deployments", watched),
        ("delete", "shorthop.io", "inferencedeployments", watched),
        ("create", "shorthop.io", "inferencedeployments", watched),
        ("create", "resource.k8s.io", "resourceclaims", other),
        ("delete", "resource.k8s.io", "resourceclaims", other),
        ("update", "resource.k8s.io", "resourceclaims/status", other),
        ("update", "resource.k8s.io", "resourceclaims", watched),
        ("create", "resource.k8s.io", "resourceslices", None),
        ("delete", "resource.k8s.io", "resourceslices", None),
        ("create", "resource.k8s.io", "deviceclasses", None),
        ("create", "resource.k8s.io", "resourceclaimtemplates", watched),
        ("list", "node.k8s.io", "runtimeclasses", None),
        ("create", "node.k8s.io", "runtimeclasses", None),
    ]
    granted = [d for d in denied if cluster.can(account, d[0], d[2], group=d[1], namespace=d[3])]
    assert granted == []


# --- the operator's requests, from the API server's audit log ----------------------------------

# Checked by admission, not requested: OwnerReferencesPermissionEnforcement (on in the local
# control plane) lets a client set blockOwnerDeletion on its pods' owner reference only if it
# may update the owner's finalizers. The audit log shows the pod create, not this check.
# Likewise, from Kubernetes 1.36 the claim status strategy authorizes a write of a claim's
# allocation or reservedFor against the synthetic resourceclaims/binding (granular status
# authorization): checked on the status update, never requested itself.
ADMISSION_CHECKED = {
    ("shorthop.io", "inferencedeployments/finalizers", "update"),
    ("resource.k8s.io", "resourceclaims/binding", "update"),
}


@dataclass(frozen=True)
class Request:
    """One audited request: what, where, and which role allowed it."""

    verb: str
    group: str
    resource: str  # "pods/binding" for a subresource
    namespace: str | None
    decision: str
    role: tuple[str, str] | None  # (kind, name) from the RBAC authorizer's reason

    @property
    def rule(self) -> tuple[str, str, str]:
        return (self.group, self.resource, self.verb)


def _role_of(reason: str) -> tuple[str, str] | None:
    # 'RBAC: allowed by RoleBinding "x/ns" of ClusterRole "x-shorthop" to ServiceAccount "..."'
    for kind in ("ClusterRole", "Role"):
        marker = f' of {kind} "'
        if marker in reason:
            return kind, reason.split(marker, 1)[1].split('"', 1)[0]
    return None


def audited(audit_dir: Path, user: str) -> list[Request]:
    """Every resource request ``user`` made, from the audit log and its rotated files."""
    seen: dict[str, Request] = {}
    for path in sorted(audit_dir.glob("audit*.log")):
        for line in path.read_text(errors="replace").splitlines():
            event = json.loads(line)
            ref = event.get("objectRef")
            if event["user"]["username"] != user or not ref or event["auditID"] in seen:
                continue
            notes = event.get("annotations") or {}
            resource = ref["resource"] + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            seen[event["auditID"]] = Request(
                event["verb"], ref.get("apiGroup", ""), resource, ref.get("namespace"),
                notes.get("authorization.k8s.io/decision", ""),
                _role_of(notes.get("authorization.k8s.io/reason", "")),
            )  # fmt: skip
    return list(seen.values())


def _roles(cluster: kube.Cluster, release: str) -> dict[tuple[str, str], set[tuple[str, str, str]]]:
    """(kind, name) -> (group, resource, verb) of every role the release installed."""
    selector = f"app.kubernetes.io/instance={release}"
    listed = json.loads(
        cluster.kubectl("get", "clusterroles,roles", "-A", "-l", selector, "-o", "json").stdout
    )["items"]
    return {
        (role["kind"], role["metadata"]["name"]): {
            (g, r, v)
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }
        for role in listed
    }


def _forbidden(audit_dir: Path, user: str) -> list[tuple[str, str, str, str | None]]:
    requests = audited(audit_dir, user)
    return sorted({(r.verb, r.group, r.resource, r.namespace) for r in requests
                   if r.decision != "allow"})  # fmt: skip


def _flush_audit(cluster: kube.Cluster, kubeconfig: Path, audit_dir: Path, user: str) -> None:
    """Make one more request as ``user`` and wait until the log has it: everything before it has
    been written too (the log backend writes in order)."""

    def reviews() -> int:
        return sum(1 for r in audited(audit_dir, user) if r.resource == "selfsubjectreviews")

    before = reviews()
    subprocess.run(
        [kube.kubectl_binary(), f"--kubeconfig={kubeconfig}", "auth", "whoami"],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    kube.wait_for("the audit log to catch up", lambda: reviews() > before, timeout=30)


def test_operator_uses_exactly_the_permissions_the_chart_grants(
    cluster: kube.Cluster, infd_crd: str, tmp_path: Path
) -> None:
    if cluster.local is None:
        pytest.skip("needs the local control plane's audit log (SHORTHOP_TEST_KUBECONFIG is set)")
    binary = helm_bin.binary(max(MAJORS))
    assert binary is not None, "run `make controlplane` to build helm"
    helm = fx.Helm(binary, cluster.kubeconfig, tmp_path / "helm")
    release = f"rbac-{uuid.uuid4().hex[:5]}"
    home, user_ns = f"{release}-system", f"{release}-user"
    audit_dir = cluster.local.audit_log.parent
    # DRA nodes (the chart grants DRA by default): their GPUs are in ResourceSlices, so the
    # operator allocates its pods' claims and every DRA grant is used.
    shape = fake.ClusterShape(hgx_units=1, nodes_per_unit=3, dra=frozenset({"hgx"}))
    with contextlib.ExitStack() as stack:
        pool, names = stack.enter_context(oh.node_pool(cluster, shape, prefix="rbac"))
        _publish_gpus(cluster, names, stack)
        oh.ensure_namespace(cluster, user_ns)
        stack.callback(fx.delete_namespace, cluster, user_ns)
        stack.callback(fx.delete_namespace, cluster, home)
        stack.callback(helm, "uninstall", release, "--namespace", home, check=False)
        fx.install_chart(helm, release, home, "--set", f"watchNamespaces={{{user_ns}}}")
        operator = fx.start_operator(cluster, release, home, tmp_path / "op", identity=release)
        stack.callback(operator.process.stop)
        operator.process.wait_leading(timeout=90)
        try:
            _exercise(cluster, operator, user_ns, pool, home)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nrefused: {_forbidden(audit_dir, operator.user)}"
            ) from None
        operator.process.stop()
        _flush_audit(cluster, operator.kubeconfig, audit_dir, operator.user)

        requests = audited(audit_dir, operator.user)
        forbidden = _forbidden(audit_dir, operator.user)
        assert forbidden == [], (
            f"the operator was refused: {forbidden}\n{operator.process.log[-3000:]}"
        )
        roles = _roles(cluster, release)
        used: dict[tuple[str, str], set[tuple[str, str, str]]] = {role: set() for role in roles}
        for r in requests:
            if r.role in roles:
                used[r.role].add(r.rule)
            else:  # allowed to every authenticated user by Kubernetes' default roles
                assert r.role is None or r.role[1].startswith("system:"), r
        unused = {role: rules - used[role] for role, rules in roles.items()}
        assert {role: rules for role, rules in unused.items() if rules - ADMISSION_CHECKED} == {}, (
            f"granted but never used: {unused}"
        )
        assert set().union(*roles.values()) >= ADMISSION_CHECKED, roles


def _publish_gpus(cluster: kube.Cluster, names: list[str], stack: contextlib.ExitStack) -> None:
    """The nodes' GPUs in ResourceSlices as the NVIDIA DRA driver publishes them, and its
    DeviceClass (removed afterwards when made here)."""
    nodes = [json.loads(cluster.kubectl("get", "node", n, "-o", "json").stdout) for n in names]
    published = fake.resource_slices(nodes)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(fake.as_list(published)))
    for body in published:
        stack.callback(
            cluster.kubectl,
            "delete",
            "resourceslice",
            body["metadata"]["name"],
            "--ignore-not-found",
        )
    if fdra.ensure_device_class(cluster):
        stack.callback(
            cluster.kubectl, "delete", "deviceclass", fake.DRA_DRIVER, "--ignore-not-found"
        )


def _stale_claim(cluster: kube.Cluster, ns: str, claim: str) -> None:
    """A claim under the name shorthop will give a pod's claim, left by an earlier pod (kept
    alive, so the garbage collector cannot take it first): shorthop reads it and removes it."""
    earlier = cluster.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "earlier"},
        "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "x"}]},
    })  # fmt: skip
    body = dra.render_claim(ns, "earlier", earlier.metadata.uid, 1, fake.DRA_DRIVER)
    body["metadata"]["name"] = claim
    body["metadata"]["finalizers"] = []
    client.ResourceV1Api(cluster.api).create_namespaced_resource_claim(ns, body)


def _exercise(cluster: kube.Cluster, operator: fx.Operator, ns: str, pool: str, home: str) -> None:
    """Everything the operator does for a user: place (read the RuntimeClass a template names,
    create, allocate each pod's claim on the DRA nodes, bind, services, status, events), remove
    a stale claim in the way, scale down (delete), keep leading (renew the Lease), and forget a
    deleted deployment."""
    name = "rbac"
    body = oh.deployment(name, ns, pool, [("prefill", 1, 4, 4), ("decode", 1, 8, 4)])
    runtime = f"{ns}-runc"  # cluster-scoped: named after the test's namespace
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
         "metadata": {"name": runtime}, "handler": "runc"}))  # fmt: skip
    body["spec"]["roles"][0]["template"]["spec"]["runtimeClassName"] = runtime
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    oh.wait_running(cluster, ns, name)
    oh.wait_event(cluster, ns, name, "Placed")
    resource = client.ResourceV1Api(cluster.api)

    def allocated() -> list[str]:
        claims = resource.list_namespaced_resource_claim(ns).items
        return sorted(c.metadata.name for c in claims if c.status and c.status.allocation)

    assert allocated() == [f"{name}-{p}-gpus" for p in ("decode-0-0", "decode-0-1", "prefill-0-0")]
    # One more decode replica, one of whose claims an earlier pod left behind.
    _stale_claim(cluster, ns, f"{name}-decode-1-0-gpus")
    grow = '[{"op":"replace","path":"/spec/roles/1/replicas","value":2}]'
    cluster.kubectl("patch", "infd", name, "-n", ns, "--type=json", "-p", grow)
    kube.wait_for(
        "the new decode replica's claims allocated",
        lambda: {f"{name}-decode-1-0-gpus", f"{name}-decode-1-1-gpus"} <= set(allocated()),
        timeout=90,
    )
    oh.wait_running(cluster, ns, name)
    patch = '[{"op":"replace","path":"/spec/roles/1/replicas","value":0}]'
    cluster.kubectl("patch", "infd", name, "-n", ns, "--type=json", "-p", patch)
    kube.wait_for(
        "the decode pods deleted",
        lambda: [p for p in oh.pods(cluster, ns, name) if "-decode-" in p.metadata.name] == [],
        timeout=60,
    )
    leases = client.CoordinationV1Api(cluster.api)
    renewed = leases.read_namespaced_lease("shorthop-leader", home).spec.renew_time
    kube.wait_for(
        "the Lease renewed",
        lambda: leases.read_namespaced_lease("shorthop-leader", home).spec.renew_time != renewed,
        timeout=60,
    )
    cluster.kubectl("delete", "infd", name, "-n", ns, "--wait=true", "--timeout=60s")
    cluster.kubectl("delete", "runtimeclass", runtime, "--ignore-not-found")
    assert operator.process.alive(), operator.process.log[-3000:]


def test_blocking_owner_deletion_needs_the_finalizers_grant(cluster: kube.Cluster) -> None:
    """Why ADMISSION_CHECKED is granted: without ``update`` on the owner's finalizers, a pod that
    blocks its owner's deletion is refused (and the audit log would only show the pod create)."""
    if cluster.local is None:
        pytest.skip("OwnerReferencesPermissionEnforcement is on in the local control plane only")
    with cluster.namespace("owner") as ns:
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        cluster.core.create_namespaced_service_account(
            ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="probe"))
        )
        rules = [client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["create"])]
        role = client.V1Role(metadata=client.V1ObjectMeta(name="probe"), rules=rules)
        rbac.create_namespaced_role(ns, role)
        rbac.create_namespaced_role_binding(
            ns,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="probe"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                          name="probe"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="probe", namespace=ns)],
            ),
        )  # fmt: skip
        owner = cluster.core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "owned", "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": owner.metadata.uid, "blockOwnerDeletion": True,
            }]},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "x"}]},
        }  # fmt: skip
        kubeconfig = fx.service_account_kubeconfig(
            cluster, ns, "probe", Path(cluster.kubeconfig).parent / f"probe-{ns}.kubeconfig"
        )

        def create() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [kube.kubectl_binary(), f"--kubeconfig={kubeconfig}", "create", "-n", ns,
                 "--dry-run=server", "-f", "-"],
                input=json.dumps(pod), capture_output=True, text=True, check=False, timeout=60,
            )  # fmt: skip

        refused = kube.wait_for("the probe's Role to take effect", lambda: (
            r if "blockOwnerDeletion" in (r := create()).stderr else None))  # fmt: skip
        assert refused.returncode != 0
        role.rules.append(
            client.V1PolicyRule(api_groups=[""], resources=["configmaps/finalizers"],
                                verbs=["update"])
        )  # fmt: skip
        rbac.replace_namespaced_role("probe", ns, role)
        kube.wait_for("the pod admitted with the finalizers grant",
                      lambda: create().returncode == 0, timeout=30)  # fmt: skip

"""Helpers for tests that talk to a real apiserver: clients, kubectl, polling, fake GPU nodes, and
what the server says about itself (version, served APIs, feature gates, authorization) so that a
test that depends on a Kubernetes version asks the server instead of assuming the build."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config

KUBECONFIG_ENV = "SHORTHOP_TEST_KUBECONFIG"
T = TypeVar("T")


@dataclass(frozen=True)
class ServerVersion:
    """What ``/version`` says: ``git_version`` ``v1.37.2``, ``minor`` 37."""

    git_version: str
    major: int
    minor: int

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)


@dataclass(frozen=True)
class ApiResource:
    """One resource (or ``resource/subresource``) of a served group version, from discovery."""

    group_version: str
    name: str  # "pods", "pods/binding"
    namespaced: bool
    verbs: frozenset[str]

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]


class UnknownResource(AssertionError):
    """A test named a resource, subresource or verb the server does not serve."""


# Subresources that exist only as authorization checks, not in discovery: admission
# (OwnerReferencesPermissionEnforcement) asks for ``update`` on ``<owner>/finalizers``.
AUTHORIZATION_ONLY: dict[str, frozenset[str]] = {"finalizers": frozenset({"update"})}


@dataclass
class Cluster:
    """What a test gets from the ``cluster`` fixture."""

    kubeconfig: Path
    local: Any  # e2e.controlplane.cluster.LocalCluster, or None for an external cluster
    _api: client.ApiClient | None = field(default=None, repr=False)
    # Discovery answers that named what was asked for (CRDs only add to them during a session).
    _discovered: dict[str, dict[str, ApiResource]] = field(default_factory=dict, repr=False)

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with ``check`` a failure shows kubectl's stderr."""
        result = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def get_raw(self, path: str) -> Any:
        """GET an API path as the admin user, JSON-decoded."""
        return json.loads(self.kubectl("get", "--raw", path).stdout)

    # -- what the server says about itself ----------------------------------------------------

    def server_version(self) -> ServerVersion:
        info = self.get_raw("/version")
        # Managed clusters report minors such as "37+"; the digits are the minor.
        minor = int("".join(ch for ch in str(info["minor"]) if ch.isdigit()))
        return ServerVersion(str(info["gitVersion"]), int(info["major"]), minor)

    def served_group_versions(self) -> set[str]:
        """Every ``group/version`` (``v1`` for the core group) the server serves now."""
        core = self.get_raw("/api")["versions"]
        groups = self.get_raw("/apis")["groups"]
        return {*core, *(v["groupVersion"] for g in groups for v in g["versions"])}

    def serves(self, group_version: str) -> bool:
        """Whether ``group_version`` (e.g. ``resource.k8s.io/v1``) is served."""
        return group_version in self.served_group_versions()

    def api_resources(self, group_version: str) -> dict[str, ApiResource]:
        """The resources of one served group version by name (subresources as ``pods/binding``);
        empty when the group version is not served."""
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        result = self.kubectl("get", "--raw", path, check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "could not find" in result.stderr:
                return {}
            raise AssertionError(f"discovery of {group_version} failed: {result.stderr.strip()}")
        listed = json.loads(result.stdout)["resources"]
        return {
            r["name"]: ApiResource(
                group_version, r["name"], bool(r["namespaced"]), frozenset(r.get("verbs") or ())
            )
            for r in listed
        }

    def resource(self, group: str, resource: str) -> ApiResource:
        """A served resource (``resource`` may be ``pods/binding``) of ``group`` in its preferred
        version; :class:`UnknownResource` names what is served instead when it is not."""
        cached = self._discovered.get(group)
        if cached is not None and resource in cached:
            return cached[resource]
        if group == "":
            preferred = "v1"
        else:
            found = [g for g in self.get_raw("/apis")["groups"] if g["name"] == group]
            if not found:
                raise UnknownResource(f"API group {group!r} is not served")
            preferred = found[0]["preferredVersion"]["groupVersion"]
        resources = self.api_resources(preferred)
        self._discovered[group] = resources
        if resource not in resources:
            raise UnknownResource(
                f"{resource!r} is not a resource of {preferred}; served: {sorted(resources)}"
            )
        return resources[resource]

    def feature_gates(self) -> dict[str, bool]:
        """The kube-apiserver's feature gates as its /metrics reports them
        (``kubernetes_feature_enabled{name=...,stage=...} 1``)."""
        gates: dict[str, bool] = {}
        for line in self.kubectl("get", "--raw", "/metrics").stdout.splitlines():
            if not line.startswith("kubernetes_feature_enabled{"):
                continue
            labels, _, value = line.rpartition(" ")
            name = labels.split('name="', 1)[1].split('"', 1)[0]
            gates[name] = float(value) == 1.0
        return gates

    def can(
        self,
        user: str,
        verb: str,
        resource: str,
        *,
        group: str = "",
        namespace: str | None = None,
        groups: tuple[str, ...] = (),
    ) -> bool:
        """Whether the authorizer allows ``user`` ``verb`` on ``resource`` (``pods/binding`` for
        a subresource), by a SubjectAccessReview. The question must make sense: a resource,
        subresource or verb the server does not serve, or a namespace for a cluster-scoped
        resource, raises :class:`UnknownResource` rather than answering "no"."""
        name, _, subresource = resource.partition("/")
        if subresource in AUTHORIZATION_ONLY:
            parent = self.resource(group, name)
            served = ApiResource(
                parent.group_version, resource, parent.namespaced, AUTHORIZATION_ONLY[subresource]
            )
        else:
            served = self.resource(group, resource)
        if verb not in served.verbs:
            raise UnknownResource(
                f"{group or 'core'}/{resource} has no verb {verb!r}; it has {sorted(served.verbs)}"
            )
        if namespace is not None and not served.namespaced:
            raise UnknownResource(f"{group or 'core'}/{resource} is cluster-scoped")
        attributes: dict[str, Any] = {"verb": verb, "group": group, "resource": name}
        if subresource:
            attributes["subresource"] = subresource
        if namespace is not None:
            attributes["namespace"] = namespace
        if not groups and user.startswith("system:serviceaccount:"):
            # What the authenticator gives a ServiceAccount token: its groups count too.
            namespace_of_account = user.split(":")[2]
            groups = (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace_of_account}",
                "system:authenticated",
            )
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": list(groups), "resourceAttributes": attributes},
        }
        answer = json.loads(
            self.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout
        )["status"]
        if answer.get("evaluationError"):
            raise AssertionError(f"authorizer error for {attributes}: {answer['evaluationError']}")
        return bool(answer.get("allowed"))

    def wait_established(self, crd: str, *, timeout: float = 60.0) -> None:
        """Wait until the CRD's Established condition is True. (``kubectl wait`` fails at once,
        rather than waiting, when it reads the CRD before its conditions exist.)"""
        query = '{.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            found = self.kubectl("get", "crd", crd, "-o", f"jsonpath={query}", check=False)
            return found.returncode == 0 and found.stdout.strip() == "True"

        wait_for(f"CRD {crd} to be Established", established, timeout=timeout)

    @contextmanager
    def namespace(self, prefix: str = "t") -> Iterator[str]:
        """A fresh namespace, deleted afterwards (without waiting for finalisation). It is handed
        over once its ``default`` ServiceAccount exists: until kube-controller-manager makes it,
        the ServiceAccount admission plugin refuses every pod created there (403)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            self.wait_default_service_account(name)
            yield name
        finally:
            self.core.delete_namespace(name)

    def wait_default_service_account(self, namespace: str, *, timeout: float = 60.0) -> None:
        """Until kube-controller-manager has made the namespace's ``default`` ServiceAccount:
        before that the ServiceAccount admission plugin refuses the namespace's pods (403)."""

        def made() -> bool:
            try:
                self.core.read_namespaced_service_account("default", namespace)
            except client.ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_for(f"the default ServiceAccount of namespace {namespace}", made, timeout=timeout)


def kubectl_binary() -> str:
    try:
        from e2e.controlplane import components

        built = components.binary_path("kubectl")
        if built.exists():
            return str(built)
    except ImportError:
        pass
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("no kubectl: run `make controlplane` or put kubectl on PATH")
    return found


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# Taints the node lifecycle controller puts on a node that is (or was, a moment ago) not Ready.
LIFECYCLE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def node_schedulable(node: client.V1Node) -> bool:
    """Ready, and without the lifecycle taints that lag a moment behind the Ready condition."""
    conditions = (node.status.conditions if node.status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    taints = (node.spec.taints if node.spec else None) or []
    return ready and not any(t.key in LIFECYCLE_TAINTS for t in taints)


def wait_schedulable(cluster: Cluster, names: list[str], *, timeout: float = 60.0) -> None:
    """Until every node of ``names`` is :func:`node_schedulable` (kwok reports Ready at once;
    kube-controller-manager lifts the not-ready taint a moment later)."""
    wanted = set(names)

    def all_schedulable() -> bool:
        seen = [n for n in cluster.core.list_node().items if n.metadata.name in wanted]
        return len(seen) == len(wanted) and all(node_schedulable(n) for n in seen)

    wait_for("the nodes Ready and rid of the not-ready taint", all_schedulable, timeout=timeout)


def bind_pod(core: client.CoreV1Api, namespace: str, pod: str, node: str) -> int:
    """Create a pods/binding; return the HTTP status. The body is not deserialised: the apiserver
    answers with a Status, which some client versions fail to parse as a V1Binding."""
    body = client.V1Binding(
        metadata=client.V1ObjectMeta(name=pod),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
    )
    response = core.create_namespaced_pod_binding(pod, namespace, body, _preload_content=False)
    status: int = response.status
    json.loads(response.data or b"{}")
    return status


def fake_gpu_node(
    name: str, *, gpus: int = 8, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Node kwok manages, with GPU Feature Discovery labels and ``nvidia.com/gpu`` capacity."""
    resources = {"cpu": "96", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.family": "hopper",
                **(labels or {}),
            },
        },
        "status": {"capacity": resources, "allocatable": resources},
    }

"""The Helm chart without a cluster, under both Helm majors (3 and 4): it lints, renders a
restricted least-privilege operator, states the supported Kubernetes range, rejects bad values by
name, and agrees with the image and the CLI. What the real API server does with it (install,
upgrade, uninstall, the RBAC the operator really uses) is tests/integration/test_chart.py."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic.alias_generators import to_camel

from e2e.controlplane import components
from tests import dockerfile
from tests.helm import CHART, MAJORS, NAMESPACE, RELEASE, ROOT, Helm, helm_for

CONFIG_PATH = "/etc/shorthop/config.yaml"


@pytest.fixture(scope="module", params=MAJORS, ids=[f"helm{m}" for m in MAJORS])
def helm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    major: int = request.param
    # Render for the Kubernetes release the suite runs (SHORTHOP_KUBERNETES_VERSION).
    return helm_for(
        major, tmp_path_factory.mktemp(f"helm{major}"), components.selected().kubernetes
    )


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    data = _one(docs, "ConfigMap")["data"]
    assert list(data) == ["config.yaml"]
    return yaml.safe_load(data["config.yaml"])


# --- the binaries and the supported Kubernetes range --------------------------------------------


def test_helm_reports_the_pinned_release(helm: Helm) -> None:
    version = helm.version()
    assert re.fullmatch(rf"v{helm.major}\.\d+\.\d+", version), version
    if helm.binary == str(components.helm_path(helm.major)):
        assert version == components.HELM_VERSIONS[helm.major]


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def _kube_version_cases() -> list[tuple[str, bool]]:
    """Every supported release (exact, .0, and a vendor build) renders; the minors just outside
    the range do not, nor pre-releases of the next minor."""
    minors = sorted(_minor(r.kubernetes) for r in components.RELEASES)
    (low_major, low), (high_major, high) = minors[0], minors[-1]
    cases = [(r.kubernetes, True) for r in components.RELEASES]
    cases += [(f"{major}.{minor}.0", True) for major, minor in minors]
    cases += [(f"v{high_major}.{high}.2-gke.1100", True), (f"v{low_major}.{low}.0-rc.1", True)]
    cases += [(f"v{low_major}.{low - 1}.9", False), (f"v{high_major}.{high + 1}.0", False)]
    cases += [(f"v{high_major}.{high + 1}.0-alpha.1", False), ("v1.20.0", False)]
    return cases


def test_kube_version_range_is_the_supported_releases(helm: Helm) -> None:
    wrong = []
    for version, accepted in _kube_version_cases():
        result = helm.template(check=False, kube_version=version)
        if (result.returncode == 0) != accepted:
            wrong.append((version, accepted, result.stderr.strip()[-200:]))
        elif not accepted:
            assert "kubeVersion" in result.stderr or "incompatible" in result.stderr, result.stderr
    assert wrong == [], f"(version, should render, helm said): {wrong}"


def test_default_kube_version_without_a_cluster_is_supported(helm: Helm) -> None:
    # Without --kube-version helm assumes the Kubernetes of its client-go (helm 3: ldflags set
    # by the build; helm 4: read from its build info); the chart must render for it.
    if helm.binary != str(components.helm_path(helm.major)):
        pytest.skip(f"{helm.binary} is not built here: its default Kubernetes is its builder's")
    result = helm("template", "x", str(CHART))
    assert "kind: Deployment" in result.stdout


# --- lint and render -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--strict"],
        ["--strict", "--set", "metrics.serviceMonitor.enabled=true,replicaCount=3"],
        ["--strict", "--set", "watchNamespaces={team-a,team-b},topology.preset=gke"],
    ],
    ids=["default", "strict", "strict-servicemonitor", "strict-watched"],
)
def test_helm_lint_passes(helm: Helm, flags: list[str]) -> None:
    result = helm("lint", str(CHART), *flags)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_default_render_has_the_expected_objects(helm: Helm) -> None:
    docs = helm.template()
    assert _kinds(docs) == sorted(
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",  # -claim-binding (dra.enabled)
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Lease",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_deployment_meets_the_restricted_pod_security_profile(helm: Helm) -> None:
    pod = _one(helm.template(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork")
    assert not pod.get("hostPID")
    assert not pod.get("hostIPC")
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/shorthop"]["readOnly"] is True
    assert all(set(v) <= {"name", "emptyDir", "configMap"} for v in pod["volumes"])


def test_deployment_runs_two_replicas_with_probes_ports_and_env(helm: Helm) -> None:
    docs = helm.template()
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = _container(docs)
    assert container["image"] == "ghcr.io/shorthop/shorthop:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["startupProbe"]["httpGet"]["port"] == "health"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _one(docs, "ServiceAccount")["metadata"]["name"]
    configmap = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"]
    assert configmap == _one(docs, "ConfigMap")["metadata"]["name"]
    service = _one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_image_tag_and_ports_follow_values(helm: Helm) -> None:
    docs = helm.template(
        "--set", "image.repository=registry.example/shorthop,image.tag=dev-1,image.pullPolicy=Always",
        "--set", "metrics.port=19090,health.port=18080",
    )  # fmt: skip
    container = _container(docs)
    assert container["image"] == "registry.example/shorthop:dev-1"
    assert container["imagePullPolicy"] == "Always"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 19090,
        "health": 18080,
    }
    config = _config(docs)
    assert (config["metricsPort"], config["healthPort"]) == (19090, 18080)
    assert _one(docs, "Service")["spec"]["ports"][0]["port"] == 19090


def _checksum(docs: list[dict[str, Any]]) -> str:
    annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["checksum/config"]
    return value


def test_config_checksum_changes_with_the_config_and_only_then(helm: Helm) -> None:
    default = _checksum(helm.template())
    assert len(default) == 64
    assert int(default, 16) >= 0
    assert _checksum(helm.template()) == default
    assert _checksum(helm.template("--set", "logFormat=text")) != default
    assert _checksum(helm.template("--set", "topology.preset=oci")) != default
    # Values that do not reach config.yaml do not roll the pods.
    assert _checksum(helm.template("--set", "replicaCount=3")) == default


def test_replicas_prefer_different_nodes_unless_affinity_says_otherwise(helm: Helm) -> None:
    docs = helm.template()
    affinity = _one(docs, "Deployment")["spec"]["template"]["spec"]["affinity"]
    (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector

    node_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                ]
            }
        }
    }
    merged = helm.template("--set-json", f"affinity={json.dumps(node_affinity)}")
    got = _one(merged, "Deployment")["spec"]["template"]["spec"]["affinity"]
    assert got["nodeAffinity"] == node_affinity["nodeAffinity"]
    assert "podAntiAffinity" in got

    own = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}}
    replaced = helm.template("--set-json", f"affinity={json.dumps(own)}")
    assert _one(replaced, "Deployment")["spec"]["template"]["spec"]["affinity"] == own


def test_scheduling_values_reach_the_pod(helm: Helm) -> None:
    docs = helm.template(
        "--set-json", 'nodeSelector={"pool":"ops"}',
        "--set-json", 'tolerations=[{"key":"ops","operator":"Exists","effect":"NoSchedule"}]',
        "--set", "priorityClassName=system-cluster-critical",
    )  # fmt: skip
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "ops"}
    assert pod["tolerations"] == [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "system-cluster-critical"


@pytest.mark.parametrize(
    ("values", "servicemonitor", "pdb"),
    [
        ([], False, True),
        (["--set", "metrics.serviceMonitor.enabled=true"], True, True),
        (["--set", "podDisruptionBudget.enabled=false"], False, False),
        (["--set", "replicaCount=1"], False, False),
    ],
    ids=["default", "servicemonitor-enabled", "pdb-disabled", "single-replica"],
)
def test_servicemonitor_and_pdb_only_when_enabled(
    helm: Helm, values: list[str], servicemonitor: bool, pdb: bool
) -> None:
    docs = helm.template(*values)
    assert ("ServiceMonitor" in _kinds(docs)) is servicemonitor
    assert ("PodDisruptionBudget" in _kinds(docs)) is pdb
    pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    if servicemonitor:
        monitor = _one(docs, "ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["endpoints"] == [
            {"port": "metrics", "path": "/metrics", "interval": "30s"}
        ]
        service_labels = _one(docs, "Service")["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    if pdb:
        budget = _one(docs, "PodDisruptionBudget")
        assert budget["spec"]["minAvailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# --- RBAC --------------------------------------------------------------------------------------


# --- RBAC --------------------------------------------------------------------------------------
# Which rules the operator needs is measured, not listed here: test_chart.py runs the operator as
# the chart's ServiceAccount and compares the API server's audit log with these roles. Here: the
# shape every render must have, whatever the values.


def _granted(docs: list[dict[str, Any]], kind: str) -> set[tuple[str, str, str]]:
    granted = set()
    for role in (d for d in docs if d["kind"] == kind):
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule
            granted |= {
                (g, r, v)
                for g in rule["apiGroups"]
                for r in rule["resources"]
                for v in rule["verbs"]
            }
    return granted


@pytest.mark.parametrize(
    "values", [[], ["--set", "watchNamespaces={team-a,team-b}"]], ids=["all", "watched"]
)
def test_rbac_is_least_privilege_in_shape(helm: Helm, values: list[str]) -> None:
    docs = helm.template(*values)
    everything = _granted(docs, "ClusterRole") | _granted(docs, "Role")
    assert everything, "the chart grants nothing"
    assert not [g for g in everything if "*" in g]
    assert not {r for _, r, _ in everything} & {"secrets", "configmaps"}
    assert not {v for *_, v in everything} & {"escalate", "bind", "impersonate", "deletecollection"}
    read_role = _one(docs, "ClusterRole", "shorthop-cluster-read")
    assert {v for *_, v in _granted([read_role], "ClusterRole")} <= {"get", "list", "watch"}
    role = _one(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    # Leader election is the only thing granted in the release namespace alone.
    assert {(g, r) for g, r, _ in _granted([role], "Role")} == {("coordination.k8s.io", "leases")}


DRA_RULES = {
    # Read cluster-wide: every slice, claim and class (busy devices are every claim's).
    ("resource.k8s.io", "resourceslices", "list"), ("resource.k8s.io", "resourceslices", "watch"),
    ("resource.k8s.io", "resourceclaims", "list"), ("resource.k8s.io", "resourceclaims", "watch"),
    ("resource.k8s.io", "deviceclasses", "list"), ("resource.k8s.io", "deviceclasses", "watch"),
    # Written where pods are: each pod's own claim and its status.
    ("resource.k8s.io", "resourceclaims", "create"), ("resource.k8s.io", "resourceclaims", "get"),
    ("resource.k8s.io", "resourceclaims", "delete"),
    ("resource.k8s.io", "resourceclaims/status", "update"),
    ("resource.k8s.io", "resourceclaims/binding", "update"),  # checked on 1.36+
}  # fmt: skip


def test_dra_grants_follow_dra_enabled(helm: Helm) -> None:
    """Which of them the operator uses is measured in test_chart.py; here: dra.enabled=false
    grants no resource.k8s.io rule at all, and the default adds exactly the DRA ones."""

    def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return _granted(docs, "ClusterRole") | _granted(docs, "Role")

    on, off = granted(helm.template()), granted(helm.template("--set", "dra.enabled=false"))
    assert not [g for g in off if g[0] == "resource.k8s.io"]
    assert on - off == DRA_RULES


def test_watching_namespaces_changes_bindings_not_rules(helm: Helm) -> None:
    everywhere, watched = helm.template(), helm.template("--set", "watchNamespaces={team-a}")
    for kind in ("ClusterRole", "Role"):
        assert _granted(everywhere, kind) == _granted(watched, kind), kind


def _bindings(docs: list[dict[str, Any]]) -> set[tuple[str, str | None, str, str]]:
    """(binding kind, namespace, role kind, role name) of every binding to the ServiceAccount."""
    account = _one(docs, "ServiceAccount")["metadata"]["name"]
    out = set()
    for doc in docs:
        if doc["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        assert doc["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
        out.add(
            (
                doc["kind"],
                doc["metadata"].get("namespace"),
                doc["roleRef"]["kind"],
                doc["roleRef"]["name"],
            )
        )
    return out


def test_all_namespaces_binds_the_cluster_role_cluster_wide(helm: Helm) -> None:
    assert _bindings(helm.template()) == {
        ("ClusterRoleBinding", None, "ClusterRole", "shorthop-cluster-read"),
        ("ClusterRoleBinding", None, "ClusterRole", "shorthop"),
        ("ClusterRoleBinding", None, "ClusterRole", "shorthop-claim-binding"),
        ("RoleBinding", NAMESPACE, "Role", "shorthop-leader-election"),
    }


def test_watched_namespaces_get_role_bindings_and_only_reads_stay_cluster_wide(
    helm: Helm,
) -> None:
    docs = helm.template("--set", "watchNamespaces={team-a,team-b}")
    assert _bindings(docs) == {
        ("ClusterRoleBinding", None, "ClusterRole", "shorthop-cluster-read"),
        # Kubernetes asks for resourceclaims/binding at the cluster scope (1.36+).
        ("ClusterRoleBinding", None, "ClusterRole", "shorthop-claim-binding"),
        ("RoleBinding", "team-a", "ClusterRole", "shorthop"),
        ("RoleBinding", "team-b", "ClusterRole", "shorthop"),
        ("RoleBinding", NAMESPACE, "Role", "shorthop-leader-election"),
    }
    read_role = _one(docs, "ClusterRole", "shorthop-cluster-read")
    assert {v for *_, v in _granted([read_role], "ClusterRole")} <= {"get", "list", "watch"}
    assert _config(docs)["namespaces"] == ["team-a", "team-b"]


# --- config.yaml and the operator's settings ---------------------------------------------------


def test_rendered_config_is_what_the_operator_settings_accept(helm: Helm, tmp_path: Path) -> None:
    from shorthop import settings

    levels = [
        {"name": "block", "keys": ["example.com/block"]},
        {"name": "rack", "keys": ["example.com/rack"]},
    ]
    docs = helm.template(
        "--set", "topology.preset=aws,schedulerName=gpu-placer,logFormat=text,leaseName=lead",
        "--set", "watchNamespaces={ml},metrics.port=9100,health.port=8081",
        "--set-json", f"topology.levels={json.dumps(levels)}",
        "--set-json", 'topology.nvlinkDomainKeys=["example.com/nvl"]',
        "--set-json", 'topology.weights={"nvlinkDomain":7,"uplinks":[300,100]}',
        "--set", "dra.enabled=false,dra.driver=gpu.example.com,dra.deviceClass=whole.example.com",
    )  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(_one(docs, "ConfigMap")["data"]["config.yaml"])
    loaded = settings.load(config_file=str(path), environ={})
    assert loaded.topology.preset == "aws"
    assert [(lv.name, lv.keys) for lv in loaded.topology.levels or []] == [
        ("block", ["example.com/block"]),
        ("rack", ["example.com/rack"]),
    ]
    topology = loaded.topology.config()
    assert topology.nvlink_domain_keys == ("example.com/nvl",)
    assert topology.weights.nvlink_domain == 7
    assert topology.weights.uplinks == (300, 100)
    assert loaded.scheduler_name == "gpu-placer"
    assert loaded.namespaces == ["ml"]
    assert (loaded.metrics_port, loaded.health_port) == (9100, 8081)
    assert (loaded.lease_name, loaded.lease_namespace) == ("lead", NAMESPACE)
    assert loaded.log_format == "text"
    assert (loaded.dra.enabled, loaded.dra.driver, loaded.dra.device_class) == (
        False,
        "gpu.example.com",
        "whole.example.com",
    )


def test_default_config_leaves_topology_to_the_preset(helm: Helm, tmp_path: Path) -> None:
    from shorthop import settings

    config = _config(helm.template())
    assert config == {
        "topology": {"preset": "plain"},
        "schedulerName": "shorthop",
        "servicePort": 8000,
        "namespaces": [],
        "metricsPort": 9090,
        "healthPort": 8080,
        "leaseName": "shorthop-leader",
        "leaseNamespace": NAMESPACE,
        "logFormat": "json",
        "dra": {"enabled": True, "driver": "gpu.nvidia.com", "deviceClass": "gpu.nvidia.com"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = settings.load(config_file=str(path), environ={})
    assert loaded == settings.Settings(lease_namespace=NAMESPACE, identity=loaded.identity)


def test_schema_enums_follow_the_code() -> None:
    from shorthop.topology import levels, links

    schema = json.loads((CHART / "values.schema.json").read_text())
    topology = schema["properties"]["topology"]["properties"]
    assert sorted(topology["preset"]["enum"]) == sorted(levels.PRESETS)
    assert set(topology["weights"]["properties"]) == {
        to_camel(f.name) for f in dataclasses.fields(links.Weights)
    }
    assert schema["properties"]["logFormat"]["enum"] == ["json", "text"]
    assert schema["additionalProperties"] is False


# --- bad values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["--set", "replicaCount=-1"], ["/replicaCount", "minimum: got -1, want 0"]),
        (["--set-string", "replicaCount=two"], ["/replicaCount", "want integer"]),
        (["--set", "topology.preset=nope"], ["/topology/preset", "value must be one of 'plain', 'topograph', 'aws', 'gke', 'oci'"]),
        (["--set", "metrics.port=70000"], ["/metrics/port", "maximum", "65,535"]),
        (["--set", "health.port=0"], ["/health/port", "minimum"]),
        (["--set", "logFormat=xml"], ["/logFormat", "value must be one of 'json', 'text'"]),
        (["--set", "image.pullPolicy=Sometimes"], ["/image/pullPolicy", "value must be one of"]),
        (["--set", "replicas=2"], ["additional properties 'replicas' not allowed"]),
        (["--set", "metrics.prot=1"], ["/metrics", "additional properties 'prot' not allowed"]),
        (["--set", "topology.weights.nvlinkk=3"], ["/topology/weights", "'nvlinkk' not allowed"]),
        (["--set", "topology.weights.nvlink=0"], ["/topology/weights/nvlink", "minimum"]),
        (["--set", "watchNamespaces={a,a}"], ["/watchNamespaces", "equal"]),
        (["--set", "watchNamespaces={Team_A}"], ["/watchNamespaces/0", "does not match pattern"]),
        (["--set", "schedulerName=Shorthop"], ["/schedulerName", "does not match pattern"]),
        (["--set-json", 'topology.levels=[{"name":"rack"}]'], ["/topology/levels/0", "missing property 'keys'"]),
        (["--set", "health.port=9090"], ["metrics.port and health.port must differ"]),
        (["--set", "serviceAccount.create=false"], ["serviceAccount.name"]),
        (["--set", "dra.driver=GPU_driver"], ["/dra/driver", "does not match pattern"]),
        (["--set-string", "dra.enabled=yes"], ["/dra/enabled", "want boolean"]),
        (["--set", "dra.class=x"], ["/dra", "additional properties 'class' not allowed"]),
    ],
    ids=[
        "replicas-negative", "replicas-string", "unknown-preset", "metrics-port-range",
        "health-port-zero", "log-format", "pull-policy", "unknown-top-level-key",
        "unknown-metrics-key", "unknown-weight", "zero-weight", "duplicate-namespace",
        "bad-namespace", "bad-scheduler-name", "level-without-keys", "same-ports",
        "no-service-account", "bad-dra-driver", "dra-enabled-string", "unknown-dra-key",
    ],
)  # fmt: skip
def test_bad_values_fail_naming_the_value(helm: Helm, values: list[str], words: list[str]) -> None:
    result = helm.template(*values, check=False)
    assert result.returncode != 0, f"{values} rendered:\n{result.stdout[:400]}"
    for word in words:
        assert word in result.stderr, result.stderr


def test_lint_fails_on_bad_values(helm: Helm) -> None:
    result = helm("lint", "--strict", str(CHART), "--set", "replicaCount=-1", check=False)
    assert result.returncode != 0
    assert "/replicaCount" in result.stdout + result.stderr


# --- the image, the chart and the console script agree -----------------------------------------


def test_image_chart_and_console_script_agree(helm: Helm) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["shorthop"] == "shorthop.cli:main"

    final = dockerfile.load()[-1]
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    assert entrypoint.exec_form() + cmd.exec_form() == ["shorthop", "run"]

    docs = helm.template()
    container = _container(docs)
    assert container["command"] == ["shorthop", "run"]
    assert container["args"] == ["--config", CONFIG_PATH]
    # --config names the ConfigMap key, mounted where the argument points.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert Path(mount["mountPath"]) / "config.yaml" == Path(CONFIG_PATH)
    assert "config.yaml" in _one(docs, "ConfigMap")["data"]

    # The image's user is the chart's runAsUser, and it exposes the chart's default ports.
    user = final.last("USER")
    assert user is not None
    assert int(user.arguments.partition(":")[0]) == container["securityContext"]["runAsUser"]
    exposed = {int(p) for e in final.all("EXPOSE") for p in e.arguments.split()}
    assert exposed == {p["containerPort"] for p in container["ports"]}


def test_cli_has_the_run_subcommand_the_chart_calls() -> None:
    # No guard: wherever `run` lives, the console script must parse the chart's command line.
    from shorthop import cli

    args = cli.parser().parse_args(["run", "--config", CONFIG_PATH])
    assert args.command == "run"
    assert callable(args.handler)
    assert CONFIG_PATH in vars(args).values()

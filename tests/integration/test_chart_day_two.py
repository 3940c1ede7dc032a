"""The chart's day-two surface: an optional NetworkPolicy (rendered, and accepted by the real API
server), the image pinned by digest, the headless Service port, no operator pods when asked for
none, and the leader-election Lease owned by the release: its holder survives upgrades and
``helm uninstall`` removes it (under each Helm major the cache holds)."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop import metrics, settings
from shorthop.controller.kube import Kube
from shorthop.controller.runtime.leader import LeaseElector

from e2e import fixtures as fx
from e2e.controlplane import components
from tests import kube
from tests.helm import CHART, MAJORS, NAMESPACE, Helm, helm_for

pytestmark = pytest.mark.cluster
DIGEST = "sha256:" + "0123456789abcdef" * 4
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


@pytest.fixture(scope="module", params=MAJORS, ids=[f"helm{m}" for m in MAJORS])
def helm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    major: int = request.param
    return helm_for(
        major, tmp_path_factory.mktemp(f"helm{major}"), components.selected().kubernetes
    )


def _all(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _images(docs: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "DaemonSet"):
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            out[doc["kind"]] = container["image"]
    return out


# --- rendering -----------------------------------------------------------------------------------


def test_network_policy_is_off_by_default_and_opens_only_the_listed_sources(helm: Helm) -> None:
    assert not _all(helm.template(), "NetworkPolicy")
    closed = _all(helm.template("--set", "networkPolicy.enabled=true"), "NetworkPolicy")
    assert len(closed) == 1
    assert closed[0]["spec"]["policyTypes"] == ["Ingress"]
    assert closed[0]["spec"]["ingress"] == []  # nothing but the node (kubelet probes) gets in
    health = {"podSelector": {"matchLabels": {"app": "checker"}}}
    docs = helm.template(
        "--set", "networkPolicy.enabled=true",
        "--set-json", f"networkPolicy.metricsFrom=[{_json(PROMETHEUS)}]",
        "--set-json", f"networkPolicy.healthFrom=[{_json(health)}]",
    )  # fmt: skip
    (policy,) = _all(docs, "NetworkPolicy")
    pod_labels = _all(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["ingress"] == [
        {"from": [PROMETHEUS], "ports": [{"port": "metrics", "protocol": "TCP"}]},
        {"from": [health], "ports": [{"port": "health", "protocol": "TCP"}]},
    ]
    ports = {p["name"] for p in _all(docs, "Deployment")[0]["spec"]["template"]["spec"]
             ["containers"][0]["ports"]}  # fmt: skip
    assert ports == {"metrics", "health"}


def _json(value: Any) -> str:
    return json.dumps(value)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["--set", "networkPolicy.enabled=yes"], "networkPolicy"),
        (["--set-json", "networkPolicy.metricsFrom=[{}]"], "metricsFrom"),
        (["--set", "networkPolicy.nope=1"], "nope"),
        (["--set", "image.digest=sha256:abc"], "digest"),
        (["--set", "image.digest=latest"], "digest"),
        (["--set", "nodeAgent.image.digest=md5:00"], "digest"),
        (["--set", "servicePort=0"], "servicePort"),
        (["--set", "servicePort=70000"], "servicePort"),
        (["--set", "replicaCount=-1"], "replicaCount"),
    ],
    ids=[
        "policy-not-bool",
        "empty-peer",
        "policy-typo",
        "short-digest",
        "tag-as-digest",
        "agent-digest",
        "port-zero",
        "port-too-big",
        "negative-replicas",
    ],
)
def test_bad_day_two_values_fail_naming_the_value(
    helm: Helm, values: list[str], words: str
) -> None:
    result = helm.template(*values, check=False)
    assert result.returncode != 0
    assert words in result.stderr, result.stderr


def test_a_digest_pins_the_image_and_wins_over_the_tag(helm: Helm) -> None:
    repo = "registry.example/shorthop"
    tagged = _images(helm.template("--set", f"image.repository={repo},image.tag=v9"))
    assert tagged == {"Deployment": f"{repo}:v9"}
    both = helm.template(
        "--set", f"image.repository={repo},image.tag=v9,image.digest={DIGEST}",
        "--set", "nodeAgent.enabled=true",
    )  # fmt: skip
    assert _images(both) == {"Deployment": f"{repo}@{DIGEST}", "DaemonSet": f"{repo}@{DIGEST}"}
    # The agent with an image of its own is not pinned by the operator's digest, only by its own.
    own = helm.template(
        "--set", f"image.digest={DIGEST},nodeAgent.enabled=true,nodeAgent.image.tag=a1",
    )  # fmt: skip
    assert _images(own)["DaemonSet"] == "ghcr.io/shorthop/shorthop:a1"
    other = "sha256:" + "f" * 64
    pinned = helm.template(
        "--set", f"nodeAgent.enabled=true,nodeAgent.image.repository=r.example/agent,"
        f"nodeAgent.image.digest={other}",
    )  # fmt: skip
    assert _images(pinned)["DaemonSet"] == f"r.example/agent@{other}"


def test_service_port_reaches_the_operator_settings(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template("--set", "servicePort=8443")
    (config_map,) = _all(docs, "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    assert settings.load(config_file=str(path)).service_port == 8443
    (default,) = _all(helm.template(), "ConfigMap")
    assert yaml.safe_load(default["data"]["config.yaml"])["servicePort"] == 8000


def test_no_operator_pods_when_replica_count_is_zero(helm: Helm) -> None:
    docs = helm.template("--set", "replicaCount=0")
    (deployment,) = _all(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    assert not _all(docs, "PodDisruptionBudget")  # a budget for no pods would block nothing
    assert len(_all(docs, "Lease")) == 1


def test_the_lease_is_rendered_without_a_holder(helm: Helm) -> None:
    (lease,) = _all(helm.template("--set", "leaseName=elect"), "Lease")
    assert lease["metadata"]["name"] == "elect"
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert "spec" not in lease  # the operator's fields; Helm never writes them


# --- on the API server ---------------------------------------------------------------------------


def test_api_server_accepts_the_network_policy(cluster: kube.Cluster, helm: Helm) -> None:
    with cluster.namespace("netpol") as ns:
        for values in (
            ["--set", "networkPolicy.enabled=true"],
            [
                "--set", "networkPolicy.enabled=true",
                "--set-json", f"networkPolicy.metricsFrom=[{_json(PROMETHEUS)}]",
                "--set-json", 'networkPolicy.healthFrom=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]',
            ],
        ):  # fmt: skip
            (policy,) = _all(helm.template(*values, namespace=ns), "NetworkPolicy")
            result = cluster.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(policy), check=False
            )
            assert result.returncode == 0, result.stderr
        # The check has teeth: a peer the API refuses is refused.
        bad = [
            "--set", "networkPolicy.enabled=true",
            "--set-json", 'networkPolicy.metricsFrom=[{"ipBlock":{"cidr":"not-a-cidr"}}]',
        ]  # fmt: skip
        (policy,) = _all(helm.template(*bad, namespace=ns), "NetworkPolicy")
        refused = cluster.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(policy), check=False
        )
        assert refused.returncode != 0
        assert "cidr" in refused.stderr


def _lease(cluster: kube.Cluster, ns: str, name: str) -> client.V1Lease | None:
    try:
        return client.CoordinationV1Api(cluster.api).read_namespaced_lease(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_the_release_owns_the_lease_upgrades_keep_its_holder_and_uninstall_removes_it(
    cluster: kube.Cluster, infd_crd: str, helm: Helm
) -> None:
    release = f"lease-{uuid.uuid4().hex[:5]}"
    with cluster.namespace("lease") as home:
        install = [
            "upgrade", "--install", release, str(CHART), "--namespace", home,
            "--set", "replicaCount=0", "--set-json", f"nodeSelector={_json(fx.NOWHERE)}",
        ]  # fmt: skip
        helm(*install, kubeconfig=cluster.kubeconfig)
        try:
            lease = _lease(cluster, home, "shorthop-leader")
            assert lease is not None
            assert lease.spec is None or lease.spec.holder_identity is None
            # The operator's election takes the Lease the chart made (it updates it).
            elector = LeaseElector(Kube(cluster.api), home, "shorthop-leader", "op-1")
            assert elector.try_acquire_or_renew()
            held = _lease(cluster, home, "shorthop-leader")
            assert held is not None
            assert held.spec.holder_identity == "op-1"
            # An upgrade that changes the release (and its labels' inputs) keeps the holder.
            helm(*install, "--set", "logFormat=text", kubeconfig=cluster.kubeconfig)
            after = _lease(cluster, home, "shorthop-leader")
            assert after is not None
            assert after.spec.holder_identity == "op-1"
            assert after.spec.renew_time == held.spec.renew_time
            assert elector.try_acquire_or_renew()  # and the operator still renews it
        finally:
            helm("uninstall", release, "--namespace", home, kubeconfig=cluster.kubeconfig)
        kube.wait_for(
            "the Lease gone with the release",
            lambda: _lease(cluster, home, "shorthop-leader") is None,
            timeout=30,
        )


# --- the Grafana dashboard -----------------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "rate", "irate", "increase",
    "histogram_quantile", "and", "or", "unless", "bool", "offset",
}  # fmt: skip


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers left once strings, label matchers,
    ranges and grouping clauses are taken out, other than functions and operators.

    >>> sorted(promql_metrics('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y"}[5m])))'))
    ['a_bucket']
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for found in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[found.end() :].lstrip().startswith("(") or found[0] in PROMQL_WORDS:
            continue
        names.add(found[0])
    return names


def _exposed() -> set[str]:
    """Every series name the operator's registry exposes (a histogram's ``_bucket``, ``_sum``
    and ``_count``, a counter's ``_total``)."""
    made = metrics.create()
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}
    names = set()
    for field in dataclasses.fields(made):
        if field.name == "registry":
            continue
        collector = getattr(made, field.name)
        name, kind = collector._name, collector._type  # prometheus_client keeps them private
        names |= {name + suffix for suffix in suffixes.get(kind, ("",))}
    return names


def test_the_dashboard_renders_as_valid_json_reading_only_the_operators_metrics(
    helm: Helm,
) -> None:
    assert not [
        d for d in _all(helm.template(), "ConfigMap") if "dashboard" in d["metadata"]["name"]
    ]
    docs = helm.template(
        "--set", "grafana.dashboard.enabled=true",
        "--set", "grafana.dashboard.annotations.grafana_folder=GPU",
    )  # fmt: skip
    (config_map,) = [d for d in _all(docs, "ConfigMap") if "dashboard" in d["metadata"]["name"]]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "GPU"}
    dashboard = json.loads(config_map["data"]["shorthop.json"])
    assert dashboard["uid"]
    exposed = _exposed()
    read: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = promql_metrics(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exposed, (panel["title"], names - exposed)
            read |= names
    # What the dashboard is for: latency, tiers, cost, free and stranded GPUs per NVLink domain.
    for needed in (
        "shorthop_placement_latency_seconds_bucket",
        "shorthop_pods_per_tier",
        "shorthop_plan_cost",
        "shorthop_free_gpus",
        "shorthop_stranded_gpus",
    ):
        assert needed in read
    per_domain = [
        t["expr"] for p in dashboard["panels"] for t in p["targets"] if "nvlink_domain" in t["expr"]
    ]
    assert len(per_domain) == 2


def test_a_query_naming_an_unknown_metric_is_caught() -> None:
    """The dashboard check has teeth: a misspelt metric is not among the exposed names."""
    assert promql_metrics("sum by (nvlink_domain) (shorthop_free_gpu)") - _exposed() == {
        "shorthop_free_gpu"
    }

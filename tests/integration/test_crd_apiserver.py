"""The generated CRD on the real API server: the contract manifest is accepted as written, and
invalid specs are rejected by schema and CEL with a message naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import kube

pytestmark = pytest.mark.cluster
MINIMAL = (Path(__file__).resolve().parents[2] / "docs" / "examples" / "minimal.yaml").read_text()


def _apply(cluster: kube.Cluster, ns: str, doc: dict[str, Any] | str) -> Any:
    if isinstance(doc, str):
        doc = yaml.safe_load(doc)
    doc["metadata"]["namespace"] = ns
    text = yaml.safe_dump(doc)
    return cluster.kubectl("apply", "-n", ns, "-f", "-", input=text, check=False)


def test_minimal_manifest_is_accepted_exactly_as_written(
    cluster: kube.Cluster, infd_crd: str
) -> None:
    with cluster.namespace("crd") as ns:
        result = _apply(cluster, ns, MINIMAL)
        assert result.returncode == 0, result.stderr
        got = yaml.safe_load(
            cluster.kubectl("get", "infd", "llama-70b", "-n", ns, "-o", "yaml").stdout
        )
        assert [r["name"] for r in got["spec"]["roles"]] == ["prefill", "decode"]
        table = cluster.kubectl("get", "infd", "-n", ns).stdout.splitlines()[0].split()
        assert table == ["NAME", "PHASE", "READY", "TIER", "AGE"]


def _bad(**decode: Any) -> dict[str, Any]:
    doc = yaml.safe_load(MINIMAL)
    doc["metadata"]["name"] = "bad"
    doc["spec"]["roles"][1].update(decode)
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (_bad(gpusPerPod=3), "spec.roles[1]", "gpusPerReplica must be a multiple of gpusPerPod"),
        (
            _bad(gpusPerReplica=0),
            "spec.roles[1].gpusPerReplica",
            "should be greater than or equal to 1",
        ),
        (_bad(replicas=-2), "spec.roles[1].replicas", "greater than or equal to 0"),
        (
            _bad(template={"spec": {"containers": []}}),
            "spec.roles[1].template.spec.containers",
            "should have at least 1 items",
        ),
        (_bad(name="Decode"), "spec.roles[1].name", "should match"),
    ],
    ids=["indivisible", "zero-gpus", "negative-replicas", "no-containers", "bad-name"],
)
def test_invalid_spec_is_rejected_by_the_api_server_naming_the_field(
    cluster: kube.Cluster, infd_crd: str, doc: dict[str, Any], field: str, words: str
) -> None:
    with cluster.namespace("crd") as ns:
        result = _apply(cluster, ns, doc)
        assert result.returncode != 0
        assert field in result.stderr, result.stderr
        assert words in result.stderr, result.stderr


def test_traffic_naming_an_unknown_role_is_rejected_by_cel(
    cluster: kube.Cluster, infd_crd: str
) -> None:
    doc = yaml.safe_load(MINIMAL)
    doc["spec"]["traffic"] = [{"from": "prefill", "to": "decoder"}]
    with cluster.namespace("crd") as ns:
        result = _apply(cluster, ns, doc)
        assert result.returncode != 0
        # The CEL rule's message names the traffic field and the unknown role.
        assert "spec.traffic" in result.stderr, result.stderr
        assert "unknown role decoder" in result.stderr, result.stderr


def test_kubectl_explain_describes_every_role_field_and_lists_the_tiers(
    cluster: kube.Cluster, infd_crd: str
) -> None:
    roles = cluster.kubectl("explain", "inferencedeployment.spec.roles").stdout
    assert "<no description>" not in roles, roles
    for field in ("name", "replicas", "gpusPerReplica", "gpusPerPod", "replicaScope", "template"):
        assert f"  {field}\t" in roles, roles
    scope = cluster.kubectl("explain", "infd.spec.roles.replicaScope").stdout
    for tier in ("same-node-nvlink", "same-node-pcie", "nvlink-domain", "rack", "zone", "cluster"):
        assert tier in scope, scope
    for path in ("infd.spec", "infd.spec.placement", "infd.spec.traffic", "infd.status"):
        text = cluster.kubectl("explain", path).stdout
        assert "<no description>" not in text, text


def test_duplicate_role_names_are_rejected(cluster: kube.Cluster, infd_crd: str) -> None:
    doc = yaml.safe_load(MINIMAL)
    doc["spec"]["roles"][1]["name"] = "prefill"
    with cluster.namespace("crd") as ns:
        result = _apply(cluster, ns, doc)
        assert result.returncode != 0
        assert "Duplicate value" in result.stderr

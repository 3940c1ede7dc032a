"""``shorthop plan`` keeps its contract: JSON keys, exit 0 placed / 2 infeasible / 1 bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from shorthop import cli
from shorthop.topology import fake

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "docs" / "examples" / "minimal.yaml"


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    nodes = fake.nodes(fake.ClusterShape(nvl72_racks=1, hgx_units=1, nodes_per_unit=4))
    path = tmp_path / "cluster.yaml"
    path.write_text(
        yaml.safe_dump(fake.as_list([*nodes, *fake.background_pods(nodes, 0.2, seed=1)]))
    )
    return path


def test_json_output_has_the_contract_keys_and_exit_0(
    snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(
            ["plan", "--cluster", str(snapshot), "--deployment", str(MINIMAL), "--format", "json"]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["feasible"] is True
    assert {"feasible", "assignments", "reasons", "cost", "tiers"} <= set(doc)
    assert len(doc["assignments"]) == 6
    for a in doc["assignments"]:
        assert set(a) == {"role", "replica", "pod", "node", "gpus"}
        assert all(isinstance(g, int) for g in a["gpus"])
    # all-to-all (the default): every prefill GPU (2 x 4) with every decode GPU (2 x 8)
    assert sum(doc["tiers"].values()) == (2 * 4) * (2 * 8)
    (edge,) = doc["traffic"]
    assert (edge["from"], edge["to"], edge["pattern"]) == ("prefill", "decode", "all-to-all")
    assert sum(edge["replicaPairs"].values()) == 2 * 2


def test_table_output_lists_every_pod_and_the_tier_summary(
    snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["plan", "--cluster", str(snapshot), "--deployment", str(MINIMAL)]) == 0
    out = capsys.readouterr().out
    assert out.count("llama-70b-decode-") == 4
    assert "prefill<->decode GPU pairs by tier" in out


def test_infeasible_prints_json_with_reasons_and_exits_2(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(MINIMAL.read_text())
    doc["spec"]["roles"][1]["replicas"] = 500
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(doc))
    assert (
        cli.main(["plan", "--cluster", str(snapshot), "--deployment", str(big), "--format", "json"])
        == 2
    )
    out = json.loads(capsys.readouterr().out)
    assert out["feasible"] is False
    assert out["assignments"] == []
    assert out["reasons"][0].startswith("spec.roles[")


@pytest.mark.parametrize(
    ("deployment", "words"),
    [
        ("apiVersion: v1\nkind: Pod\n", "expected InferenceDeployment"),
        ("{{{", "is not valid YAML"),
        ("", "exactly one InferenceDeployment, found 0"),
    ],
    ids=["wrong-kind", "bad-yaml", "empty"],
)
def test_bad_deployment_file_exits_1_with_one_line(
    snapshot: Path, tmp_path: Path, deployment: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(deployment)
    assert cli.main(["plan", "--cluster", str(snapshot), "--deployment", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert words in err[0]


def test_spec_error_names_the_field(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(MINIMAL.read_text())
    doc["spec"]["roles"][1]["gpusPerPod"] = 3
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert cli.main(["plan", "--cluster", str(snapshot), "--deployment", str(path)]) == 1
    assert "spec.roles[1]" in capsys.readouterr().err


def test_unknown_tier_in_a_scope_names_the_field(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(MINIMAL.read_text())
    doc["spec"]["placement"] = {"required": "galaxy"}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert cli.main(["plan", "--cluster", str(snapshot), "--deployment", str(path)]) == 1
    assert "spec.placement.required: unknown tier 'galaxy'" in capsys.readouterr().err


@pytest.mark.parametrize("strategy", ["first-fit", "spread", "tas", "random"])
def test_baseline_strategies_are_selectable(
    snapshot: Path, strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(
            [
                "plan",
                "--cluster",
                str(snapshot),
                "--deployment",
                str(MINIMAL),
                "--format",
                "json",
                "--strategy",
                strategy,
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["strategy"] == strategy


# -- the templates' scheduling rules ------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Four HGX H100 nodes and four HGX H200 nodes in two scalable units."""
    h100 = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=4))
    h200 = fake.nodes(fake.ClusterShape(hgx_units=2, nodes_per_unit=4, hgx_product="h200"))[4:]
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(fake.as_list([*h100, *h200])))
    return path


def _with_rules(tmp_path: Path, **per_role: dict) -> Path:
    doc = yaml.safe_load(MINIMAL.read_text())
    for role in doc["spec"]["roles"]:
        role["template"]["spec"].update(per_role.get(role["name"], {}))
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_each_role_lands_on_the_product_its_selector_names(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _with_rules(
        tmp_path,
        prefill={"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        decode={
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "nvidia.com/gpu.memory",
                                                   "operator": "Gt", "values": ["100000"]}]}
                        ]
                    }
                }
            }
        },
    )  # fmt: skip
    argv = ["plan", "--cluster", str(mixed), "--deployment", str(path), "--format", "json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    nodes = {(a["role"], a["node"].split("-")[0]) for a in doc["assignments"]}
    assert nodes == {("prefill", "h100"), ("decode", "h200")}
    assert doc["exclusions"] == {"prefill": {"nodeSelector": 4}, "decode": {"nodeAffinity": 4}}


def test_a_selector_nothing_matches_is_infeasible_with_the_reason(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _with_rules(tmp_path, decode={"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-B300"}})
    assert cli.main(["plan", "--cluster", str(mixed), "--deployment", str(path)]) == 2
    out = capsys.readouterr().out
    assert (
        "spec.roles[1].template.spec.nodeSelector: nodeSelector "
        "nvidia.com/gpu.product=NVIDIA-B300 leaves 0 nodes with 0 free GPUs; needs 16 "
        "for role decode (nodes left out: 8 by nodeSelector)"
    ) in out
    assert "decode: 8 by nodeSelector" in out


def test_a_rule_the_api_server_would_refuse_exits_1_naming_the_field(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "in"}]}]}
    path = _with_rules(
        tmp_path,
        decode={
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": bad}}
        },
    )
    assert cli.main(["plan", "--cluster", str(mixed), "--deployment", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        "spec.roles[1].template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnored"
        "DuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: 'in' is not one of"
    ) in err


def test_the_table_shows_the_preferred_weight_met(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    liked = {"weight": 40, "preference": {"matchExpressions": [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H200"]}]}}  # fmt: skip
    path = _with_rules(
        tmp_path,
        decode={
            "affinity": {
                "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [liked]}
            }
        },
    )
    assert cli.main(["plan", "--cluster", str(mixed), "--deployment", str(path)]) == 0
    out = capsys.readouterr().out
    assert "preferred node affinity 160" in out  # four decode pods on H200 nodes


def test_a_runtime_class_in_the_snapshot_is_applied_and_a_missing_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The class's node selector keeps the pods on the one node it selects (decode's two 4-GPU
    pods fit it); without the class in the snapshot the plan is made as before, with a warning;
    a class whose selector contradicts the template's is refused as the API server would."""
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=4))
    chosen = nodes[2]["metadata"]["name"]
    rc = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "handler": "kata",
          "metadata": {"name": "kata"},
          "scheduling": {"nodeSelector": {"kubernetes.io/hostname": chosen}}}  # fmt: skip
    with_class, without = tmp_path / "with.yaml", tmp_path / "without.yaml"
    with_class.write_text(yaml.safe_dump(fake.as_list([*nodes, rc])))
    without.write_text(yaml.safe_dump(fake.as_list(nodes)))
    doc = yaml.safe_load(MINIMAL.read_text())
    doc["spec"]["roles"] = doc["spec"]["roles"][1:]  # decode: 2 x (2 pods x 4 GPUs)
    doc["spec"]["roles"][0]["replicas"] = 1
    doc["spec"]["roles"][0]["template"]["spec"]["runtimeClassName"] = "kata"
    deployment = tmp_path / "d.yaml"
    deployment.write_text(yaml.safe_dump(doc))
    args = ["plan", "--deployment", str(deployment), "--format", "json", "--cluster"]
    assert cli.main([*args, str(with_class)]) == 0
    out = capsys.readouterr()
    assert {a["node"] for a in json.loads(out.out)["assignments"]} == {chosen}
    assert out.err == ""
    assert cli.main([*args, str(without)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["feasible"] is True
    assert out.err.startswith(
        'warning: spec.roles[0].template.spec.runtimeClassName: RuntimeClass "kata" is not in '
        "the snapshot"
    )
    doc["spec"]["roles"][0]["template"]["spec"]["nodeSelector"] = {
        "kubernetes.io/hostname": nodes[0]["metadata"]["name"]
    }
    deployment.write_text(yaml.safe_dump(doc))
    assert cli.main([*args, str(with_class)]) == 1
    err = capsys.readouterr().err
    assert "spec.roles[0].template.spec.nodeSelector.kubernetes.io/hostname" in err
    assert 'RuntimeClass "kata" selects' in err

"""Node labels -> typed topology; bad labels are reported as issues, never raised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from shorthop.topology import labels
from shorthop.topology.levels import preset

PLAIN = preset("plain")
SMI = (
    Path(__file__).resolve().parents[2]
    / "fixtures"
    / "nvidia-smi"
    / "real"
    / "h200x8_hgx_nv18_12nic.txt"
).read_text()


def node(
    name: str = "n1",
    node_labels: dict[str, str] | None = None,
    *,
    gpus: Any = "8",
    annotations: dict[str, str] | None = None,
    allocatable: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    base = {labels.PRODUCT: "NVIDIA-H100-80GB-HBM3", labels.COUNT: "8"}
    alloc = {"cpu": "64"} if gpus is None else {"cpu": "64", labels.GPU_RESOURCE: gpus}
    return {
        "metadata": {
            "name": name,
            "labels": {**base, **(node_labels or {})},
            "annotations": annotations or {},
        },
        "spec": status.pop("spec", {}),
        "status": {"allocatable": allocatable or alloc, **status},
    }


def test_hgx_node_with_network_labels() -> None:
    parsed = labels.parse_node(
        node(node_labels={"topology.kubernetes.io/zone": "z1", "topology.shorthop.io/rack": "r7"}),
        PLAIN,
    )
    assert parsed.issues == ()
    topo = parsed.topology
    assert topo is not None
    assert (topo.gpus, topo.model.name, topo.clique) == (8, "hgx-nvswitch", None)
    assert topo.chain == ("z1", None, "r7")


def test_gb200_tray_joins_its_clique() -> None:
    parsed = labels.parse_node(
        node(
            node_labels={
                labels.PRODUCT: "NVIDIA-GB200",
                labels.COUNT: "4",
                "nvidia.com/gpu.clique": "uuid.3",
            },
            gpus="4",
        ),
        PLAIN,
    )
    assert parsed.topology is not None
    assert (parsed.topology.model.name, parsed.topology.clique) == ("nvl-tray", "uuid.3")


@pytest.mark.parametrize(
    ("preset_name", "node_labels", "chain", "clique"),
    [
        (
            "topograph",
            {
                "fabric.topograph.run/tier-0": "leaf1",
                "fabric.topograph.run/tier-1": "sp1",
                "accelerator.topograph.run/domain": "d1",
            },
            (None, "sp1", "leaf1"),
            "d1",
        ),
        (
            "topograph",
            {
                "network.topology.nvidia.com/block": "b1",
                "network.topology.nvidia.com/spine": "s1",
                "network.topology.nvidia.com/core": "c1",
                "network.topology.nvidia.com/accelerator": "nvl1",
            },
            ("c1", "s1", "b1"),
            "nvl1",
        ),
        (
            "aws",
            {
                "topology.k8s.aws/network-node-layer-1": "l1",
                "topology.k8s.aws/network-node-layer-2": "l2",
                "topology.k8s.aws/network-node-layer-3": "l3",
                "topology.k8s.aws/ultraserver-id": "u1",
            },
            ("l1", "l2", "l3"),
            "u1",
        ),
        (
            "gke",
            {
                "cloud.google.com/gce-topology-block": "b",
                "cloud.google.com/gce-topology-subblock": "sb",
                "cloud.google.com/gce-topology-host": "h",
            },
            ("b", "sb", "h"),
            None,
        ),
        (
            "oci",
            {
                "oci.oraclecloud.com/rdma.hpc_island_id": "i",
                "oci.oraclecloud.com/rdma.network_block_id": "n",
                "oci.oraclecloud.com/rdma.local_block_id": "l",
            },
            ("i", "n", "l"),
            None,
        ),
    ],
    ids=["topograph-v1", "topograph-legacy", "aws", "gke", "oci"],
)
def test_presets_read_their_label_keys(
    preset_name: str, node_labels: dict[str, str], chain: tuple, clique: str | None
) -> None:
    topo = labels.parse_node(node(node_labels=node_labels), preset(preset_name)).topology
    assert topo is not None
    assert topo.chain == chain
    assert topo.clique == clique


def test_nvidia_smi_annotation_overrides_the_preset() -> None:
    parsed = labels.parse_node(node(annotations={labels.SMI_ANNOTATION: SMI}), PLAIN)
    assert parsed.topology is not None
    assert parsed.topology.model.name == "nvidia-smi"
    assert len(parsed.topology.model.nics) == 12


def _only_issue(parsed: labels.ParsedNode) -> labels.NodeIssue:
    assert len(parsed.issues) == 1, parsed.issues
    return parsed.issues[0]


@pytest.mark.parametrize(
    ("kwargs", "field", "excluded", "words"),
    [
        ({"node_labels": {labels.COUNT: "eight"}}, labels.COUNT, False, "not a number"),
        ({"gpus": "lots"}, "status.allocatable[nvidia.com/gpu]", True, "not a whole number"),
        ({"gpus": "6"}, labels.COUNT, False, "says 8 GPUs but 6 are allocatable"),
        (
            {"node_labels": {labels.PRODUCT: "ACME-Z9000"}},
            labels.PRODUCT,
            False,
            "not a known product",
        ),
        (
            {"annotations": {labels.SMI_ANNOTATION: "garbage"}},
            labels.SMI_ANNOTATION,
            False,
            "cannot be parsed",
        ),
        (
            {
                "node_labels": {labels.COUNT: "4"},
                "gpus": "4",
                "annotations": {labels.SMI_ANNOTATION: SMI},
            },
            labels.SMI_ANNOTATION,
            False,
            "describes 8 GPUs but the node has 4",
        ),
        (
            {
                "node_labels": {
                    labels.PRODUCT: "",
                    labels.COUNT: "2",
                    "nvidia.com/gpu.clique": "u.1",
                },
                "gpus": None,
            },
            "nvidia.com/gpu.clique",
            True,
            "on a node without GPUs",
        ),
        (
            {"node_labels": {labels.PRODUCT: "NVIDIA-GB200", labels.COUNT: "4"}, "gpus": "4"},
            "nvidia.com/gpu.clique",
            False,
            "NVLink fabric looks down",
        ),
        (
            {"node_labels": {labels.NUMA_KEY: "0,1"}},
            labels.NUMA_KEY,
            False,
            "one NUMA node per GPU",
        ),
        ({"gpus": "0"}, "status.allocatable[nvidia.com/gpu]", True, "is 0"),
        (
            {"node_labels": {labels.SHARING: "time-slicing", labels.REPLICAS: "4"}},
            labels.SHARING,
            True,
            "time-slicing",
        ),
        (
            {"node_labels": {labels.PRODUCT: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"}},
            labels.MIG_STRATEGY,
            True,
            "MIG",
        ),
    ],
    ids=[
        "count-nan",
        "alloc-nan",
        "count-ne-alloc",
        "unknown-product",
        "smi-garbage",
        "smi-wrong-size",
        "clique-no-gpus",
        "tray-no-clique",
        "numa-wrong-length",
        "zero-gpus",
        "time-slicing",
        "mig",
    ],
)
def test_bad_or_unusual_labels_become_issues_naming_the_field(
    kwargs: dict, field: str, excluded: bool, words: str
) -> None:
    parsed = labels.parse_node(node(**kwargs), PLAIN)
    found = _only_issue(parsed)
    assert found.field == field
    assert found.excluded is excluded
    assert (parsed.topology is None) is excluded
    assert words in found.message()
    assert "n1" in found.message()


def test_count_below_allocatable_models_the_smaller_number() -> None:
    topo = labels.parse_node(node(gpus="6"), PLAIN).topology
    assert topo is not None
    assert topo.gpus == 6


def test_cpu_node_is_left_out_quietly() -> None:
    parsed = labels.parse_node(
        {"metadata": {"name": "cpu"}, "status": {"allocatable": {"cpu": "8"}}}, PLAIN
    )
    assert parsed.topology is None
    assert _only_issue(parsed).severity == "info"


@pytest.mark.parametrize(
    "garbage",
    [
        {},
        {"metadata": None},
        {"metadata": {"labels": "x"}},
        {"status": []},
        {
            "metadata": {"name": 5, "labels": {1: 2}},
            "status": {"allocatable": {"nvidia.com/gpu": 3.5}},
        },
    ],
)
def test_structurally_broken_nodes_never_raise(garbage: dict) -> None:
    parsed = labels.parse_node(garbage, PLAIN)
    assert parsed.topology is None


def test_state_reads_ready_cordon_and_taints() -> None:
    state = labels.parse_state(
        node(
            spec={
                "unschedulable": True,
                "taints": [{"key": "gpu", "value": "x", "effect": "NoSchedule"}],
            },
            conditions=[{"type": "Ready", "status": "False"}],
        )
    )
    assert (state.ready, state.unschedulable) == (False, True)
    assert state.taints == (labels.Taint("gpu", "x", "NoSchedule"),)

"""What ``labels.parse_node`` takes from real GFD labels and from the node agent's annotations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from shorthop.topology import hardware, labels, smi
from shorthop.topology.hardware import Fabric, GpuReading, NodeReading
from shorthop.topology.levels import preset

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PLAIN = preset("plain")
CLUSTER = "5e6f7a1c-0000-4000-8000-00000000abcd"


def gfd_labels() -> dict[str, str]:
    lines = (FIXTURES / "gfd" / "h200x1-labels.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip())


def node(
    node_labels: dict[str, str], gpus: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "labels": node_labels, "annotations": annotations or {}},
        "status": {"allocatable": {"cpu": "16", labels.GPU_RESOURCE: gpus}},
    }


def test_real_gpu_feature_discovery_labels_of_one_h200_are_read_as_one_whole_gpu() -> None:
    found = gfd_labels()
    assert len(found) == 25
    parsed = labels.parse_node(node(found, "1"), PLAIN)
    topo = parsed.topology
    assert topo is not None
    assert (topo.product, topo.gpus, topo.clique) == ("NVIDIA-H200", 1, None)
    assert (topo.memory_mib, topo.family, topo.machine) == (143771, "hopper", "unknown")
    assert parsed.issues == (), [
        i.message() for i in parsed.issues
    ]  # replicas=1, sharing none: not shared


def test_the_real_h200_capture_as_the_annotation_gives_the_one_gpu_model() -> None:
    text = (FIXTURES / "nvidia-smi" / "real" / "h200x1_real_ansi.txt").read_text()
    parsed = labels.parse_node(node(gfd_labels(), "1", {labels.SMI_ANNOTATION: text}), PLAIN)
    assert parsed.issues == ()
    assert parsed.topology is not None
    assert (parsed.topology.model.name, parsed.topology.model.numa) == ("nvidia-smi", (0,))


def _reading(gpus: int, clique: tuple[str, int] | None = None, source: str = "nvml") -> NodeReading:
    fabric = Fabric(clique[0], clique[1], 3, 0) if clique else None
    return NodeReading(
        source,
        tuple(
            GpuReading(i, uuid=f"GPU-{i}", numa_node=i * 2 // gpus, fabric=fabric)
            for i in range(gpus)
        ),
    )


def _gb200(annotations: dict[str, str], clique_label: str | None = None) -> dict[str, Any]:
    found = {labels.PRODUCT: "NVIDIA-GB200", labels.COUNT: "4"}
    if clique_label:
        found["nvidia.com/gpu.clique"] = clique_label
    return node(found, "4", annotations)


def test_the_structured_annotation_alone_gives_the_exact_model() -> None:
    text = hardware.encode(_reading(4))
    parsed = labels.parse_node(_gb200({labels.TOPOLOGY_ANNOTATION: text}, f"{CLUSTER}.1"), PLAIN)
    assert parsed.topology is not None
    assert parsed.topology.model.name == "nvidia-smi"
    assert parsed.topology.model.numa == (0, 0, 1, 1)


def test_without_a_clique_label_the_agents_clique_joins_the_nvlink_domain() -> None:
    text = hardware.encode(_reading(4, (CLUSTER, 2)))
    parsed = labels.parse_node(_gb200({labels.TOPOLOGY_ANNOTATION: text}), PLAIN)
    assert parsed.topology is not None
    assert parsed.topology.clique == f"{CLUSTER}.2"
    assert parsed.issues == ()


def test_a_clique_label_that_disagrees_with_the_agent_wins_and_is_reported() -> None:
    text = hardware.encode(_reading(4, (CLUSTER, 2)))
    parsed = labels.parse_node(_gb200({labels.TOPOLOGY_ANNOTATION: text}, f"{CLUSTER}.9"), PLAIN)
    assert parsed.topology is not None
    assert parsed.topology.clique == f"{CLUSTER}.9"
    (issue,) = parsed.issues
    assert issue.field == "nvidia.com/gpu.clique"
    assert f"node agent read clique '{CLUSTER}.2'" in issue.problem
    assert not issue.excluded


def test_the_text_annotation_wins_over_the_structured_one_for_the_matrix() -> None:
    text = (FIXTURES / "nvidia-smi" / "real" / "rtxa6000x3_nvlink_bridge_pair_ansi.txt").read_text()
    structured = hardware.encode(_reading(3))
    found = {labels.PRODUCT: "NVIDIA-RTX-A6000", labels.COUNT: "3"}
    parsed = labels.parse_node(
        node(found, "3", {labels.SMI_ANNOTATION: text, labels.TOPOLOGY_ANNOTATION: structured}),
        PLAIN,
    )
    assert parsed.topology is not None
    assert parsed.topology.model.pairs[0][2].value == "nvlink"  # GPU0-GPU1 NV4 from the text
    assert parsed.issues == ()


@pytest.mark.parametrize(
    ("annotation", "field", "problem"),
    [
        ("{not json", labels.TOPOLOGY_ANNOTATION, "cannot be read (is not JSON"),
        (
            hardware.encode(_reading(2)),
            labels.TOPOLOGY_ANNOTATION,
            "describes 2 GPUs but the node has 4",
        ),
        (
            hardware.encode(_reading(4, source="fake-nvml")),
            labels.TOPOLOGY_ANNOTATION,
            "fake NVML recording",
        ),
    ],
    ids=["unreadable", "wrong-count", "fake"],
)
def test_problems_with_the_agents_annotation_are_issues_never_errors(
    annotation: str, field: str, problem: str
) -> None:
    parsed = labels.parse_node(
        _gb200({labels.TOPOLOGY_ANNOTATION: annotation}, f"{CLUSTER}.1"), PLAIN
    )
    assert parsed.topology is not None
    assert any(i.field == field and problem in i.problem for i in parsed.issues), [
        i.message() for i in parsed.issues
    ]


def test_the_rendered_matrix_in_the_text_annotation_reads_like_a_capture() -> None:
    reading = _reading(4)
    matrix = hardware.to_matrix(reading)
    found = {
        labels.PRODUCT: "NVIDIA-GB200",
        labels.COUNT: "4",
        "nvidia.com/gpu.clique": f"{CLUSTER}.1",
    }
    parsed = labels.parse_node(node(found, "4", {labels.SMI_ANNOTATION: smi.render(matrix)}), PLAIN)
    assert parsed.topology is not None
    assert parsed.topology.model.numa == (0, 0, 1, 1)

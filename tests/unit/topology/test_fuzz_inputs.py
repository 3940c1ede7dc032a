"""Malformed node label sets and ``nvidia-smi topo -m`` captures: nothing but shorthop's own
errors comes out of the topology layer (the always-on, smaller version of ``chaos/test_fuzz.py``).
Then one regression test per defect the fuzzing found.

The hypothesis tests are regression tests too: the suite's ``ci`` profile replays the same
examples on every run; ``make fuzz`` draws fresh ones (``tests/hypothesis_profiles.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from shorthop.errors import TopologyError
from shorthop.topology import index, labels, smi
from shorthop.topology.levels import preset

from tests import bounds, malformed
from tests.hypothesis_profiles import examples

PLAIN = preset("plain")


@settings(max_examples=examples(60))  # each example builds an index for every preset
@given(malformed.node_label_sets())
def test_regression_sample_of_malformed_label_sets_raises_nothing(
    nodes: list[dict[str, Any]],
) -> None:
    """A fixed sample under the ci profile (fresh ones under ``make fuzz``)."""
    tally = malformed.Tally()
    tally.run(malformed.through_topology, nodes)
    assert not tally.failures(), tally.failures()


@settings(max_examples=examples(60))
@given(malformed.smi_texts())
def test_regression_sample_of_malformed_smi_captures_raises_only_topology_errors(
    text: str,
) -> None:
    """A fixed sample under the ci profile (fresh ones under ``make fuzz``)."""
    tally = malformed.Tally()
    tally.run(malformed.through_smi, text)
    assert not tally.failures(), tally.failures()


# -- regressions ---------------------------------------------------------------------------------


def gpu_node(
    node_labels: dict[str, Any] | None = None, gpus: Any = "8", **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "n1",
            "labels": {labels.PRODUCT: "NVIDIA-H100-80GB-HBM3", **(node_labels or {})},
        },
        "spec": spec,
        "status": {"allocatable": {labels.GPU_RESOURCE: gpus}},
    }


@pytest.mark.parametrize("count", ["²", "¹²", "9" * 5000])
def test_a_gpu_count_int_cannot_read_is_an_issue(count: str) -> None:
    """str.isdigit() accepts "²", which int() rejects; and int() refuses 5,000 digits."""
    parsed = labels.parse_node(gpu_node({labels.COUNT: count}), PLAIN)
    assert parsed.topology is not None
    assert any(i.field == labels.COUNT and "not a number" in i.problem for i in parsed.issues)


@pytest.mark.parametrize("numa", ["²,²,²,²,²,²,²,²", ",".join(["9" * 5000] * 8)])
def test_a_numa_label_int_cannot_read_is_an_issue(numa: str) -> None:
    parsed = labels.parse_node(gpu_node({labels.NUMA_KEY: numa}), PLAIN)
    assert any(i.field == labels.NUMA_KEY for i in parsed.issues)


def _modelled(node: dict[str, Any]) -> labels.ParsedNode:
    parsed = labels.parse_node(node, PLAIN)
    index.build_index([p for p in [parsed.topology] if p is not None], PLAIN)
    return parsed


@pytest.mark.parametrize("gpus", ["100000000", 10**30, "65"])
def test_a_node_claiming_too_many_gpus_is_left_out_at_once(gpus: Any) -> None:
    """Modelling it built a quadratic pair list and a cubic distance class: 2,048 GPUs took
    27 s, 10^8 never finished. Leaving it out must cost less than modelling the smallest real
    node (8 GPUs): no work per claimed GPU."""
    _, eight = bounds.peak_bytes(lambda: _modelled(gpu_node(gpus="8")))
    parsed, peak = bounds.peak_bytes(lambda: _modelled(gpu_node(gpus=gpus)))
    assert parsed.topology is None
    assert peak < eight, (peak, eight)
    (issue,) = [i for i in parsed.issues if i.excluded]
    assert "at most 64 GPUs" in issue.message()


def test_exactly_64_gpus_are_still_modelled() -> None:
    parsed = labels.parse_node(gpu_node({labels.COUNT: "64"}, gpus="64"), PLAIN)
    assert parsed.topology is not None
    assert parsed.topology.gpus == 64


@pytest.mark.parametrize("taints", [5, 2.5, True, "NoSchedule"])
def test_taints_that_are_not_a_list_are_ignored(taints: Any) -> None:
    state = labels.parse_state(gpu_node(taints=taints))
    assert state.taints == ()


@pytest.mark.parametrize(
    "text",
    [
        "\tGPU0\tGPU1\tGPU" + "9" * 5000 + "\nGPU0\t X \tNV4\nGPU1\tNV4\t X \n",
        "\tGPU0\tGPU1\nGPU0\t X \tNV" + "9" * 5000 + "\nGPU1\tNV4\t X \n",
        "\tGPU0\tGPU1\nGPU0\t X \tNV²\nGPU1\tNV²\t X \n",
    ],
    ids=["gpu-name-5000-digits", "nv-5000-digits", "nv-superscript"],
)
def test_numbers_int_cannot_read_are_topology_errors(text: str) -> None:
    with pytest.raises(TopologyError):
        smi.parse(text)


@pytest.mark.parametrize("numa", ["²", "9" * 5000, "-1"])
def test_a_numa_affinity_int_cannot_read_is_unknown(numa: str) -> None:
    text = f"\tGPU0\tGPU1\tNUMA Affinity\nGPU0\t X \tNV4\t{numa}\nGPU1\tNV4\t X \t0\n"
    assert smi.parse(text).numa_affinity == (None, 0)


def test_a_gpu_count_of_0_leaves_the_node_out() -> None:
    """gpus = min(count label, allocatable) was 0: a 0-GPU node in the index made freeze() take
    the min of an empty array (a NVLink domain member) and distance() index GPU -1, so every
    snapshot over the cluster failed."""
    tray = {"nvidia.com/gpu.clique": "c.0", labels.PRODUCT: "NVIDIA-GB200"}
    parsed = labels.parse_node(gpu_node({**tray, labels.COUNT: "0"}, gpus="4"), PLAIN)
    assert parsed.topology is None
    assert any(i.field == labels.COUNT and i.excluded for i in parsed.issues)
    other = labels.parse_node(gpu_node({**tray, labels.COUNT: "4"}, gpus="4"), PLAIN).topology
    assert other is not None
    index.build_index([other], PLAIN)


@pytest.mark.parametrize(
    "text",
    [
        "  GPU0  mlx5_0\nGPU0  X  X\n",
        "\tGPU0\tGPU1\nGPU0\t X \t X \nGPU1\t X \t X \n",
        "\tGPU0\tmlx5_0\tGPU1\nGPU0\t X \tPIX\tNV4\nGPU1\tNV4\tPIX\t X \n",
    ],
    ids=["x-to-a-nic", "x-between-gpus", "nic-column-between-gpus"],
)
def test_x_off_the_diagonal_and_interleaved_columns_are_topology_errors(text: str) -> None:
    """X off the diagonal parsed, and building the node's model then raised a KeyError."""
    with pytest.raises(TopologyError):
        smi.parse(text)

"""A node whose GPUs the NVIDIA DRA driver publishes: modelled from its ResourceSlice together
with its labels; what disagrees is reported, never a crash."""

from __future__ import annotations

from typing import Any

from shorthop.topology import hardware, labels, slices, smi
from shorthop.topology.hardware import GpuReading, NodeReading
from shorthop.topology.levels import preset
from shorthop.topology.links import LinkKind

from tests import builders

PLAIN = preset("plain")


def _inventory(*objects: dict[str, Any]) -> slices.Inventory | None:
    return slices.index_by_node(slices.read_slice(o) for o in objects).get("n1")


def _parse(node: dict[str, Any], *objects: dict[str, Any]) -> labels.ParsedNode:
    return labels.parse_node(node, PLAIN, _inventory(*objects))


def _fields(parsed: labels.ParsedNode) -> dict[str, labels.NodeIssue]:
    return {i.field: i for i in parsed.issues}


def test_gpus_come_from_the_slice_without_an_extended_resource() -> None:
    parsed = _parse(builders.dra_node("n1"), builders.gpu_slice("n1"))
    topology = parsed.topology
    assert topology is not None
    assert parsed.issues == ()
    assert (topology.gpus, topology.model.name, topology.model.numa) == (
        8,
        "hgx-nvswitch",
        (0, 0, 0, 0, 1, 1, 1, 1),
    )
    assert topology.devices is not None
    assert topology.devices.names == tuple(f"gpu-{i}" for i in range(8))
    assert (topology.devices.driver, topology.devices.pool) == (slices.DEFAULT_DRIVER, "n1")


def test_without_its_slice_a_dra_node_offers_nothing_and_says_what_to_install() -> None:
    parsed = labels.parse_node(builders.dra_node("n1"), PLAIN)
    assert parsed.topology is None
    assert any("DRA driver" in i.fix for i in parsed.issues if i.excluded)


def test_a_count_label_that_disagrees_is_reported_and_the_slice_wins() -> None:
    parsed = _parse(builders.dra_node("n1", gpus=8), builders.gpu_slice("n1", gpus=7))
    assert parsed.topology is not None
    assert parsed.topology.gpus == 7
    issue = _fields(parsed)[labels.COUNT]
    assert not issue.excluded
    assert "publishes 7" in issue.problem


def test_a_product_label_that_disagrees_is_reported() -> None:
    node = builders.dra_node("n1")
    node["metadata"]["labels"][labels.PRODUCT] = "NVIDIA-A100-SXM4-80GB"
    parsed = _parse(node, builders.gpu_slice("n1"))
    assert parsed.topology is not None
    assert "'NVIDIA-H100-80GB-HBM3'" in _fields(parsed)[labels.PRODUCT].problem


def test_without_gpu_feature_discovery_the_slice_names_the_product() -> None:
    node = builders.dra_node("n1")
    del node["metadata"]["labels"][labels.PRODUCT]
    del node["metadata"]["labels"][labels.COUNT]
    parsed = _parse(node, builders.gpu_slice("n1"))
    assert parsed.topology is not None
    assert (parsed.topology.product, parsed.topology.model.name) == (
        "NVIDIA-H100-80GB-HBM3",
        "hgx-nvswitch",
    )
    assert parsed.issues == ()


def test_a_node_with_both_the_device_plugin_and_a_slice_is_reported() -> None:
    parsed = _parse(builders.node_object("n1"), builders.gpu_slice("n1"))
    assert parsed.topology is not None
    assert parsed.topology.devices is not None
    assert (
        "publishes the GPUs too"
        in _fields(parsed)[f"status.allocatable[{labels.GPU_RESOURCE}]"].problem
    )


def test_a_slice_of_mig_slices_only_has_no_whole_gpu() -> None:
    mig = builders.gpu_device(0, name="gpu-0-mig-1g.10gb-0", kind="mig")
    parsed = _parse(builders.dra_node("n1"), builders.resource_slice("n1", [mig]))
    assert parsed.topology is None
    assert "no whole GPU" in parsed.issues[0].problem


def test_an_unusable_pool_leaves_the_node_out_naming_the_pool() -> None:
    twice = builders.resource_slice("n1", [builders.gpu_device(0), builders.gpu_device(0)])
    parsed = _parse(builders.dra_node("n1"), twice)
    assert parsed.topology is None
    (issue,) = parsed.issues
    assert issue.field == "ResourceSlice pool gpu.nvidia.com/n1"
    assert issue.excluded


def test_an_incomplete_pool_keeps_the_model_and_says_nothing_is_free() -> None:
    a = builders.resource_slice("n1", [builders.gpu_device(i) for i in range(4)], name="a",
                                count=2)  # fmt: skip
    parsed = _parse(builders.dra_node("n1", gpus=4), a)
    assert parsed.topology is not None
    assert parsed.topology.devices is not None
    assert not parsed.topology.devices.complete
    assert any("incomplete" in i.problem and not i.excluded for i in parsed.issues)


def test_pcie_roots_and_numa_nodes_model_a_pcie_node() -> None:
    """L40S: two GPUs under each root complex, a root complex per socket."""
    devices = [
        builders.gpu_device(i, product="NVIDIA L40S", numa=i // 2, root=f"pci0000:{i // 2}0")
        for i in range(4)
    ]
    parsed = _parse(builders.dra_node("n1", "pcie", 4), builders.resource_slice("n1", devices))
    assert parsed.topology is not None
    model = parsed.topology.model
    assert model.numa == (0, 0, 1, 1)
    kinds = {(i, j): kind for i, j, kind in model.pairs}
    assert kinds[(0, 1)] == LinkKind.PHB
    assert kinds[(2, 3)] == LinkKind.PHB
    assert kinds[(0, 2)] == LinkKind.SYS


def test_root_complexes_of_one_numa_node_are_node_apart() -> None:
    devices = [
        builders.gpu_device(i, product="NVIDIA L40S", numa=0, root=f"pci0000:{i}0")
        for i in range(2)
    ]
    parsed = _parse(builders.dra_node("n1", "pcie", 2), builders.resource_slice("n1", devices))
    assert parsed.topology is not None
    assert parsed.topology.model.pairs == ((0, 1, LinkKind.NODE),)


def _agent_annotation(uuids: list[str]) -> str:
    reading = NodeReading(
        "nvml", tuple(GpuReading(i, uuid=u, numa_node=0) for i, u in enumerate(uuids))
    )
    return hardware.encode(reading)


def test_the_node_agents_uuids_decide_the_gpu_indices() -> None:
    devices = [builders.gpu_device(i, uuid=f"GPU-{i}") for i in range(4)]
    node = builders.dra_node("n1", gpus=4)
    order = ["GPU-3", "GPU-1", "GPU-2", "GPU-0"]
    node["metadata"]["annotations"] = {labels.TOPOLOGY_ANNOTATION: _agent_annotation(order)}
    parsed = _parse(node, builders.resource_slice("n1", devices))
    assert parsed.topology is not None
    assert parsed.topology.devices is not None
    assert parsed.topology.devices.names == ("gpu-3", "gpu-1", "gpu-2", "gpu-0")
    assert parsed.topology.devices.order == "node agent UUIDs"
    assert parsed.topology.model.name == "nvidia-smi"  # the agent's matrix, same indices


def test_agent_uuids_that_are_not_the_slices_devices_are_reported() -> None:
    devices = [builders.gpu_device(i, uuid=f"GPU-{i}") for i in range(2)]
    node = builders.dra_node("n1", gpus=2)
    node["metadata"]["annotations"] = {
        labels.TOPOLOGY_ANNOTATION: _agent_annotation(["GPU-0", "GPU-9"])
    }
    parsed = _parse(node, builders.resource_slice("n1", devices))
    assert parsed.topology is not None
    assert parsed.topology.devices is not None
    assert parsed.topology.devices.order == "PCI bus id"
    assert "not the devices" in _fields(parsed)[labels.TOPOLOGY_ANNOTATION].problem


def test_a_pasted_nvidia_smi_matrix_still_models_a_dra_node() -> None:
    matrix = smi.TopoMatrix(
        gpus=2,
        nics=(),
        gpu=((smi.Link("X"), smi.Link("NV", 4)), (smi.Link("NV", 4), smi.Link("X"))),
        gpu_nic=((), ()),
        cpu_affinity=(None, None),
        numa_affinity=(0, 0),
        legend=dict(smi.LEGEND),
    )
    node = builders.dra_node("n1", "pcie", 2)
    node["metadata"]["annotations"] = {labels.SMI_ANNOTATION: smi.render(matrix)}
    devices = [builders.gpu_device(i, product="NVIDIA L40S") for i in range(2)]
    parsed = _parse(node, builders.resource_slice("n1", devices))
    assert parsed.topology is not None
    assert parsed.topology.model.pairs == ((0, 1, LinkKind.NVLINK),)
    assert parsed.topology.devices is not None


def test_a_tainted_device_is_recorded_by_index() -> None:
    devices = [builders.gpu_device(i) for i in range(4)]
    devices[2]["taints"] = [{"key": "gpu.nvidia.com/xid", "effect": "NoExecute"}]
    parsed = _parse(builders.dra_node("n1", gpus=4), builders.resource_slice("n1", devices))
    assert parsed.topology is not None
    assert parsed.topology.devices is not None
    assert parsed.topology.devices.tainted == (2,)

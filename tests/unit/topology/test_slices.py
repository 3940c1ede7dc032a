"""ResourceSlices read as the NVIDIA DRA driver publishes them: every served version's shape, the
pool rules kube-scheduler's allocator uses (newest generation, complete pools, unique names), and
which device is GPU index ``i``."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.errors import DeviceError
from shorthop.topology import slices

from tests import builders

# One device exactly as the driver's reference page shows it (site/content/docs/reference/
# resourceslice-attributes.md), values kept.
DOCUMENTED_GPU = {
    "attributes": {
        "addressingMode": {"string": "HMM"},
        "architecture": {"string": "Ampere"},
        "brand": {"string": "Nvidia"},
        "cudaComputeCapability": {"version": "8.0.0"},
        "cudaDriverVersion": {"version": "13.0.0"},
        "driverVersion": {"version": "580.126.20"},
        "productName": {"string": "NVIDIA A100-PCIE-40GB"},
        "resource.kubernetes.io/pciBusID": {"string": "0000:65:00.0"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:64"},
        "type": {"string": "gpu"},
        "uuid": {"string": "GPU-2fa81118-5a5f-aa66-7660-471eed407181"},
    },
    "capacity": {"memory": {"value": "40Gi"}},
    "name": "gpu-0",
}


def _slice(listed: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    body = builders.resource_slice("n1", listed)
    body["spec"].update(spec)
    return body


def test_the_drivers_documented_device_is_read_field_by_field() -> None:
    (device,) = slices.read_slice(_slice([DOCUMENTED_GPU])).devices
    assert device == slices.Device(
        name="gpu-0",
        kind="gpu",
        uuid="GPU-2fa81118-5a5f-aa66-7660-471eed407181",
        product="NVIDIA A100-PCIE-40GB",
        architecture="Ampere",
        pci_bus_id="0000:65:00.0",
        pcie_root="pci0000:64",
        numa=None,
        memory_bytes=40 * 2**30,
    )


@pytest.mark.parametrize(
    "numa", [{"int": 1}, {"ints": [1]}], ids=["int", "one-element-list (DRAListTypeAttributes)"]
)
def test_numa_node_is_an_int_or_a_one_element_list(numa: dict[str, Any]) -> None:
    device = builders.gpu_device(0)
    device["attributes"]["resource.kubernetes.io/numaNode"] = numa
    assert slices.read_slice(_slice([device])).devices[0].numa == 1


def test_v1beta1_devices_nest_attributes_under_basic() -> None:
    flat = builders.gpu_device(3, numa=1, root="pci0000:80")
    nested = {"name": flat["name"], "basic": {"attributes": flat["attributes"],
                                              "capacity": flat["capacity"]}}  # fmt: skip
    assert slices.read_slice(_slice([nested])).devices == slices.read_slice(_slice([flat])).devices


def test_mig_slices_and_taints_are_read() -> None:
    mig = builders.gpu_device(0, name="gpu-0-mig-1g.10gb-0", kind="mig")
    mig["attributes"]["parentUUID"] = {"string": "GPU-x"}
    tainted = builders.gpu_device(1, taints=[{"key": "xid", "value": "79", "effect": "NoSchedule"}])
    soft = builders.gpu_device(2, taints=[{"key": "k", "effect": "None"}])
    devices = slices.read_slice(_slice([mig, tainted, soft])).devices
    assert (devices[0].kind, devices[0].parent_uuid, devices[0].whole_gpu) == (
        "mig",
        "GPU-x",
        False,
    )
    assert [d.tainted for d in devices] == [False, True, False]


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        ({"pool": {"name": "n1", "generation": "x"}}, "spec.pool.generation"),
        ({"pool": {"generation": 1}}, "spec.pool.name"),
        ({"devices": "gpus"}, "spec.devices"),
        ({"devices": [{"attributes": {}}]}, "spec.devices[0].name"),
        ({"devices": [{"name": "g", "attributes": []}]}, "spec.devices[0].attributes"),
        (
            {"devices": [{"name": "g", "attributes": {slices.NUMA_NODE: {"int": "0"}}}]},
            "spec.devices[0].attributes[resource.kubernetes.io/numaNode]",
        ),
        (
            {"devices": [{"name": "g", "capacity": {"memory": {"value": "lots"}}}]},
            "spec.devices[0].capacity[memory]",
        ),
        ({"driver": 7}, "spec.driver"),
    ],
)
def test_a_malformed_field_is_an_error_naming_it(damage: dict[str, Any], field: str) -> None:
    body = _slice([builders.gpu_device(0)], **damage)
    with pytest.raises(DeviceError) as raised:
        slices.read_slice(body)
    assert str(raised.value).startswith(f"{field} ")


# -- pools ---------------------------------------------------------------------------------------


def _devices(n: int) -> list[dict[str, Any]]:
    return [builders.gpu_device(i) for i in range(n)]


def test_only_the_newest_generation_counts() -> None:
    old = builders.resource_slice("n1", _devices(8), name="old", generation=1)
    new = builders.resource_slice("n1", _devices(7), name="new", generation=2)
    inventory = slices.index_by_node([slices.read_slice(old), slices.read_slice(new)])["n1"]
    assert (len(inventory.devices), inventory.complete, inventory.problem) == (7, True, None)


def test_a_pool_over_several_slices_is_complete_once_all_are_there() -> None:
    a = builders.resource_slice("n1", _devices(8)[:4], name="a", count=2)
    b = builders.resource_slice("n1", _devices(8)[4:], name="b", count=2)
    one = slices.index_by_node([slices.read_slice(a)])["n1"]
    both = slices.index_by_node([slices.read_slice(a), slices.read_slice(b)])["n1"]
    assert not one.complete
    assert (both.complete, [d.name for d in both.devices]) == (
        True,
        [f"gpu-{i}" for i in range(8)],
    )


def test_a_pool_being_replaced_keeps_its_devices_but_is_incomplete() -> None:
    """The driver updates its slices one by one: one at generation 2, one still at 1."""
    a = builders.resource_slice("n1", _devices(8)[:4], name="a", count=2, generation=2)
    b = builders.resource_slice("n1", _devices(8)[4:], name="b", count=2, generation=1)
    inventory = slices.index_by_node([slices.read_slice(a), slices.read_slice(b)])["n1"]
    assert not inventory.complete
    assert len(inventory.devices) == 8


@pytest.mark.parametrize(
    ("objects", "problem"),
    [
        (
            [builders.resource_slice("n1", [builders.gpu_device(0), builders.gpu_device(0)])],
            "lists device 'gpu-0' twice",
        ),
        (
            [
                builders.resource_slice("n1", _devices(1), name="a", count=2),
                builders.resource_slice("n1", _devices(1), name="b", count=3),
            ],
            "disagree on resourceSliceCount",
        ),
        (
            [
                builders.resource_slice("n1", _devices(1), name="a", pool="p1"),
                builders.resource_slice("n1", _devices(1), name="b", pool="p2"),
            ],
            "in 2 pools (p1, p2)",
        ),
    ],
    ids=["repeated-name", "counts-disagree", "two-pools"],
)
def test_pools_that_cannot_be_used_say_why(objects: list[dict[str, Any]], problem: str) -> None:
    inventory = slices.index_by_node(slices.read_slice(o) for o in objects)["n1"]
    assert inventory.problem is not None
    assert problem in inventory.problem


def test_slices_of_other_drivers_are_not_gpus() -> None:
    nic = builders.resource_slice("n1", _devices(2), driver="nic.example.com")
    assert slices.index_by_node([slices.read_slice(nic)]) == {}


def test_an_unreadable_slice_makes_its_pool_unusable_until_it_is_gone() -> None:
    index = slices.SliceIndex()
    assert index.put(slices.read_slice(builders.gpu_slice("n1"))) == {"n1"}
    assert index.put_broken("bad", slices.DEFAULT_DRIVER, "n1", "n1", "spec.devices is a str")
    inventory = index.inventory("n1")
    assert inventory is not None
    assert inventory.problem is not None
    assert "bad" in inventory.problem
    assert index.remove("bad") == {"n1"}
    assert (
        index.inventory("n1")
        == slices.index_by_node([slices.read_slice(builders.gpu_slice("n1"))])["n1"]
    )


def test_removing_a_slice_reports_its_node_and_forgets_it() -> None:
    index = slices.SliceIndex()
    index.put(slices.read_slice(builders.gpu_slice("n1", name="s")))
    assert index.remove("s") == {"n1"}
    assert index.inventory("n1") is None
    assert index.remove("s") == set()


# -- GPU indices ---------------------------------------------------------------------------------


def test_indices_follow_pci_bus_order_not_device_names() -> None:
    """Minor numbers need not follow the bus: nvidia-smi numbers GPUs in PCI bus order."""
    devices = [
        slices.Device("gpu-0", "gpu", pci_bus_id="0000:9d:00.0"),
        slices.Device("gpu-1", "gpu", pci_bus_id="0000:1b:00.0"),
        slices.Device("gpu-2", "gpu", pci_bus_id="0001:05:00.0"),
        slices.Device("gpu-3", "gpu", pci_bus_id="0000:43:00.0"),
    ]
    ordered, basis = slices.order_gpus(devices)
    assert [d.name for d in ordered] == ["gpu-1", "gpu-3", "gpu-0", "gpu-2"]
    assert basis == "PCI bus id"


def test_the_node_agents_uuids_decide_when_they_name_every_device() -> None:
    devices = [slices.Device(f"gpu-{i}", "gpu", uuid=f"U{i}", pci_bus_id=f"0000:0{i}:00.0")
               for i in range(3)]  # fmt: skip
    ordered, basis = slices.order_gpus(devices, ("U2", "U0", "U1"))
    assert ([d.name for d in ordered], basis) == (["gpu-2", "gpu-0", "gpu-1"], "node agent UUIDs")
    ordered, basis = slices.order_gpus(devices, ("U2", "U9", "U1"))
    assert ([d.name for d in ordered], basis) == (["gpu-0", "gpu-1", "gpu-2"], "PCI bus id")


def test_without_pci_addresses_minor_numbers_order_them() -> None:
    devices = [slices.Device(n, "gpu") for n in ("gpu-10", "gpu-2", "gpu-1")]
    ordered, basis = slices.order_gpus(devices)
    assert ([d.name for d in ordered], basis) == (["gpu-1", "gpu-2", "gpu-10"], "device name")


def test_mig_slices_and_vfio_functions_alias_the_gpu_they_use() -> None:
    gpus = [slices.Device(f"gpu-{i}", "gpu", uuid=f"U{i}", pci_bus_id=f"0000:0{i}:00.0")
            for i in range(2)]  # fmt: skip
    mig = slices.Device("gpu-1-mig-1g.10gb-0", "mig", uuid="MIG-x", parent_uuid="U1")
    vfio = slices.Device("gpu-vfio-0", "vfio", uuid="U0", pci_bus_id="0000:00:00.0")
    stray = slices.Device("nic-0", "nic", pci_bus_id="0000:09:00.0")
    inventory = slices.Inventory(slices.DEFAULT_DRIVER, "n1", (*gpus, mig, vfio, stray))
    found = slices.node_devices(inventory, gpus, "PCI bus id")
    assert found.index_of("gpu-1-mig-1g.10gb-0") == 1
    assert found.index_of("gpu-vfio-0") == 0
    assert found.index_of("nic-0") is None
    assert found.devices_of([1, 0]) == ("gpu-1", "gpu-0")

"""Fake DRA GPUs: published exactly as the NVIDIA DRA driver publishes them (its reference page
site/content/docs/reference/resourceslice-attributes.md and the kubelet plugin's deviceinfo.go),
beside device-plugin nodes in one cluster, with the DeviceClass its chart installs."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from shorthop import cli
from shorthop.placement import snapshot
from shorthop.topology import fake, labels, slices

SHAPE = fake.ClusterShape(
    nvl72_racks=1, trays_per_rack=2, hgx_units=1, nodes_per_unit=2, l40s_nodes=2,
    dra=frozenset({"nvl72", "hgx"}),
)  # fmt: skip
# The attributes the driver sets on a full GPU (GpuInfo.Attributes): addressingMode only where
# the platform reports one (coherent Grace systems), no index/minor any more.
GPU_ATTRIBUTES = {
    "type", "uuid", "productName", "brand", "architecture", "cudaComputeCapability",
    "driverVersion", "cudaDriverVersion", slices.PCI_BUS_ID, slices.PCIE_ROOT, slices.NUMA_NODE,
}  # fmt: skip
SEMVER = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")


@pytest.fixture(scope="module")
def cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = fake.nodes(SHAPE, seed=4)
    return nodes, fake.resource_slices(nodes, seed=4)


def test_dra_nodes_carry_no_gpu_resource_and_the_others_keep_it(
    cluster: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    nodes, _ = cluster
    for node in nodes:
        name = node["metadata"]["name"]
        has = labels.GPU_RESOURCE in node["status"]["allocatable"]
        assert has == name.startswith("l40s"), name
        assert labels.GPU_RESOURCE in node["status"]["capacity"] or not has


def test_one_slice_per_dra_node_one_pool_named_after_it(
    cluster: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    nodes, published = cluster
    dra = sorted(n["metadata"]["name"] for n in nodes if fake.is_dra(n))
    assert sorted(s["spec"]["nodeName"] for s in published) == dra
    for s in published:
        spec = s["spec"]
        assert s["apiVersion"] == "resource.k8s.io/v1"
        assert spec["driver"] == "gpu.nvidia.com"
        assert spec["pool"] == {"name": spec["nodeName"], "generation": 1, "resourceSliceCount": 1}
        assert re.fullmatch(rf"0-gpu\.nvidia\.com-{spec['nodeName']}-[a-z0-9]{{5}}",
                            s["metadata"]["name"])  # fmt: skip


def test_devices_have_the_drivers_names_attributes_and_capacity(
    cluster: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    _, published = cluster
    uuids = set()
    for s in published:
        product = fake.PRODUCTS["gb200" if "nvl72" in s["spec"]["nodeName"] else "h100"]
        devices = s["spec"]["devices"]
        assert [d["name"] for d in devices] == [f"gpu-{i}" for i in range(product.gpus)]
        for d in devices:
            attrs = d["attributes"]
            extra = {"addressingMode"} if product.addressing else set()
            assert set(attrs) == GPU_ATTRIBUTES | extra
            assert attrs["type"] == {"string": "gpu"}
            assert attrs["productName"] == {"string": product.name}
            assert attrs["brand"] == {"string": "Nvidia"}
            for key in ("cudaComputeCapability", "driverVersion", "cudaDriverVersion"):
                assert SEMVER.match(attrs[key]["version"]), key
            assert set(attrs[slices.NUMA_NODE]) == {"int"}
            assert re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]",
                                attrs[slices.PCI_BUS_ID]["string"])  # fmt: skip
            assert re.fullmatch(r"pci[0-9a-f]{4}:[0-9a-f]{2}", attrs[slices.PCIE_ROOT]["string"])
            assert re.fullmatch(r"GPU-[0-9a-f-]{36}", attrs["uuid"]["string"])
            uuids.add(attrs["uuid"]["string"])
            assert d["capacity"] == {"memory": {"value": f"{product.memory_mib}Mi"}}
    assert len(uuids) == sum(len(s["spec"]["devices"]) for s in published)


def test_the_device_class_is_the_drivers_charts() -> None:
    assert fake.device_class() == {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "gpu.nvidia.com"},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": "device.driver == 'gpu.nvidia.com' && "
                        "device.attributes['gpu.nvidia.com'].type == 'gpu'"
                    }
                }
            ],
            "extendedResourceName": "nvidia.com/gpu",
        },
    }


def test_dra_and_device_plugin_nodes_are_modelled_alike(
    cluster: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """The same shape without DRA: the same GPUs, products and NVLink domains."""
    nodes, published = cluster
    dra = snapshot.build(nodes, [], fake.CONFIG, resource_slices=published)
    shape = fake.ClusterShape(nvl72_racks=1, trays_per_rack=2, hgx_units=1, nodes_per_unit=2,
                              l40s_nodes=2)  # fmt: skip
    plain = snapshot.build(fake.nodes(shape, seed=4), [], fake.CONFIG)
    assert dra.issues == ()
    is_dra = {n["metadata"]["name"]: fake.is_dra(n) for n in nodes}
    assert set(dra.index.row_of) == set(plain.index.row_of) == set(is_dra)
    for name, row in dra.index.row_of.items():
        ours, theirs = dra.index.topologies[row], plain.index.topologies[plain.index.row_of[name]]
        assert ours is not None
        assert theirs is not None
        assert (ours.gpus, ours.product, ours.clique) == (
            theirs.gpus,
            theirs.product,
            theirs.clique,
        )
        assert (ours.devices is not None) == is_dra[name]
    assert int(dra.free_counts.sum()) == int(plain.free_counts.sum())


def test_background_claims_allocate_published_devices_once(
    cluster: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    nodes, published = cluster
    pods, claims = fake.background_claims(nodes, published, 0.6, seed=9)
    assert pods
    assert len(pods) == len(claims)
    offered = {
        (s["spec"]["pool"]["name"], d["name"]) for s in published for d in s["spec"]["devices"]
    }
    taken = [
        (r["pool"], r["device"])
        for c in claims
        for r in c["status"]["allocation"]["devices"]["results"]
    ]
    assert set(taken) <= offered
    assert len(taken) == len(set(taken))
    for pod, claim in zip(pods, claims, strict=True):
        (ref,) = pod["spec"]["resourceClaims"]
        assert ref["resourceClaimName"] == claim["metadata"]["name"]
        wanted = claim["spec"]["devices"]["requests"][0]["exactly"]["count"]
        assert len(claim["status"]["allocation"]["devices"]["results"]) == wanted
        selector = claim["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"][0]
        assert selector["matchFields"][0]["values"] == [pod["spec"]["nodeName"]]


def test_fake_cluster_dra_flag_writes_slices_class_and_claims(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["fake-cluster", "--hgx-units", "1", "--nodes-per-unit", "2", "--l40s-nodes", "1"]
    assert cli.main([*args, "--dra", "hgx", "--occupancy", "0.5"]) == 0
    kinds = [o["kind"] for o in yaml.safe_load(capsys.readouterr().out)["items"]]
    assert kinds.count("ResourceSlice") == 2
    assert kinds.count("DeviceClass") == 1
    assert kinds.count("ResourceClaim") >= 1
    assert cli.main([*args, "--dra", "all"]) == 0
    listed = yaml.safe_load(capsys.readouterr().out)["items"]
    assert sum(o["kind"] == "ResourceSlice" for o in listed) == 3


def test_fake_cluster_refuses_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fake-cluster", "--hgx-units", "1", "--dra", "hgx,tpu"]) == 1
    assert capsys.readouterr().err.startswith("shorthop fake-cluster: error: --dra: 'tpu'")

"""Fake GPU clusters: Node manifests with realistic GPU Feature Discovery and network labels.

Shapes: GB200 NVL72 racks (18 compute trays x 4 GPUs, one ``gpu.clique`` per rack), HGX 8-GPU
nodes (H100, H200, A100) in rail-optimised scalable units, and L40S PCIe nodes; any mix. Every
node gets ``kubernetes.io/hostname``, GFD labels, ``nvidia.com/gpu`` capacity/allocatable, a Ready
condition, the kwok annotation (so kwok keeps it Ready), and network labels in the chosen preset.
Optionally background pods occupy GPUs. Used by tests, e2e, benchmarks, the demo and
``shorthop fake-cluster``. Deterministic for a given seed.

DRA nodes (``ClusterShape.dra`` names the kinds: ``nvl72``, ``hgx``, ``l40s``) carry no
``nvidia.com/gpu`` resource: :func:`resource_slices` publishes their GPUs as the NVIDIA DRA driver
does (one ResourceSlice per node, pool named after the node, devices ``gpu-<minor>`` with the
driver's attributes and a realistic PCI layout per product), :func:`device_class` is the
DeviceClass its Helm chart installs, and :func:`background_claims` occupies some of their GPUs
with allocated ResourceClaims and the pods that use them.

Network placement (logical chain, mapped onto the preset's levels coarse to fine): every unit
(an NVL72 rack, an HGX scalable unit, a rack of L40S nodes) is one finest-level domain; units are
grouped ``units_per_block`` to a block; blocks ``blocks_per_zone`` to a zone.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shorthop.topology import labels
from shorthop.topology.levels import TopologyConfig, preset

CONFIG = preset("plain")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass(frozen=True, slots=True)
class Product:
    label: str
    family: str
    memory_mib: int
    machine: str
    gpus: int
    # What the NVIDIA DRA driver publishes: NVML's name, architecture and compute capability,
    # and per GPU (index order) its PCI address, PCIe root complex and NUMA node.
    name: str = ""
    architecture: str = ""
    compute: str = ""
    buses: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    numa: tuple[int, ...] = ()
    addressing: str | None = None  # coherent systems (Grace) report a memory addressing mode


_HGX_BUSES = tuple(f"0000:{b}:00.0" for b in ("1b", "43", "52", "61", "9d", "c3", "d1", "df"))
_HGX_ROOTS = ("pci0000:15",) * 2 + ("pci0000:48",) * 2 + ("pci0000:97",) * 2 + ("pci0000:c1",) * 2
PRODUCTS: dict[str, Product] = {
    "gb200": Product(
        "NVIDIA-GB200", "blackwell", 189471, "GB200-NVL72-Compute-Tray", 4,
        "NVIDIA GB200", "Blackwell", "10.0.0",
        ("0008:01:00.0", "0009:01:00.0", "0018:01:00.0", "0019:01:00.0"),
        ("pci0008:00", "pci0009:00", "pci0018:00", "pci0019:00"), (0, 0, 1, 1), "ATS",
    ),
    "h100": Product(
        "NVIDIA-H100-80GB-HBM3", "hopper", 81559, "NVIDIA-DGX-H100", 8,
        "NVIDIA H100 80GB HBM3", "Hopper", "9.0.0", _HGX_BUSES, _HGX_ROOTS, (0,) * 4 + (1,) * 4,
    ),
    "h200": Product(
        "NVIDIA-H200", "hopper", 143771, "NVIDIA-HGX-H200", 8,
        "NVIDIA H200", "Hopper", "9.0.0", _HGX_BUSES, _HGX_ROOTS, (0,) * 4 + (1,) * 4,
    ),
    "a100": Product(
        "NVIDIA-A100-SXM4-80GB", "ampere", 81920, "NVIDIA-DGX-A100", 8,
        "NVIDIA A100-SXM4-80GB", "Ampere", "8.0.0",
        tuple(f"0000:{b}:00.0" for b in ("07", "0f", "47", "4e", "87", "90", "b7", "bd")),
        tuple(f"pci0000:{r}" for r in ("00", "00", "40", "40", "80", "80", "b0", "b0")),
        (3, 3, 1, 1, 7, 7, 5, 5),
    ),
    "l40s": Product(
        "NVIDIA-L40S", "ada-lovelace", 46068, "SYS-421GE-TNRT", 4,
        "NVIDIA L40S", "Ada Lovelace", "8.9.0",
        ("0000:4f:00.0", "0000:52:00.0", "0000:ce:00.0", "0000:d1:00.0"),
        ("pci0000:4c", "pci0000:4c", "pci0000:cb", "pci0000:cb"), (0, 0, 1, 1),
    ),
}  # fmt: skip
DRA_DRIVER = "gpu.nvidia.com"
DRA_KINDS = ("nvl72", "hgx", "l40s")
DRIVER_VERSION = "580.126.20"
CUDA_DRIVER_VERSION = "13.0.0"


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """What to generate. ``hgx_units`` x ``nodes_per_unit`` HGX nodes of ``hgx_product``."""

    nvl72_racks: int = 0
    trays_per_rack: int = 18
    hgx_units: int = 0
    nodes_per_unit: int = 32
    hgx_product: str = "h100"
    l40s_nodes: int = 0
    l40s_per_rack: int = 8
    units_per_block: int = 4
    blocks_per_zone: int = 4
    dra: frozenset[str] = frozenset()  # kinds (DRA_KINDS) whose GPUs are published by DRA


def _node(
    name: str,
    product: Product,
    chain: tuple[str, ...],
    config: TopologyConfig,
    clique: str | None,
    dra: bool = False,
) -> dict[str, Any]:
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "arm64" if product.family == "blackwell" else "amd64",
        "type": "kwok",
        "nvidia.com/gpu.present": "true",
        labels.PRODUCT: product.label,
        labels.COUNT: str(product.gpus),
        labels.MEMORY: str(product.memory_mib),
        labels.FAMILY: product.family,
        labels.MACHINE: product.machine,
        labels.SHARING: "none",
        "nvidia.com/mig.capable": "false",
        "nvidia.com/cuda.driver-version.major": "580",
    }
    levels = config.levels
    # Map the logical (zone, block, unit) chain onto the preset's levels, finest aligned.
    for level, value in zip(reversed(levels), reversed(chain), strict=False):
        node_labels[level.keys[0]] = value
    if clique is not None:
        node_labels[config.nvlink_domain_keys[0]] = clique
        node_labels["nvidia.com/gpu.clique"] = clique
    resources = {
        "cpu": "144" if product.gpus == 4 else "224",
        "memory": "1800Gi",
        "pods": "110",
        "nvidia.com/gpu": str(product.gpus),
    }
    if dra:
        # The DRA driver publishes the GPUs in a ResourceSlice; no device plugin, no resource.
        del resources["nvidia.com/gpu"]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": {KWOK_ANNOTATION: "fake"}},
        "spec": {},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def nodes(
    shape: ClusterShape, config: TopologyConfig = CONFIG, *, seed: int = 0
) -> list[dict[str, Any]]:
    """Node manifests for ``shape``; names are stable for a given shape and seed."""
    rng = random.Random(seed)
    cluster_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
    out: list[dict[str, Any]] = []
    unit = 0

    def chain() -> tuple[str, ...]:
        block = unit // shape.units_per_block
        zone = block // shape.blocks_per_zone
        return (f"zone-{zone}", f"block-{block}", f"unit-{unit}")

    for rack in range(shape.nvl72_racks):
        clique = f"{cluster_uuid}.{rack}"
        for tray in range(shape.trays_per_rack):
            out.append(
                _node(
                    f"nvl72-r{rack}-t{tray:02d}",
                    PRODUCTS["gb200"],
                    chain(),
                    config,
                    clique,
                    "nvl72" in shape.dra,
                )
            )
        unit += 1
    hgx = PRODUCTS[shape.hgx_product]
    for su in range(shape.hgx_units):
        for n in range(shape.nodes_per_unit):
            out.append(
                _node(
                    f"{shape.hgx_product}-su{su}-n{n:02d}", hgx, chain(), config, None,
                    "hgx" in shape.dra,
                )
            )  # fmt: skip
        unit += 1
    for n in range(shape.l40s_nodes):
        if n and n % shape.l40s_per_rack == 0:
            unit += 1
        out.append(
            _node(f"l40s-n{n:02d}", PRODUCTS["l40s"], chain(), config, None, "l40s" in shape.dra)
        )
    return out


def background_pods(
    node_objects: Iterable[Mapping[str, Any]],
    occupancy: float,
    *,
    seed: int = 0,
    namespace: str = "background",
) -> list[dict[str, Any]]:
    """Running pods (not shorthop's) that take about ``occupancy`` of each node's GPUs."""
    rng = random.Random(seed)
    pods: list[dict[str, Any]] = []
    for node in node_objects:
        name = node["metadata"]["name"]
        if labels.GPU_RESOURCE not in node["status"]["allocatable"]:
            continue  # a DRA node: see background_claims
        gpus = int(node["status"]["allocatable"][labels.GPU_RESOURCE])
        taken = sum(1 for _ in range(gpus) if rng.random() < occupancy)
        while taken > 0:
            size = min(taken, rng.choice((1, 2, 4, 8)))
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"bg-{name}-{len(pods)}",
                        "namespace": namespace,
                        "labels": {"app": "background"},
                    },
                    "spec": {
                        "nodeName": name,
                        "containers": [
                            {
                                "name": "work",
                                "image": "registry.invalid/train:1",
                                "resources": {
                                    "limits": {labels.GPU_RESOURCE: str(size)},
                                    "requests": {labels.GPU_RESOURCE: str(size)},
                                },
                            }
                        ],
                    },
                    "status": {"phase": "Running"},
                }
            )
            taken -= size
    return pods


def is_dra(node: Mapping[str, Any]) -> bool:
    """A fake node whose GPUs the DRA driver publishes (no ``nvidia.com/gpu`` resource)."""
    return labels.GPU_RESOURCE not in node["status"]["allocatable"]


def _product_of(node: Mapping[str, Any]) -> Product:
    label = node["metadata"]["labels"][labels.PRODUCT]
    return next(p for p in PRODUCTS.values() if p.label == label)


def resource_slices(
    node_objects: Iterable[Mapping[str, Any]], *, seed: int = 0, driver: str = DRA_DRIVER
) -> list[dict[str, Any]]:
    """The ResourceSlice of every DRA node, as the NVIDIA DRA driver publishes it: one slice per
    node (its kubelet plugin's default, without the DynamicMIG gate), pool named after the node,
    generation 1, one device ``gpu-<minor>`` per GPU with the driver's attributes (``type``,
    ``uuid``, ``productName``, ``brand``, ``architecture``, ``cudaComputeCapability``,
    ``driverVersion``, ``cudaDriverVersion``, the standard ``pciBusID``/``pcieRoot``/``numaNode``,
    ``addressingMode`` on coherent systems) and capacity ``memory``. Names follow the
    resourceslice controller's ``<index>-<driver>-<node>-<suffix>``; owner references to the
    Node are left out (its uid is only known once created)."""
    rng = random.Random(seed)
    out = []
    for node in node_objects:
        if not is_dra(node):
            continue
        name = node["metadata"]["name"]
        product = _product_of(node)
        devices = []
        for i in range(product.gpus):
            attributes: dict[str, Any] = {
                "architecture": {"string": product.architecture},
                "brand": {"string": "Nvidia"},
                "cudaComputeCapability": {"version": product.compute},
                "cudaDriverVersion": {"version": CUDA_DRIVER_VERSION},
                "driverVersion": {"version": DRIVER_VERSION},
                "productName": {"string": product.name},
                "resource.kubernetes.io/numaNode": {"int": product.numa[i]},
                "resource.kubernetes.io/pciBusID": {"string": product.buses[i]},
                "resource.kubernetes.io/pcieRoot": {"string": product.roots[i]},
                "type": {"string": "gpu"},
                "uuid": {"string": f"GPU-{uuid.UUID(int=rng.getrandbits(128))}"},
            }
            if product.addressing:
                attributes["addressingMode"] = {"string": product.addressing}
            devices.append(
                {
                    "name": f"gpu-{i}",
                    "attributes": attributes,
                    "capacity": {"memory": {"value": f"{product.memory_mib}Mi"}},
                }
            )
        suffix = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        out.append(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceSlice",
                "metadata": {"name": f"0-{driver}-{name}-{suffix}"},
                "spec": {
                    "driver": driver,
                    "nodeName": name,
                    "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                    "devices": devices,
                },
            }
        )
    return out


def device_class(name: str = DRA_DRIVER, driver: str = DRA_DRIVER) -> dict[str, Any]:
    """The DeviceClass of whole GPUs that the NVIDIA DRA driver's Helm chart installs."""
    expression = f"device.driver == '{driver}' && device.attributes['{driver}'].type == 'gpu'"
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {
            "selectors": [{"cel": {"expression": expression}}],
            "extendedResourceName": labels.GPU_RESOURCE,
        },
    }


def background_claims(
    node_objects: Iterable[Mapping[str, Any]],
    resource_slices: Iterable[Mapping[str, Any]],
    occupancy: float,
    *,
    seed: int = 0,
    namespace: str = "background",
    device_class_name: str = DRA_DRIVER,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pods (not shorthop's) on DRA nodes, each using a ResourceClaim allocated to about
    ``occupancy`` of the node's GPUs, as kube-scheduler would have allocated it: (pods, claims).
    A claim's ``status`` must be written through its status subresource after it is created."""
    rng = random.Random(seed)
    by_node = {s["spec"]["nodeName"]: s for s in resource_slices}
    pods: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []
    for node in node_objects:
        name = node["metadata"]["name"]
        found = by_node.get(name)
        if not is_dra(node) or found is None:
            continue
        free = [d["name"] for d in found["spec"]["devices"]]
        rng.shuffle(free)
        taken = sum(1 for _ in free if rng.random() < occupancy)
        while taken > 0:
            size = min(taken, rng.choice((1, 2, 4, 8)))
            chosen, free = sorted(free[:size]), free[size:]
            taken -= size
            pod_name = f"bg-{name}-{len(pods)}"
            claim = {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": f"{pod_name}-gpu", "namespace": namespace},
                "spec": {
                    "devices": {
                        "requests": [
                            {
                                "name": "gpu",
                                "exactly": {"deviceClassName": device_class_name, "count": size},
                            }
                        ]
                    }
                },
                "status": {
                    "allocation": {
                        "devices": {
                            "results": [
                                {
                                    "request": "gpu",
                                    "driver": found["spec"]["driver"],
                                    "pool": found["spec"]["pool"]["name"],
                                    "device": device,
                                }
                                for device in chosen
                            ]
                        },
                        "nodeSelector": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {"key": "metadata.name", "operator": "In", "values": [name]}
                                    ]
                                }
                            ]
                        },
                    }
                },
            }
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "labels": {"app": "background"},
                },
                "spec": {
                    "nodeName": name,
                    "resourceClaims": [{"name": "gpu", "resourceClaimName": f"{pod_name}-gpu"}],
                    "containers": [
                        {
                            "name": "work",
                            "image": "registry.invalid/train:1",
                            "resources": {"claims": [{"name": "gpu"}]},
                        }
                    ],
                },
                "status": {"phase": "Running"},
            }
            claims.append(claim)
            pods.append(pod)
    return pods, claims


def as_list(objects: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Wrap objects the way ``kubectl get ... -o yaml`` prints them."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": list(objects),
    }


def topologies(
    node_objects: Iterable[Mapping[str, Any]], config: TopologyConfig = CONFIG
) -> list[labels.NodeTopology]:
    """Parse manifests into topologies (nodes left out by the parser are skipped)."""
    parsed = (labels.parse_node(n, config) for n in node_objects)
    return [p.topology for p in parsed if p.topology is not None]


def hgx_cluster(nodes: int = 4, *, product: str = "h100") -> list[dict[str, Any]]:
    """A single scalable unit of ``nodes`` HGX nodes (handy in examples and tests)."""
    return _nodes(ClusterShape(hgx_units=1, nodes_per_unit=nodes, hgx_product=product))


_nodes = nodes  # hgx_cluster's parameter shadows the function's name

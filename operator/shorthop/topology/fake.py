"""Fake GPU clusters: Node manifests with realistic GPU Feature Discovery and network labels.

Shapes: GB200 NVL72 racks (18 compute trays x 4 GPUs, one ``gpu.clique`` per rack), HGX 8-GPU
nodes (H100, H200, A100) in rail-optimised scalable units, and L40S PCIe nodes; any mix. Every
node gets ``kubernetes.io/hostname``, GFD labels, ``nvidia.com/gpu`` capacity/allocatable, a Ready
condition, the kwok annotation (so kwok keeps it Ready), and network labels in the chosen preset.
Optionally background pods occupy GPUs. Used by tests, e2e, benchmarks, the demo and
``shorthop fake-cluster``. Deterministic for a given seed.

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


PRODUCTS: dict[str, Product] = {
    "gb200": Product("NVIDIA-GB200", "blackwell", 189471, "GB200-NVL72-Compute-Tray", 4),
    "h100": Product("NVIDIA-H100-80GB-HBM3", "hopper", 81559, "NVIDIA-DGX-H100", 8),
    "h200": Product("NVIDIA-H200", "hopper", 143771, "NVIDIA-HGX-H200", 8),
    "a100": Product("NVIDIA-A100-SXM4-80GB", "ampere", 81920, "NVIDIA-DGX-A100", 8),
    "l40s": Product("NVIDIA-L40S", "ada-lovelace", 46068, "SYS-421GE-TNRT", 4),
}


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


def _node(
    name: str, product: Product, chain: tuple[str, ...], config: TopologyConfig, clique: str | None
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
                _node(f"nvl72-r{rack}-t{tray:02d}", PRODUCTS["gb200"], chain(), config, clique)
            )
        unit += 1
    hgx = PRODUCTS[shape.hgx_product]
    for su in range(shape.hgx_units):
        for n in range(shape.nodes_per_unit):
            out.append(_node(f"{shape.hgx_product}-su{su}-n{n:02d}", hgx, chain(), config, None))
        unit += 1
    for n in range(shape.l40s_nodes):
        if n and n % shape.l40s_per_rack == 0:
            unit += 1
        out.append(_node(f"l40s-n{n:02d}", PRODUCTS["l40s"], chain(), config, None))
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

"""Network hierarchy configuration: which node labels name a node's place in the network.

A :class:`TopologyConfig` is an ordered list of :class:`NetworkLevel` (coarse to fine), the label
keys that name a node's multi-node NVLink domain, and the :class:`~shorthop.topology.links.Weights`.
Named presets cover the label schemes in use (NVIDIA topograph, AWS, GKE, OCI, and a plain
zone + rack scheme). Callers: ``labels`` (reads the keys), ``graph``/``index`` (levels, weights),
the operator's settings and the CLI (``--preset``).

Tier names (**contract**): ``same-node-nvlink``, ``same-node-pcie``, ``nvlink-domain``, then one
tier per configured level from fine to coarse (e.g. ``rack``, ``block``, ``zone``), then
``cluster``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shorthop.errors import ConfigError
from shorthop.topology.links import Weights

SAME_NODE_NVLINK = "same-node-nvlink"
SAME_NODE_PCIE = "same-node-pcie"
NVLINK_DOMAIN = "nvlink-domain"
CLUSTER = "cluster"
FIXED_TIERS = (SAME_NODE_NVLINK, SAME_NODE_PCIE, NVLINK_DOMAIN, CLUSTER)

GFD_CLIQUE = "nvidia.com/gpu.clique"
_LEVEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class NetworkLevel:
    """One level of the network hierarchy; the first of ``keys`` present on a node wins."""

    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TopologyConfig:
    """How to read a cluster's topology from its node labels."""

    preset: str
    levels: tuple[NetworkLevel, ...]
    nvlink_domain_keys: tuple[str, ...] = (GFD_CLIQUE,)
    weights: Weights = field(default_factory=Weights)

    def __post_init__(self) -> None:
        names = [level.name for level in self.levels]
        for i, name in enumerate(names):
            where = f"topology.levels[{i}].name"
            if not _LEVEL_NAME.match(name):
                raise ConfigError(where, f"{name!r} must be a lowercase DNS label such as 'rack'")
            if name in FIXED_TIERS:
                raise ConfigError(where, f"{name!r} is a reserved tier name; pick another")
            if names.count(name) > 1:
                raise ConfigError(where, f"{name!r} appears twice; level names must be unique")
            if not self.levels[i].keys:
                raise ConfigError(f"topology.levels[{i}].keys", "needs at least one label key")
        self.weights.validate(len(self.levels))

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(level.name for level in self.levels)

    @property
    def tiers(self) -> tuple[str, ...]:
        """All tier names, closest first."""
        return (
            SAME_NODE_NVLINK,
            SAME_NODE_PCIE,
            NVLINK_DOMAIN,
            *reversed(self.level_names),
            CLUSTER,
        )


def _topograph_levels() -> tuple[NetworkLevel, ...]:
    # v1 labels (fabric.topograph.run/tier-N, closest first) win over the older
    # network.topology.nvidia.com/{leaf|block,spine,core} ones when both are present.
    return (
        NetworkLevel("core", ("fabric.topograph.run/tier-2", "network.topology.nvidia.com/core")),
        NetworkLevel("spine", ("fabric.topograph.run/tier-1", "network.topology.nvidia.com/spine")),
        NetworkLevel(
            "leaf",
            (
                "fabric.topograph.run/tier-0",
                "network.topology.nvidia.com/leaf",
                "network.topology.nvidia.com/block",
            ),
        ),
    )


PRESETS: dict[str, TopologyConfig] = {
    "topograph": TopologyConfig(
        preset="topograph",
        levels=_topograph_levels(),
        nvlink_domain_keys=(
            "accelerator.topograph.run/domain",
            "network.topology.nvidia.com/accelerator",
            GFD_CLIQUE,
        ),
    ),
    "aws": TopologyConfig(
        preset="aws",
        levels=(
            NetworkLevel("layer-1", ("topology.k8s.aws/network-node-layer-1",)),
            NetworkLevel("layer-2", ("topology.k8s.aws/network-node-layer-2",)),
            NetworkLevel("layer-3", ("topology.k8s.aws/network-node-layer-3",)),
        ),
        nvlink_domain_keys=("topology.k8s.aws/ultraserver-id", GFD_CLIQUE),
    ),
    "gke": TopologyConfig(
        preset="gke",
        levels=(
            NetworkLevel("block", ("cloud.google.com/gce-topology-block",)),
            NetworkLevel("subblock", ("cloud.google.com/gce-topology-subblock",)),
            NetworkLevel("host", ("cloud.google.com/gce-topology-host",)),
        ),
    ),
    "oci": TopologyConfig(
        preset="oci",
        levels=(
            NetworkLevel("hpc-island", ("oci.oraclecloud.com/rdma.hpc_island_id",)),
            NetworkLevel("network-block", ("oci.oraclecloud.com/rdma.network_block_id",)),
            NetworkLevel("local-block", ("oci.oraclecloud.com/rdma.local_block_id",)),
        ),
    ),
    "plain": TopologyConfig(
        preset="plain",
        levels=(
            NetworkLevel("zone", ("topology.kubernetes.io/zone",)),
            NetworkLevel("block", ("topology.shorthop.io/block",)),
            NetworkLevel("rack", ("topology.shorthop.io/rack",)),
        ),
    ),
}
DEFAULT_PRESET = "plain"


def preset(name: str) -> TopologyConfig:
    """The named preset, or a :class:`ConfigError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            "topology.preset",
            f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}",
        ) from None


def custom(
    levels: list[tuple[str, list[str]]], nvlink_domain_keys: list[str] | None = None
) -> TopologyConfig:
    """A configuration from explicit ``(name, [label keys])`` levels, coarse to fine."""
    return TopologyConfig(
        preset="custom",
        levels=tuple(NetworkLevel(name, tuple(keys)) for name, keys in levels),
        nvlink_domain_keys=tuple(nvlink_domain_keys or (GFD_CLIQUE,)),
    )

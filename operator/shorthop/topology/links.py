"""Link kinds and their weights: the numbers behind "hop distance".

Every edge of the topology graph has a :class:`LinkKind`; :class:`Weights` turns a kind into an
integer weight. Weights are integers so that distances from the O(1) index and from NetworkX's
shortest paths can be compared exactly. Callers: ``intranode`` (edge kinds inside a node),
``graph`` and ``index`` (weights), the operator's settings (overrides).

Default weights follow bandwidth (lower = closer); pair distances they produce:

==========================================  ==========  ============================================
pair of GPUs                                 distance    path
==========================================  ==========  ============================================
NVLink bond (``NV#``)                        10          direct edge ``nvlink``
through the node's NVSwitch                  10          2 x ``nvswitch``
across trays of one NVLink domain (NVL72)    10          2 x ``nvlink_domain`` (NVLink5 >= NVSwitch)
one PCIe switch (``PIX``)                    20          ``pix``
several PCIe bridges (``PXB``)               30          ``pxb``
through the host bridge (``PHB``)            40          ``phb``
host bridges of one NUMA node (``NODE``)     50          ``node`` (= 2 x ``numa``)
across CPU sockets (``SYS``)                 80          ``sys`` (= 2 x ``numa`` + ``socket``)
other node, same finest network domain       200         2 x (``nic`` + ``host_uplink``)
one level up each time                       x2          network uplinks double per level
==========================================  ==========  ============================================
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from shorthop.errors import ConfigError


class LinkKind(StrEnum):
    """What an edge of the topology graph is."""

    NVLINK = "nvlink"  # direct NV# bond between two GPUs
    NVSWITCH = "nvswitch"  # GPU to the node's NVSwitch fabric
    NVLINK_DOMAIN = "nvlink-domain"  # GPU to a multi-node NVLink fabric (gpu.clique)
    PIX = "pix"
    PXB = "pxb"
    PHB = "phb"
    NODE = "node"  # pair across PCIe host bridges of one NUMA node
    SYS = "sys"  # pair across the SMP interconnect
    NUMA = "numa"  # GPU to its NUMA node (CPU socket)
    SOCKET = "socket"  # NUMA node to NUMA node
    NIC = "nic"  # GPU to the node's network endpoint (when NICs are unknown)
    NIC_HOST = "nic-host"  # a known NIC to the node's network endpoint
    NETWORK = "network"  # host to switch, switch to switch


NVLINK_KINDS = frozenset({LinkKind.NVLINK, LinkKind.NVSWITCH, LinkKind.NVLINK_DOMAIN})


@dataclass(frozen=True, slots=True)
class Weights:
    """Integer edge weights per link kind, and the network's uplink weights.

    ``uplinks`` holds, coarse to fine, the weight of the edge from each network level's switch to
    its parent (the coarsest level's parent is the cluster root). Empty means "double per level,
    starting from ``finest_uplink`` at the finest level".
    """

    nvlink: int = 10
    nvswitch: int = 5
    nvlink_domain: int = 5
    pix: int = 20
    pxb: int = 30
    phb: int = 40
    node: int = 50
    sys: int = 80
    numa: int = 25
    socket: int = 30
    nic: int = 50
    nic_host: int = 30
    host_uplink: int = 50
    finest_uplink: int = 100
    uplinks: tuple[int, ...] = ()

    def of(self, kind: LinkKind) -> int:
        """The weight of one edge of ``kind`` (``NETWORK`` edges are weighted by the graph)."""
        return int(getattr(self, kind.value.replace("-", "_")))

    def uplinks_for(self, levels: int) -> tuple[int, ...]:
        """Uplink weights for ``levels`` network levels, coarse to fine."""
        if self.uplinks:
            if len(self.uplinks) != levels:
                raise ConfigError(
                    "weights.uplinks",
                    f"has {len(self.uplinks)} entries but {levels} network levels are configured; "
                    "give one weight per level (coarse to fine) or leave it empty",
                )
            return self.uplinks
        return tuple(self.finest_uplink * 2 ** (levels - 1 - k) for k in range(levels))

    def pair_distances(self, levels: int) -> list[tuple[str, int]]:
        """The documented pair distances, closest first (used to check the order holds)."""
        same_leaf = 2 * (self.nic + self.host_uplink)
        chain = [
            ("NVLink (nvlink, 2*nvswitch, 2*nvlink_domain)", max(self.nvlink, 2 * self.nvswitch,
                                                                2 * self.nvlink_domain)),
            ("PCIe same switch (pix)", self.pix),
            ("PCIe bridges (pxb)", self.pxb),
            ("PCIe host bridge (phb)", self.phb),
            ("NUMA node (node)", self.node),
            ("CPU sockets (sys)", self.sys),
            ("same finest network domain (2*(nic+host_uplink))", same_leaf),
        ]  # fmt: skip
        total = same_leaf
        for k, weight in enumerate(reversed(self.uplinks_for(levels))):
            total += 2 * weight
            chain.append((f"network level {levels - 1 - k} uplink", total))
        return chain

    def validate(self, levels: int) -> None:
        """Raise :class:`ConfigError` unless weights are positive and distances follow bandwidth."""
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                    raise ConfigError(f"weights.{f.name}", f"must be a positive integer, got {v!r}")
        chain = self.pair_distances(levels)
        for (closer, a), (farther, b) in itertools.pairwise(chain):
            if not a < b:
                raise ConfigError(
                    "weights",
                    f"distances must grow as bandwidth falls, but {closer} = {a} is not less than "
                    f"{farther} = {b}; raise the latter or lower the former",
                )

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Weights:
        """Defaults overridden by ``data`` (e.g. a ConfigMap's ``weights:`` block)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"weights.{unknown[0]}",
                f"is not a weight; known weights: {', '.join(sorted(known))}",
            )
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return replace(cls(), **values)

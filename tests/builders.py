"""Fixture builders shared by tests: node topologies, configs, hypothesis strategies."""

from __future__ import annotations

from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from shorthop.topology import intranode
from shorthop.topology.labels import NodeTopology
from shorthop.topology.levels import NetworkLevel, TopologyConfig
from shorthop.topology.links import LinkKind, Weights

LEVEL_NAMES = ("zone", "block", "rack")
PAIR_KINDS = (
    LinkKind.NVLINK,
    LinkKind.PIX,
    LinkKind.PXB,
    LinkKind.PHB,
    LinkKind.NODE,
    LinkKind.SYS,
)
NIC_KINDS = (LinkKind.PIX, LinkKind.PXB, LinkKind.PHB, LinkKind.NODE, LinkKind.SYS)


def topology(
    name: str,
    model: intranode.IntraNodeModel | None = None,
    *,
    clique: str | None = None,
    chain: tuple[str | None, ...] = ("z", "b", "r"),
) -> NodeTopology:
    model = model or intranode.nvswitch_model(8)
    return NodeTopology(
        name=name, product="test", gpus=model.gpus, model=model, clique=clique, chain=chain
    )


def config(levels: int = 3, weights: Weights | None = None) -> TopologyConfig:
    names = LEVEL_NAMES[3 - levels :]
    return TopologyConfig(
        preset="test",
        levels=tuple(NetworkLevel(n, (f"test/{n}",)) for n in names),
        weights=weights or Weights(),
    )


@st.composite
def weights(draw: Any, levels: int) -> Weights:
    """Random weights that still pass Weights.validate (distances follow bandwidth)."""
    half = draw(st.integers(1, 10))
    chain = sorted(
        draw(st.lists(st.integers(2 * half + 1, 400), min_size=5, max_size=5, unique=True))
    )
    pix, pxb, phb, node, sys_ = chain
    nic = draw(st.integers(1, 300))
    host_uplink = draw(st.integers(max(1, sys_ // 2 - nic + 1), 400))
    w = Weights(
        nvlink=draw(st.integers(1, 2 * half)),
        nvswitch=draw(st.integers(1, half)),
        nvlink_domain=draw(st.integers(1, half)),
        pix=pix,
        pxb=pxb,
        phb=phb,
        node=node,
        sys=sys_,
        numa=draw(st.integers(1, 200)),
        socket=draw(st.integers(1, 200)),
        nic=nic,
        nic_host=draw(st.integers(1, 200)),
        host_uplink=host_uplink,
        uplinks=tuple(draw(st.lists(st.integers(1, 500), min_size=levels, max_size=levels))),
    )
    try:
        w.validate(levels)
    except Exception:
        assume(False)
    return w


@st.composite
def matrix_models(draw: Any) -> intranode.IntraNodeModel:
    """A random nvidia-smi-like model: any pair relation, maybe NUMA info, maybe NICs."""
    g = draw(st.integers(1, 6))
    pairs = tuple(
        (i, j, draw(st.sampled_from(PAIR_KINDS))) for i in range(g) for j in range(i + 1, g)
    )
    numa = draw(st.none() | st.lists(st.integers(0, 1), min_size=g, max_size=g).map(tuple))
    nics = tuple(
        draw(
            st.lists(
                st.lists(st.sampled_from(NIC_KINDS), min_size=g, max_size=g).map(tuple), max_size=2
            )
        )
    )
    return intranode.IntraNodeModel("nvidia-smi", g, pairs=pairs, numa=numa, nics=nics)


def models() -> st.SearchStrategy[intranode.IntraNodeModel]:
    sizes = st.integers(1, 8)
    return st.one_of(
        sizes.map(intranode.nvswitch_model),
        st.integers(1, 4).map(intranode.nvl_tray_model),
        sizes.map(intranode.pcie_model),
        st.integers(2, 6).map(lambda g: intranode.pcie_model(g, tuple(i % 2 for i in range(g)))),
        st.just(intranode.dgx1_model()),
        matrix_models(),
    )


@st.composite
def clusters(draw: Any, max_nodes: int = 7) -> tuple[TopologyConfig, list[NodeTopology]]:
    """A random mixed cluster: random levels, weights, node models, cliques and labels."""
    levels = draw(st.integers(0, 3))
    cfg = config(levels, draw(weights(levels)))
    values = st.sampled_from([None, "a", "b"])
    n = draw(st.integers(1, max_nodes))
    nodes = [
        NodeTopology(
            name=f"n{i}",
            product="test",
            gpus=(model := draw(models())).gpus,
            model=model,
            clique=draw(st.sampled_from([None, None, "k1", "k2"])),
            chain=tuple(draw(values) for _ in range(levels)),
        )
        for i in range(n)
    ]
    return cfg, nodes

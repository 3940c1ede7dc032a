"""The cluster's GPU interconnect as a NetworkX graph: the faithful, slow model.

Vertices are tuples whose first element is the type: ``("gpu", node, i)``, ``("nvswitch", node)``,
``("numa", node, k)``, ``("nic", node, k)``, ``("host", node)``, ``("nvdomain", clique)`` (the
multi-node NVLink fabric of a ``gpu.clique``), ``("switch", level, path)`` (one per network domain
per level, ``path`` the domain's values from the coarsest level down) and ``("cluster",)``.
Every edge has a ``kind`` (:class:`~shorthop.topology.links.LinkKind`) and an integer ``weight``;
hop distance is the weighted shortest-path length. ``index`` must agree with this graph exactly
(property-tested). Callers: tests, benchmarks, the NetworkX reference placer.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from shorthop.topology import domains
from shorthop.topology.labels import NodeTopology
from shorthop.topology.levels import TopologyConfig
from shorthop.topology.links import NVLINK_KINDS, LinkKind

Vertex = tuple[object, ...]
CLUSTER_VERTEX: Vertex = ("cluster",)


def gpu(node: str, index: int) -> Vertex:
    return ("gpu", node, index)


def add_node(g: nx.Graph, topo: NodeTopology, config: TopologyConfig, chain: domains.Chain) -> None:
    """Add one node's vertices and edges, and its uplink into the network tree."""
    w = config.weights
    model, name = topo.model, topo.name
    host: Vertex = ("host", name)
    g.add_node(host, type="host", node=name)
    for i in range(model.gpus):
        g.add_node(gpu(name, i), type="gpu", node=name, index=i)
    for i, j, kind in model.pairs:
        g.add_edge(gpu(name, i), gpu(name, j), kind=kind, weight=w.of(kind))
    if model.nvswitch:
        switch: Vertex = ("nvswitch", name)
        g.add_node(switch, type="nvswitch", node=name)
        for i in range(model.gpus):
            g.add_edge(gpu(name, i), switch, kind=LinkKind.NVSWITCH, weight=w.nvswitch)
    if model.numa is not None:
        sockets = sorted(set(model.numa))
        for k in sockets:
            g.add_node(("numa", name, k), type="numa", node=name)
        for i, k in enumerate(model.numa):
            g.add_edge(gpu(name, i), ("numa", name, k), kind=LinkKind.NUMA, weight=w.numa)
        for a in sockets:
            for b in sockets:
                if a < b:
                    g.add_edge(
                        ("numa", name, a), ("numa", name, b), kind=LinkKind.SOCKET, weight=w.socket
                    )
    if model.nics:
        for k, relations in enumerate(model.nics):
            nic: Vertex = ("nic", name, k)
            g.add_node(nic, type="nic", node=name)
            g.add_edge(nic, host, kind=LinkKind.NIC_HOST, weight=w.nic_host)
            for i, kind in enumerate(relations):
                g.add_edge(gpu(name, i), nic, kind=kind, weight=w.of(kind))
    else:
        for i in range(model.gpus):
            g.add_edge(gpu(name, i), host, kind=LinkKind.NIC, weight=w.nic)
    if topo.clique is not None:
        fabric: Vertex = ("nvdomain", topo.clique)
        g.add_node(fabric, type="nvdomain", clique=topo.clique)
        for i in range(model.gpus):
            g.add_edge(gpu(name, i), fabric, kind=LinkKind.NVLINK_DOMAIN, weight=w.nvlink_domain)
    _attach_to_network(g, host, chain, config)


def _attach_to_network(
    g: nx.Graph, host: Vertex, chain: domains.Chain, config: TopologyConfig
) -> None:
    uplinks = config.weights.uplinks_for(len(config.levels))
    depth = len(chain)
    # A node missing its finer levels pays their uplinks on its own edge (see domains.trim).
    weight = config.weights.host_uplink + sum(uplinks[depth:])
    parent = _switch(g, config, chain, uplinks) if depth else CLUSTER_VERTEX
    g.add_node(CLUSTER_VERTEX, type="cluster")
    g.add_edge(host, parent, kind=LinkKind.NETWORK, weight=weight)


def _switch(
    g: nx.Graph, config: TopologyConfig, path: domains.Chain, uplinks: tuple[int, ...]
) -> Vertex:
    level = len(path) - 1
    vertex: Vertex = ("switch", level, path)
    if vertex not in g:
        g.add_node(vertex, type="switch", level=config.levels[level].name, path=path)
        parent = _switch(g, config, path[:-1], uplinks) if level else CLUSTER_VERTEX
        g.add_node(CLUSTER_VERTEX, type="cluster")
        g.add_edge(vertex, parent, kind=LinkKind.NETWORK, weight=uplinks[level])
    return vertex


def build_graph(topologies: Iterable[NodeTopology], config: TopologyConfig) -> nx.Graph:
    """The whole cluster as one graph.

    Parameters
    ----------
    topologies : iterable of NodeTopology
        Nodes that were not left out by ``labels.parse_node``.
    config : TopologyConfig

    Returns
    -------
    networkx.Graph

    Notes
    -----
    O(nodes x GPUs^2) edges for nodes modelled by pair edges; a 10,000-node cluster takes
    seconds (see ``make bench``), which is why placement uses ``index`` instead.
    """
    nodes = list(topologies)
    chains = domains.effective_chains((t.name, t.clique, t.chain) for t in nodes)
    g = nx.Graph()
    for topo in nodes:
        add_node(g, topo, config, chains[topo.name])
    return g


def nvlink_subgraph(g: nx.Graph) -> nx.Graph:
    """The graph restricted to NVLink edges (NV# bonds, NVSwitch, multi-node NVLink fabric)."""
    return g.edge_subgraph([(u, v) for u, v, kind in g.edges(data="kind") if kind in NVLINK_KINDS])

"""The cluster's GPU interconnect as a NetworkX graph: the faithful, slow model.

Vertices are tuples whose first element is the type: ``("gpu", node, i)``, ``("nvswitch", node)``,
``("numa", node, k)``, ``("nic", node, k)``, ``("host", node)``, ``("nvdomain", clique)`` (the
multi-node NVLink fabric of a ``gpu.clique``), ``("switch", level, path)`` (one per network domain
per level, ``path`` the domain's values from the coarsest level down) and ``("cluster",)``.
Every edge has a ``kind`` (:class:`~shorthop.topology.links.LinkKind`) and an integer ``weight``;
hop distance is the weighted shortest-path length.

The graph is the model; ``index`` is its compiled form. A node's inside is defined once, by
:func:`add_node_links`: the cluster graph adds it per node, and the index compiles each node class's
all-pairs matrices from the same subgraph (:func:`node_graph`), so the two cannot drift; the
network part (switches per level) is compiled into the index's per-level domain ids and uplink sums,
and a property test checks every GPU pair against this graph's shortest paths. Callers: ``index``
(per node class), tests, benchmarks, the NetworkX reference placer. Must not import ``placement``.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from shorthop.topology import domains
from shorthop.topology.intranode import IntraNodeModel
from shorthop.topology.labels import NodeTopology
from shorthop.topology.levels import TopologyConfig
from shorthop.topology.links import NVLINK_KINDS, LinkKind, Weights

Vertex = tuple[object, ...]
CLUSTER_VERTEX: Vertex = ("cluster",)


CLASS_NODE, CLASS_CLIQUE = "node", "clique"  # names in a node class's own graph (node_graph)


def gpu(node: str, index: int) -> Vertex:
    return ("gpu", node, index)


def host(node: str) -> Vertex:
    return ("host", node)


def nvdomain(clique: str) -> Vertex:
    return ("nvdomain", clique)


def add_node(g: nx.Graph, topo: NodeTopology, config: TopologyConfig, chain: domains.Chain) -> None:
    """Add one node's vertices and edges, and its uplink into the network tree."""
    endpoint = add_node_links(g, topo.name, topo.model, topo.clique, config.weights)
    _attach_to_network(g, endpoint, chain, config)


def add_node_links(
    g: nx.Graph, name: str, model: IntraNodeModel, clique: str | None, weights: Weights
) -> Vertex:
    """Add the inside of one node: its GPUs, NVSwitch, NUMA nodes, NICs and host, and the edges
    from its GPUs to the multi-node NVLink fabric of ``clique``. Returns the host vertex (where
    the node meets the network). The one definition of a node's graph: the cluster graph and the
    index's per-node-class matrices (:func:`node_graph`) are both built by it."""
    endpoint = host(name)
    g.add_node(endpoint, type="host", node=name)
    for i in range(model.gpus):
        g.add_node(gpu(name, i), type="gpu", node=name, index=i)
    for i, j, kind in model.pairs:
        g.add_edge(gpu(name, i), gpu(name, j), kind=kind, weight=weights.of(kind))
    if model.nvswitch:
        switch: Vertex = ("nvswitch", name)
        g.add_node(switch, type="nvswitch", node=name)
        for i in range(model.gpus):
            g.add_edge(gpu(name, i), switch, kind=LinkKind.NVSWITCH, weight=weights.nvswitch)
    if model.numa is not None:
        sockets = sorted(set(model.numa))
        for k in sockets:
            g.add_node(("numa", name, k), type="numa", node=name)
        for i, k in enumerate(model.numa):
            g.add_edge(gpu(name, i), ("numa", name, k), kind=LinkKind.NUMA, weight=weights.numa)
        for a in sockets:
            for b in sockets:
                if a < b:
                    g.add_edge(
                        ("numa", name, a),
                        ("numa", name, b),
                        kind=LinkKind.SOCKET,
                        weight=weights.socket,
                    )
    if model.nics:
        for k, relations in enumerate(model.nics):
            nic: Vertex = ("nic", name, k)
            g.add_node(nic, type="nic", node=name)
            g.add_edge(nic, endpoint, kind=LinkKind.NIC_HOST, weight=weights.nic_host)
            for i, kind in enumerate(relations):
                g.add_edge(gpu(name, i), nic, kind=kind, weight=weights.of(kind))
    else:
        for i in range(model.gpus):
            g.add_edge(gpu(name, i), endpoint, kind=LinkKind.NIC, weight=weights.nic)
    if clique is not None:
        fabric = nvdomain(clique)
        g.add_node(fabric, type="nvdomain", clique=clique)
        for i in range(model.gpus):
            g.add_edge(
                gpu(name, i), fabric, kind=LinkKind.NVLINK_DOMAIN, weight=weights.nvlink_domain
            )
    return endpoint


def node_graph(model: IntraNodeModel, in_clique: bool, weights: Weights) -> nx.Graph:
    """One node of ``model`` on its own: the subgraph :func:`add_node_links` adds to the cluster
    graph, with the node named :data:`CLASS_NODE` and, when ``in_clique``, the NVLink fabric
    ``nvdomain(CLASS_CLIQUE)``. ``index`` compiles its per-node-class matrices from it.

    Examples
    --------
    >>> from shorthop.topology import intranode, links
    >>> g = node_graph(intranode.pcie_model(2, (0, 1)), False, links.Weights())
    >>> sorted(v[0] for v in g)
    ['gpu', 'gpu', 'host', 'numa', 'numa']
    """
    g = nx.Graph()
    add_node_links(g, CLASS_NODE, model, CLASS_CLIQUE if in_clique else None, weights)
    return g


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
    """A read-only view of ``g`` with only its NVLink edges (NV# bonds, NVSwitch, multi-node
    NVLink fabric). Every vertex stays: one without NVLink edges is unreachable over NVLink."""
    return nx.subgraph_view(g, filter_edge=lambda u, v: g.edges[u, v]["kind"] in NVLINK_KINDS)

"""Cluster topology: node labels -> typed node descriptions -> NetworkX graph -> O(1) index.

``labels`` parses a node's labels (with ``presets``/``levels``, ``intranode`` models and ``smi``
for ``nvidia-smi topo -m``) into a ``NodeTopology``; ``graph`` builds the faithful model, a
NetworkX graph whose edge weights come from ``links``; ``index`` compiles it into flat arrays
(per node class, NetworkX's Floyd-Warshall on that node's subgraph; per network level, dense domain
ids) for O(1) distances and tiers; ``domains`` trims label chains; ``fake`` generates nodes for
tests, benchmarks and ``shorthop fake-cluster``.

Called by ``placement`` (the index), the controller (an incremental ``IndexBuilder``), commands,
tests and benchmarks. The bottom layer: imports nothing from the rest of shorthop but ``errors``;
never kopf, kubernetes or prometheus_client; no I/O.
"""

"""The NetworkX reference: shorthop's objective computed the straightforward way.

This is what a reasonable first implementation looks like when hop distances come from
NetworkX shortest paths on the graph of ``topology.graph.build_graph`` instead of the O(1)
``topology.index``. It is the yardstick of the "≥ 100x faster" target, so it is deliberately
simple but not silly:

- the same greedy idea as the solver's phase 2: replicas one at a time, largest first
  (``-gpus_per_replica, -pod_gpus``, then role and replica id);
- for a replica, **every** node with enough free GPUs for the whole replica is a candidate; on
  each, the GPUs are chosen by enumerating the subsets of its free GPUs and taking the one with the
  least sum of pairwise distances (``nx.shortest_path_length`` with weights, one call per GPU pair);
  the candidate's traffic cost to what the replica talks to that is placed already (its peers
  on ``paired`` edges; every GPU of the other role on ``all-to-all`` edges, weighted
  ``weight / (nS x nT)`` as the objective weighs them) is the weighted sum of distances from each
  chosen GPU to each of those GPUs, read from a **single-source Dijkstra** run from every one of
  them (``nx.single_source_dijkstra_path_length``);
- when no single node fits, the replica is placed pod by pod the same way, each pod also paying
  its distance to the replica's pods already placed;
- the lexicographic key is (intra cost, traffic cost, free GPUs left on the node, row), as in the
  solver; no refinement pass.

Caching is limited to one plan: the pair distances and the per-source Dijkstra results (kept as a
numpy vector over all GPUs) are reused within a plan and dropped after it. The graph itself and
the GPU-vertex numbering are static (built once per node-set, like shorthop's index).

Placement constraints are the solver's: usable nodes (schedulable, taints vs tolerations), free
GPUs, and pod-count headroom. The plan is scored by ``placement.objective`` like every placer;
:attr:`NetworkXReference.graph_cost` keeps the cost this placer computed from the graph itself,
which must equal the objective's (index) cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import combinations

import networkx as nx
import numpy as np
from numpy.typing import NDArray
from shorthop.placement import objective
from shorthop.placement.bitsets import bits
from shorthop.placement.plan import Assignment, Plan, PodKey, Reason
from shorthop.placement.request import Pattern, Request, replica_pairs
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.topology import graph as topo_graph

Vertex = tuple[object, ...]


class ReferenceTimeout(Exception):
    """The reference ran past its deadline; ``elapsed`` is a lower bound on its planning time."""

    def __init__(self, elapsed: float, replicas_done: int) -> None:
        super().__init__(f"stopped after {elapsed:.1f}s with {replicas_done} replicas placed")
        self.elapsed = elapsed
        self.replicas_done = replicas_done


class NetworkXReference:
    """A placer (``placers.Placer``) whose distances come from NetworkX shortest paths."""

    name = "networkx-reference"

    def __init__(self, g: nx.Graph, *, time_limit_s: float | None = None) -> None:
        self.graph = g
        self.time_limit_s = time_limit_s
        gpus = sorted(
            (v for v, kind in g.nodes(data="type") if kind == "gpu"), key=lambda v: (v[1], v[2])
        )
        self.column = {v: i for i, v in enumerate(gpus)}
        self.graph_cost: tuple[int, float] = (0, 0.0)
        self.dijkstra_runs = 0
        self.pair_queries = 0

    # -- distances (cached within one plan) ------------------------------------------------

    def _reset(self) -> None:
        self._pairs: dict[tuple[str, int, int], int] = {}
        self._sources: dict[Vertex, NDArray[np.int64]] = {}
        self.dijkstra_runs = 0
        self.pair_queries = 0

    def _pair(self, node: str, a: int, b: int) -> int:
        """Distance between GPUs ``a`` < ``b`` of one node (one Dijkstra that stops at ``b``)."""
        key = (node, a, b)
        found = self._pairs.get(key)
        if found is None:
            u, v = topo_graph.gpu(node, a), topo_graph.gpu(node, b)
            found = int(nx.shortest_path_length(self.graph, u, v, weight="weight"))
            self._pairs[key] = found
            self.pair_queries += 1
        return found

    def _from(self, source: Vertex) -> NDArray[np.int64]:
        """Distances from ``source`` to every GPU (one Dijkstra over the whole graph)."""
        found = self._sources.get(source)
        if found is None:
            lengths = nx.single_source_dijkstra_path_length(self.graph, source, weight="weight")
            found = np.zeros(len(self.column), dtype=np.int64)
            for v, col in self.column.items():
                found[col] = lengths[v]
            self._sources[source] = found
            self.dijkstra_runs += 1
        return found

    def _to_many(self, sources: Sequence[Vertex], targets: Sequence[Vertex]) -> int:
        if not sources or not targets:
            return 0
        cols = [self.column[t] for t in targets]
        return int(sum(int(self._from(s)[cols].sum()) for s in sources))

    # -- placement -------------------------------------------------------------------------

    def _best_subset(self, node: str, free: int, k: int) -> tuple[int, tuple[int, ...]]:
        best: tuple[int, tuple[int, ...]] | None = None
        for combo in combinations(bits(free), k):
            cost = sum(self._pair(node, a, b) for a, b in combinations(combo, 2))
            if best is None or cost < best[0]:
                best = (cost, combo)
        assert best is not None
        return best

    def place(self, snapshot: ClusterSnapshot, request: Request) -> Plan:
        self._reset()
        deadline = None if self.time_limit_s is None else time.perf_counter() + self.time_limit_s
        started = time.perf_counter()
        idx = snapshot.index
        names = idx.names
        free = [int(m) for m in snapshot.free.tolist()]
        pods_left = [int(h) for h in snapshot.headroom[:, 2].tolist()]
        usable = [snapshot.usable_rows(r.tolerations) for r in request.roles]
        # Peers of each replica (by role index and replica id), as the objective pairs them:
        # paired edges by replica, all-to-all edges by role (weight per GPU pair).
        peers: dict[tuple[int, int], list[tuple[tuple[int, int], float]]] = {}
        ids = {ri: list(range(role.replicas)) for ri, role in enumerate(request.roles)}
        for e, pairs in replica_pairs(request, ids).items():
            edge = request.traffic[e]
            for i, j in pairs:
                a, b = (edge.source, i), (edge.target, j)
                peers.setdefault(a, []).append((b, edge.weight))
                peers.setdefault(b, []).append((a, edge.weight))
        role_partners: dict[int, list[tuple[int, float]]] = {}
        for edge in request.traffic:
            if edge.pattern is Pattern.ALL_TO_ALL:
                n = request.roles[edge.source].replicas * request.roles[edge.target].replicas
                if n:
                    role_partners.setdefault(edge.source, []).append((edge.target, edge.weight / n))
                    role_partners.setdefault(edge.target, []).append((edge.source, edge.weight / n))
        role_placed: dict[int, list[Vertex]] = {}
        keys = [(ri, rid) for ri, role in enumerate(request.roles) for rid in range(role.replicas)]
        keys.sort(
            key=lambda k: (
                -request.roles[k[0]].gpus_per_replica,
                -request.roles[k[0]].pod_gpus,
                k,
            )
        )
        placed: dict[tuple[int, int], list[Vertex]] = {}
        assignments: list[Assignment] = []
        total_intra, total_traffic = 0, 0.0

        for done, key in enumerate(keys):
            ri, rid = key
            role = request.roles[ri]
            peer_gpus = [(placed[p], w) for p, w in peers.get(key, []) if p in placed]
            peer_gpus += [
                (role_placed[other], w)
                for other, w in role_partners.get(ri, [])
                if role_placed.get(other)
            ]
            # A replica on one node when any node can hold it, else pod by pod.
            chunks = (
                [role.pods_per_replica]
                if any(
                    usable[ri][row]
                    and free[row].bit_count() >= role.gpus_per_replica
                    and pods_left[row] >= role.pods_per_replica
                    for row in range(len(free))
                )
                else [1] * role.pods_per_replica
            )
            mine: list[Vertex] = []
            pod = 0
            for pods in chunks:
                k = pods * role.pod_gpus
                best: tuple[int, float, int, int, tuple[int, ...]] | None = None
                for row in range(len(free)):
                    if deadline is not None and time.perf_counter() > deadline:
                        raise ReferenceTimeout(time.perf_counter() - started, done)
                    if not (
                        usable[ri][row] and free[row].bit_count() >= k and pods_left[row] >= pods
                    ):
                        continue
                    intra, gpus = self._best_subset(names[row], free[row], k)
                    targets = [topo_graph.gpu(names[row], g) for g in gpus]
                    intra += self._to_many(mine, targets)
                    traffic = sum(w * self._to_many(vs, targets) for vs, w in peer_gpus)
                    cand = (intra, round(traffic, 6), free[row].bit_count() - k, row, gpus)
                    if best is None or cand < best:
                        best = cand
                if best is None:
                    reason = Reason(
                        "capacity",
                        f"spec.roles[{ri}]",
                        k,
                        0,
                        f"{self.name}: no node has {k} free GPUs "
                        f"for replica {rid} of role {role.name}",
                    )
                    return Plan(False, reasons=(reason,), strategy=self.name)
                intra, traffic, _, row, gpus = best
                total_intra += intra
                total_traffic += traffic
                for g in gpus:
                    free[row] &= ~(1 << g)
                pods_left[row] -= pods
                mine += [topo_graph.gpu(names[row], g) for g in gpus]
                for i in range(pods):
                    share = gpus[i * role.pod_gpus : (i + 1) * role.pod_gpus]
                    assignments.append(
                        Assignment(PodKey(role.name, rid, pod), names[row], row, share)
                    )
                    pod += 1
            placed[key] = mine
            role_placed.setdefault(ri, []).extend(mine)

        self.graph_cost = (total_intra, round(total_traffic, 6))
        ev = objective.evaluate(idx, request, assignments, free_before=snapshot.free)
        return Plan(
            True,
            tuple(sorted(assignments, key=lambda a: a.key)),
            cost=ev.cost,
            tiers=ev.tiers,
            replica_tiers=ev.replica_tiers,
            traffic=ev.edges,
            strategy=self.name,
        )

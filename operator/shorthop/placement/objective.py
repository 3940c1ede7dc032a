"""The objective every placer is judged by, in this order (lexicographic):

1. **intra-replica cost**: for every replica, the sum of hop distances over all pairs of its GPUs
   (tensor/pipeline-parallel traffic stays inside a replica);
2. **traffic cost**: for every traffic edge ``source -> target`` (default prefill -> decode, weight
   1) and every peer pair of replicas (``request.peer_pairs``), ``weight`` x the sum of distances
   over all GPU pairs between the two replicas (the KV cache moves between them);
3. **preferred node affinity** (higher is better): for every pod, the weights of the preferred
   terms of its role's template that its node matches (:func:`preference`); a preference never
   costs a tier or an NVLink pair, it only decides between placements of equal topology cost;
4. **fragmentation**: GPUs left free on the nodes the plan touches, plus a hundredth of those left
   free in the NVLink domains it touches (best fit: fill partly used nodes and domains first,
   keep whole nodes and domains free for large replicas).

Also counts traffic GPU pairs per tier (the plan's ``tiers``) and each replica's widest tier.
Pure; used by the solver, the baselines, the exact solver and the benchmarks alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import subsets
from shorthop.placement.plan import Assignment, Cost
from shorthop.placement.request import Request, peer_pairs
from shorthop.topology.index import TopologyIndex

GpuSet = dict[int, NDArray[np.intp]]  # row -> GPU indices on that node


@dataclass(frozen=True, slots=True)
class Evaluation:
    cost: Cost
    tiers: dict[str, int]
    replica_tiers: dict[tuple[str, int], str]


def gpu_set(placements: Iterable[tuple[int, Sequence[int]]]) -> GpuSet:
    merged: dict[int, list[int]] = defaultdict(list)
    for row, gpus in placements:
        merged[row].extend(gpus)
    return {row: np.array(sorted(g), dtype=np.intp) for row, g in merged.items()}


def internal(index: TopologyIndex, row: int, gpus: NDArray[np.intp]) -> int:
    """Sum of distances over pairs of GPUs on one node: one lookup in the node class's subset
    table (``subsets``) when it has one, else the pairs of the distance matrix."""
    cls = index.node_class(row)
    table = subsets.table(cls)
    if table.exact:
        return int(table.cost[sum(1 << g for g in gpus.tolist())])
    return int(cls.dist[np.ix_(gpus, gpus)].sum()) // 2


def intra_cost(index: TopologyIndex, s: GpuSet) -> int:
    """The intra-replica cost of one replica's GPUs: the sum of distances over all their pairs.

    The one definition, used by the solver while it searches and by :func:`evaluate` after.

    Examples
    --------
    >>> from shorthop.topology import fake, index
    >>> idx = index.build_index(fake.topologies(fake.hgx_cluster(nodes=2)), fake.CONFIG)
    >>> intra_cost(idx, gpu_set([(0, [0, 1]), (1, [0])]))  # one NVLink pair, two across nodes
    410

    Notes
    -----
    O(GPUs) per node (subset table) plus O(GPUs) per pair of nodes (``TopologyIndex.cross_cost``).
    """
    rows = sorted(s)
    total = 0
    for i, a in enumerate(rows):
        total += internal(index, a, s[a])
        for b in rows[i + 1 :]:
            total += index.cross_cost(a, s[a], b, s[b])
    return total


def between_cost(index: TopologyIndex, s: GpuSet, t: GpuSet) -> int:
    """Sum of distances over all pairs (one GPU from each set)."""
    total = 0
    for a, ga in s.items():
        for b, gb in t.items():
            if a == b:
                total += int(index.node_class(a).dist[np.ix_(ga, gb)].sum())
            else:
                total += index.cross_cost(a, ga, b, gb)
    return total


def tier_counts(index: TopologyIndex, s: GpuSet, t: GpuSet, counts: dict[int, int]) -> None:
    """Add the tier of every pair between two sets to ``counts`` (tier index -> pairs)."""
    for a, ga in s.items():
        for b, gb in t.items():
            if a == b:
                nv = index.node_class(a).nvlink[np.ix_(ga, gb)]
                counts[0] = counts.get(0, 0) + int(nv.sum())
                counts[1] = counts.get(1, 0) + int(nv.size - nv.sum())
            else:
                tier = index.node_tier(a, b)
                counts[tier] = counts.get(tier, 0) + len(ga) * len(gb)


def widest_tier(index: TopologyIndex, s: GpuSet) -> int:
    worst = 0
    rows = sorted(s)
    for i, a in enumerate(rows):
        g = s[a]
        if len(g) > 1:
            nv = index.node_class(a).nvlink[np.ix_(g, g)]
            worst = max(worst, 0 if nv.all() else 1)
        for b in rows[i + 1 :]:
            worst = max(worst, index.node_tier(a, b))
    return worst


def replica_sets(assignments: Iterable[Assignment]) -> dict[tuple[str, int], GpuSet]:
    grouped: dict[tuple[str, int], list[tuple[int, Sequence[int]]]] = defaultdict(list)
    for a in assignments:
        grouped[(a.key.role, a.key.replica)].append((a.row, a.gpus))
    return {key: gpu_set(parts) for key, parts in grouped.items()}


def traffic_pairs(
    request: Request, replicas: Mapping[tuple[str, int], GpuSet]
) -> list[tuple[tuple[str, int], tuple[str, int], float]]:
    """Peer replica pairs per traffic edge, by replica rank."""
    by_role: dict[str, list[int]] = defaultdict(list)
    for role, replica in replicas:
        by_role[role].append(replica)
    out = []
    for edge in request.traffic:
        source, target = request.roles[edge.source].name, request.roles[edge.target].name
        s_ids, t_ids = sorted(by_role.get(source, [])), sorted(by_role.get(target, []))
        for i, j in peer_pairs(len(s_ids), len(t_ids)):
            out.append(((source, s_ids[i]), (target, t_ids[j]), edge.weight))
    return out


def fragmentation(
    index: TopologyIndex, free_before: NDArray[np.uint64], assignments: Iterable[Assignment]
) -> float:
    used: dict[int, int] = defaultdict(int)
    for a in assignments:
        for g in a.gpus:
            used[a.row] |= 1 << g
    node_left = sum((int(free_before[r]) & ~m).bit_count() for r, m in used.items())
    cliques = {int(index.clique_of[r]) for r in used} - {-1}
    clique_left = 0
    if cliques:
        for r in np.flatnonzero(np.isin(index.clique_of, list(cliques))):
            clique_left += (int(free_before[r]) & ~used.get(int(r), 0)).bit_count()
    return node_left + clique_left / 100


def preference(
    request: Request,
    assignments: Iterable[Assignment],
    scores: Sequence[NDArray[np.int64] | None],
) -> int:
    """The preferred node affinity weight of a plan: ``scores[role][row]`` summed over its pods
    (``scores`` per role index, from ``filters.RoleFilter.preference``; None: no preferences)."""
    index = {r.name: i for i, r in enumerate(request.roles)}
    total = 0
    for a in assignments:
        found = scores[index[a.key.role]] if a.key.role in index else None
        if found is not None:
            total += int(found[a.row])
    return total


def evaluate(
    index: TopologyIndex,
    request: Request,
    assignments: Sequence[Assignment],
    *,
    free_before: NDArray[np.uint64] | None = None,
) -> Evaluation:
    """Cost, traffic tiers and replica tiers of a set of assignments."""
    replicas = replica_sets(assignments)
    intra = {key: intra_cost(index, s) for key, s in replicas.items()}
    traffic = 0.0
    counts: dict[int, int] = {}
    for a, b, weight in traffic_pairs(request, replicas):
        traffic += weight * between_cost(index, replicas[a], replicas[b])
        tier_counts(index, replicas[a], replicas[b], counts)
    frag = fragmentation(index, free_before, assignments) if free_before is not None else 0.0
    tiers = {index.tiers[t]: n for t, n in sorted(counts.items()) if n}
    widest = {key: index.tiers[widest_tier(index, s)] for key, s in replicas.items()}
    return Evaluation(Cost(sum(intra.values()), traffic, frag), tiers, widest)

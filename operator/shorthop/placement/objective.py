"""The objective every placer is judged by, in this order (lexicographic):

1. **intra-replica cost**: for every replica, the sum of hop distances over all unordered pairs of
   its GPUs (tensor/pipeline-parallel traffic stays inside a replica);
2. **traffic cost**: the sum over the traffic edges ``source -> target`` (default prefill ->
   decode, weight 1) of each edge's cost, by its pattern (``request.Pattern``):

   - ``all-to-all`` (default): ``weight`` x the **mean**, over every (source replica, target
     replica) pair, of the sum of hop distances over all pairs (one GPU of each replica). With
     ``S`` and ``T`` the GPUs of all source and all target replicas and ``nS``, ``nT`` the numbers
     of replicas, that is ``weight x sum(d(a, b) for a in S for b in T) / (nS x nT)``; 0 when a
     role has no replica;
   - ``paired``: ``weight`` x the **sum**, over the peer pairs of the edge
     (``request.replica_pairs``: each replica of the larger role has one peer, pairs made before
     are kept), of the sum of hop distances over all pairs of their GPUs;

   several edges (also between the same two roles) add up;
3. **preferred node affinity** (higher is better): for every pod, the weights of the preferred
   terms of its role's template that its node matches (:func:`preference`); a preference never
   costs a tier or an NVLink pair, it only decides between placements of equal topology cost;
4. **fragmentation** (:func:`fragmentation`): only breaks ties between plans equal in 1 to 3.

Replica counts are those of the placement scored (a complete plan: the spec's). Traffic *tiers*
follow the same definition: for an ``all-to-all`` edge, the GPU pairs of every (source replica,
target replica) pair, i.e. every pair of a source GPU and a target GPU; for a ``paired`` edge,
the GPU pairs of its peer pairs; the plan's ``tiers`` add them over edges. Sums over all pairs
are computed per node and rolled up the domain tree (``pairsums``), never pair by pair.

Pure; used by the solver, the baselines, the exact solver, the status and the benchmarks alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import pairsums, subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.plan import Assignment, Cost, EdgeTraffic
from shorthop.placement.request import Pattern, Request, replica_pairs
from shorthop.topology.index import TopologyIndex

GpuSet = dict[int, NDArray[np.intp]]  # row -> GPU indices on that node
Replica = tuple[str, int]  # (role name, replica id)


@dataclass(frozen=True, slots=True)
class Evaluation:
    cost: Cost
    tiers: dict[str, int]
    replica_tiers: dict[tuple[str, int], str]
    edges: tuple[EdgeTraffic, ...] = field(default_factory=tuple)


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


def mass_of(index: TopologyIndex, s: GpuSet) -> pairsums.Mass:
    return pairsums.mass(index, {row: _mask(g) for row, g in s.items()})


def _mask(gpus: NDArray[np.intp] | Sequence[int]) -> int:
    m = 0
    for g in np.asarray(gpus).tolist():
        m |= 1 << int(g)
    return m


SMALL_PAIRS = 16  # node pairs below which summing node pair by node pair is cheaper


def between_cost(index: TopologyIndex, s: GpuSet, t: GpuSet) -> int:
    """Sum of distances over all pairs (one GPU from each set; the sets share no GPU): node pair
    by node pair for small sets, by per-domain sums (``pairsums``) for large ones."""
    if len(s) * len(t) > SMALL_PAIRS:
        return pairsums.pair_sums(index, mass_of(index, s), mass_of(index, t))[0]
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
    _, tiers = pairsums.pair_sums(index, mass_of(index, s), mass_of(index, t))
    for tier in np.flatnonzero(tiers).tolist():
        counts[tier] = counts.get(tier, 0) + int(tiers[tier])


def widest_tier(index: TopologyIndex, s: GpuSet) -> int:
    worst = 0
    rows = sorted(s)
    for i, a in enumerate(rows):
        g = s[a]
        if len(g) > 1 and worst < 1:
            worst = max(worst, 0 if _all_nvlink(index, a, g) else 1)
        for b in rows[i + 1 :]:
            worst = max(worst, index.node_tier(a, b))
    return worst


def _all_nvlink(index: TopologyIndex, row: int, gpus: NDArray[np.intp]) -> bool:
    """Whether every pair of ``gpus`` on ``row`` is linked by NVLink alone: one lookup in the
    class's NVLink-only subset table (a subset with a pair that is not costs ``INF`` there)."""
    cls = index.node_class(row)
    table = subsets.table(cls, True)
    if table.exact:
        return bool(table.cost[_mask(gpus)] < subsets.INF)
    return bool(cls.nvlink[np.ix_(gpus, gpus)].all())


def replica_sets(assignments: Iterable[Assignment]) -> dict[tuple[str, int], GpuSet]:
    grouped: dict[tuple[str, int], list[tuple[int, Sequence[int]]]] = defaultdict(list)
    for a in assignments:
        grouped[(a.key.role, a.key.replica)].append((a.row, a.gpus))
    return {key: gpu_set(parts) for key, parts in grouped.items()}


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


def _merged(sets: Iterable[GpuSet]) -> GpuSet:
    rows: dict[int, list[NDArray[np.intp]]] = defaultdict(list)
    for s in sets:
        for row, gpus in s.items():
            rows[row].append(gpus)
    return {row: np.sort(np.concatenate(parts)) for row, parts in rows.items()}


def _home(index: TopologyIndex, s: GpuSet) -> tuple[int, int]:
    """(layer, vertex) of the lowest domain holding every GPU of ``s`` (a node: its row)."""
    tree = domain_tree.tree(index)
    rows = sorted(s)
    if len(rows) == 1:
        return 0, rows[0]
    for layer in range(1, tree.ancestor_at.shape[0]):
        anc = tree.ancestor_at[layer, rows]
        if anc[0] >= 0 and (anc == anc[0]).all():
            return layer, int(anc[0])
    return int(tree.layer[tree.root]), tree.root


def _replica_pair_tiers(
    index: TopologyIndex, sources: Sequence[GpuSet], targets: Sequence[GpuSet]
) -> NDArray[np.int64]:
    """Per tier: how many (source, target) replica pairs have it as their widest tier, counted
    through each replica's lowest common domain (pairs inside one node GPU by GPU)."""
    tree = domain_tree.tree(index)
    out = np.zeros(len(index.tiers), dtype=np.int64)
    if not sources or not targets:
        return out
    homes = [_home(index, s) for s in (*sources, *targets)]
    side = np.array([0] * len(sources) + [1] * len(targets))
    rep = np.array([min(s) for s in (*sources, *targets)], dtype=np.intp)
    layers = np.array([layer for layer, _ in homes])
    # Two replicas both on one node: NVLink-only or not, GPU by GPU.
    on_node: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, (layer, v) in enumerate(homes):
        if layer == 0:
            on_node[v][side[i]].append(i)
    everything = [*sources, *targets]
    before = 0
    for row, (ss, ts) in on_node.items():
        nv = index.node_class(row).nvlink
        for i in ss:
            for j in ts:
                gi, gj = everything[i][row], everything[j][row]
                out[0 if nv[np.ix_(gi, gj)].all() else 1] += 1
                before += 1
    # Per layer, each replica's domain there once its home is at or below it (else a key no
    # other replica shares); pairs joined = sum over domains of sources x targets under it.
    # Plain Python: a deployment has tens of replicas, and these are a few dict updates each.
    n = len(homes)
    unique = [-1 - i for i in range(n)]
    at = layers.tolist()
    sides = side.tolist()
    key = [r if h == 0 else u for r, h, u in zip(rep.tolist(), at, unique, strict=True)]
    for layer in range(1, tree.ancestor_at.shape[0]):
        anc = tree.ancestor_at[layer, rep].tolist()
        key = [
            (v if v >= 0 else k) if h <= layer else u
            for v, k, h, u in zip(anc, key, at, unique, strict=True)
        ]
        counts: dict[int, list[int]] = {}
        for k, sd in zip(key, sides, strict=True):
            counts.setdefault(k, [0, 0])[sd] += 1
        joined = sum(a * b for a, b in counts.values())
        out[tier_of_layer(layer)] += joined - before
        before = joined
    return out


def tier_of_layer(layer: int) -> int:
    """Tier index of pairs whose lowest common domain is at tree ``layer`` (>= 1)."""
    return 2 if layer == domain_tree.CLIQUE_LAYER else layer + 1


def _named(index: TopologyIndex, counts: NDArray[np.int64]) -> dict[str, int]:
    return {index.tiers[t]: int(counts[t]) for t in np.flatnonzero(counts).tolist()}


def edge_traffic(
    index: TopologyIndex, request: Request, replicas: Mapping[Replica, GpuSet]
) -> tuple[EdgeTraffic, ...]:
    """Every traffic edge of ``request`` evaluated on the placed ``replicas`` (see the module
    docstring for the definitions)."""
    names = [r.name for r in request.roles]
    by_role: dict[int, dict[int, GpuSet]] = defaultdict(dict)
    for (role, rid), s in replicas.items():
        if role in names and s:
            by_role[names.index(role)][rid] = s
    ids = {ri: sorted(sets) for ri, sets in by_role.items()}
    pairs_of = replica_pairs(request, ids)
    out = []
    for e, edge in enumerate(request.traffic):
        source, target = by_role.get(edge.source, {}), by_role.get(edge.target, {})
        gpu_counts = np.zeros(len(index.tiers), dtype=np.int64)
        replica_counts = np.zeros(len(index.tiers), dtype=np.int64)
        peers: list[tuple[int, int, str]] = []
        cost = 0.0
        if edge.pattern is Pattern.ALL_TO_ALL:
            if source and target:
                total, gpu_counts = pairsums.pair_sums(
                    index,
                    mass_of(index, _merged(source.values())),
                    mass_of(index, _merged(target.values())),
                )
                cost = edge.weight * total / (len(source) * len(target))
                replica_counts = _replica_pair_tiers(
                    index, list(source.values()), list(target.values())
                )
        else:
            for s_id, t_id in pairs_of[e]:
                a, b = source[s_id], target[t_id]
                total, counts = pairsums.pair_sums(index, mass_of(index, a), mass_of(index, b))
                cost += edge.weight * total
                gpu_counts += counts
                widest = int(np.flatnonzero(counts).max()) if counts.any() else 0
                replica_counts[widest] += 1
                peers.append((s_id, t_id, index.tiers[widest]))
        out.append(
            EdgeTraffic(
                source=names[edge.source],
                target=names[edge.target],
                pattern=edge.pattern.value,
                weight=edge.weight,
                cost=cost,
                gpu_pairs=_named(index, gpu_counts),
                replica_pairs=_named(index, replica_counts),
                peers=tuple(peers),
                source_gpus=request.roles[edge.source].gpus_per_replica,
                target_gpus=request.roles[edge.target].gpus_per_replica,
            )
        )
    return tuple(out)


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
    """Cost, traffic tiers, replica tiers and per-edge traffic of a set of assignments."""
    return evaluate_sets(
        index, request, replica_sets(assignments), assignments, free_before=free_before
    )


def evaluate_sets(
    index: TopologyIndex,
    request: Request,
    replicas: Mapping[Replica, GpuSet],
    assignments: Sequence[Assignment] = (),
    *,
    free_before: NDArray[np.uint64] | None = None,
) -> Evaluation:
    """:func:`evaluate` over replica GPU sets (the status computes them from bound pods);
    ``assignments`` only feed the fragmentation term (with ``free_before``)."""
    intra = sum(intra_cost(index, s) for s in replicas.values() if s)
    edges = edge_traffic(index, request, replicas)
    traffic = sum(e.cost for e in edges)
    counts: dict[str, int] = defaultdict(int)
    for e in edges:
        for tier, n in e.gpu_pairs.items():
            counts[tier] += n
    tiers = {t: counts[t] for t in index.tiers if counts.get(t)}
    frag = fragmentation(index, free_before, assignments) if free_before is not None else 0.0
    widest = {key: index.tiers[widest_tier(index, s)] for key, s in replicas.items() if s}
    return Evaluation(Cost(intra, traffic, frag), tiers, widest, edges)

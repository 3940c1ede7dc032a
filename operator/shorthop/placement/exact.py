"""An exact solver for small instances: depth-first branch and bound over pods.

Every pod is put on a node and a set of that node's free GPUs, one pod after another (a
replica's pods together), and the lexicographic (intra-replica, traffic) cost of ``objective`` is
accumulated GPU pair by GPU pair from ``TopologyIndex.distance``: written independently of the
solver and of ``objective``'s per-domain sums, so the benchmark and the tests compare two
separate computations. A branch is cut when its cost so far plus a lower bound for what is left
(every GPU pair still to come costs at least the cluster's smallest distance) cannot beat the
best plan found. Children are tried cheapest first, so good plans come early.

Symmetries cut without losing optima: the pods of one replica in increasing option order; the
replicas of a role whose traffic is all ``all-to-all`` in increasing order of their first pod;
GPUs of a node that are *twins* (swapping them changes no distance) taken lowest first; and of
several nodes that are interchangeable now (same class, NVLink domain, network domains, free
GPUs, headroom and usability, none of the deployment's pods yet) only the first is tried.

Honours what the solver honours: the nodes each role may use (``filters``: taints, node selector,
node affinity, node name, host ports, also between the plan's own pods), free GPUs, CPU/memory/pod
headroom, each role's ``replicaScope`` and the deployment's required or preferred scope (a
preferred scope that fits nowhere falls back to the cluster). Among plans of equal topology cost
it keeps the one with the most preferred node affinity weight (``objective.preference``), the
third key of the objective; branches are never cut on a tie of the topology cost. Used by tests
and benchmarks; refuses instances whose search space is too large (``ExactTooLarge``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations, product

import numpy as np

from shorthop.errors import ShorthopError
from shorthop.placement import filters, objective, other_resources
from shorthop.placement import tree as domain_tree
from shorthop.placement.bitsets import bits
from shorthop.placement.plan import Assignment, Cost, Plan, PodKey
from shorthop.placement.request import Pattern, Request, replica_pairs
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.topology.index import TopologyIndex

MAX_OPTIONS = 2_000_000
MAX_PODS = 24


class ExactTooLarge(ShorthopError):
    """The instance is too large for exhaustive search."""


def twins(index: TopologyIndex, row: int) -> list[int]:
    """Per GPU of ``row``, the id of its twin class: GPUs ``i`` and ``j`` are twins when swapping
    them changes no distance (to each other GPU of the node, to the network, to the fabric)."""
    cls = index.node_class(row)
    g = cls.gpus
    up = index.up(row)
    label = list(range(g))
    for i in range(g):
        for j in range(i):
            if label[j] != j:
                continue
            others = [k for k in range(g) if k not in (i, j)]
            if (
                up[i] == up[j]
                and cls.fab[i] == cls.fab[j]
                and all(cls.dist[i, k] == cls.dist[j, k] for k in others)
                and all(cls.nvlink[i, k] == cls.nvlink[j, k] for k in others)
            ):
                label[i] = j
                break
    return label


@dataclass
class _Search:
    snapshot: ClusterSnapshot
    request: Request
    rows: list[int]
    pods: list[tuple[int, int, int]]  # (role, replica, pod)
    free: list[int] = field(default_factory=list)
    head: list[list[int]] = field(default_factory=list)
    best: tuple[int, float, int] | None = None  # (intra, traffic, -preference)
    best_choice: list[tuple[int, tuple[int, ...]]] | None = None


def _distance(index: TopologyIndex, ra: int, ga: int, rb: int, gb: int) -> int:
    return index.distance(ra, ga, rb, gb)


def solve(snapshot: ClusterSnapshot, request: Request) -> Plan:
    """The optimum of ``objective`` for ``request`` on ``snapshot`` (infeasible when none).

    Raises
    ------
    ExactTooLarge
        When the instance has more than ``MAX_PODS`` pods or its search space (before cuts) is
        above ``MAX_OPTIONS`` squared.
    """
    index = snapshot.index
    tree = domain_tree.tree(index)
    scope = (
        request.required_scope if request.required_scope is not None else request.preferred_scope
    )
    if scope is not None and tree.layer_of_tier(scope) < int(tree.layer[tree.root]):
        layer = tree.layer_of_tier(scope)
        best: Plan | None = None
        for v in np.flatnonzero(tree.layer == layer).tolist():
            plan = _solve_in(snapshot, request, sorted(tree.rows_under(v)))
            if plan.feasible and (best is None or plan.cost.rank() < best.cost.rank()):
                best = plan
        if best is not None or request.required_scope is not None:
            return best or Plan(False, strategy="exact")
    return _solve_in(snapshot, request, [int(r) for r in np.flatnonzero(index.alive)])


def _solve_in(snapshot: ClusterSnapshot, request: Request, rows: list[int]) -> Plan:
    index = snapshot.index
    tree = domain_tree.tree(index)
    pods = [
        (ri, replica, pod)
        for ri, role in enumerate(request.roles)
        for replica in range(role.replicas)
        for pod in range(role.pods_per_replica)
    ]
    if len(pods) > MAX_PODS:
        raise ExactTooLarge(f"{len(pods)} pods; the exact solver takes at most {MAX_PODS}")
    space = 1
    for ri, _, _ in pods:
        q = request.roles[ri].pod_gpus
        n = sum(len(list(combinations(bits(int(snapshot.free[r])), q))) for r in rows)
        space *= max(1, n)
        if space > MAX_OPTIONS**2:
            raise ExactTooLarge(f"search space above {MAX_OPTIONS}^2 options")
    found = filters.role_filters(snapshot, request)
    usable = [f.usable for f in found]
    scores = [f.preference for f in found]
    ports = filters.PlanPorts(request, len(index.names))
    twin = {r: twins(index, r) for r in rows}
    static = {
        r: (
            int(index.class_of[r]),
            int(index.clique_of[r]),
            tuple(index.dom[r].tolist()),
            tuple(bool(u[r]) for u in usable),
            tuple(int(s[r]) if s is not None else 0 for s in scores),
        )
        for r in rows
    }
    ids = {ri: list(range(role.replicas)) for ri, role in enumerate(request.roles)}
    peers: dict[tuple[int, int], list[tuple[tuple[int, int], float]]] = defaultdict(list)
    for e, pairs in replica_pairs(request, ids).items():
        edge = request.traffic[e]
        for s, t in pairs:
            peers[(edge.source, s)].append(((edge.target, t), edge.weight))
            peers[(edge.target, t)].append(((edge.source, s), edge.weight))
    # all-to-all: weight of one GPU pair between two roles
    role_weight: dict[tuple[int, int], float] = defaultdict(float)
    for edge in request.traffic:
        if edge.pattern is Pattern.ALL_TO_ALL:
            n = request.roles[edge.source].replicas * request.roles[edge.target].replicas
            if n:
                role_weight[(edge.source, edge.target)] += edge.weight / n
                role_weight[(edge.target, edge.source)] += edge.weight / n
    symmetric = {
        ri
        for ri in range(len(request.roles))
        if not any(
            e.pattern is Pattern.PAIRED and ri in (e.source, e.target) for e in request.traffic
        )
    }
    # Lower bounds: every GPU pair still to come costs at least the smallest distance.
    d_min = _smallest_distance(index, rows)
    gpu_total = [r.replicas * r.gpus_per_replica for r in request.roles]
    search = _Search(snapshot, request, rows, pods)
    search.free = [int(snapshot.free[r]) for r in range(len(index.names))]
    heads, demands = other_resources.headroom(
        snapshot.headroom,
        snapshot.other,
        request.roles,
    )
    search.head = heads.tolist()
    demand = [d.tolist() for d in demands]
    placed: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)  # replica GPUs
    role_gpus: dict[int, list[tuple[int, int]]] = defaultdict(list)
    on_row: dict[int, int] = defaultdict(int)  # deployment GPUs per row
    chosen: list[tuple[int, tuple[int, ...]]] = []
    first_of: dict[tuple[int, int], tuple[int, tuple[int, ...]]] = {}

    # Every GPU pair of the finished plan that costs: intra pairs, and traffic pairs weighted.
    intra_total = sum(
        r.replicas * (r.gpus_per_replica * (r.gpus_per_replica - 1) // 2) for r in request.roles
    )
    peer_list = [(a, b, w) for a, ps in peers.items() for b, w in ps if a < b]
    role_list = [(a, b, w) for (a, b), w in role_weight.items() if a < b]
    traffic_total = sum(
        w * request.roles[a[0]].gpus_per_replica * request.roles[b[0]].gpus_per_replica
        for a, b, w in peer_list
    ) + sum(w * gpu_total[a] * gpu_total[b] for a, b, w in role_list)

    def bound(extra_key: tuple[int, int], extra: int) -> tuple[int, float]:
        """Least (intra, traffic) the GPU pairs not placed yet can add, were ``extra`` more GPUs
        of ``extra_key`` placed: each costs at least ``d_min``."""

        def n(key: tuple[int, int]) -> int:
            return len(placed[key]) + (extra if key == extra_key else 0)

        def m(role: int) -> int:
            return len(role_gpus[role]) + (extra if role == extra_key[0] else 0)

        intra_pairs = intra_total - sum(n(k) * (n(k) - 1) // 2 for k in placed)
        if extra_key not in placed:
            intra_pairs -= extra * (extra - 1) // 2
        traffic_pairs = traffic_total - sum(w * n(a) * n(b) for a, b, w in peer_list)
        traffic_pairs -= sum(w * m(a) * m(b) for a, b, w in role_list)
        return intra_pairs * d_min, traffic_pairs * d_min

    def options(i: int) -> list[tuple[int, tuple[int, ...]]]:
        ri, replica, pod = pods[i]
        role = request.roles[ri]
        q = role.pod_gpus
        key = (ri, replica)
        allowed = rows
        scope = role.replica_scope
        if pod > 0 and scope is not None:
            # Every row of the replica under one vertex of the scope's layer or finer.
            layer = tree.layer_of_tier(scope)
            common = frozenset.intersection(*(tree.holders(layer, r) for r, _ in chosen[-pod:]))
            allowed = [r for r in rows if common & tree.holders(layer, r)]
        seen: set[tuple[object, ...]] = set()
        out = []
        for r in allowed:
            h = search.head[r]
            free = search.free[r]
            if (
                not usable[ri][r]
                or ports.blocks(ri, r)
                or free.bit_count() < q
                or any(have < need for have, need in zip(h, demand[ri], strict=True))
            ):
                continue
            if on_row[r] == 0:
                signature = (static[r], free, tuple(h))
                if signature in seen:
                    continue  # an interchangeable node was offered already
                seen.add(signature)
            by_class: dict[int, list[int]] = defaultdict(list)
            for g in bits(free):
                by_class[twin[r][g]].append(g)
            classes = sorted(by_class.values())
            for counts in product(*(range(len(c) + 1) for c in classes)):
                if sum(counts) != q:
                    continue
                gpus = tuple(sorted(g for c, n in zip(classes, counts, strict=True) for g in c[:n]))
                if scope == 0 and not _nvlink_only(index, r, gpus, placed[key]):
                    continue
                out.append((r, gpus))
        return out

    def dfs(i: int, intra: int, traffic: float, liked: int) -> None:
        if i == len(pods):
            if search.best is None or (intra, traffic, -liked) < search.best:
                search.best = (intra, traffic, -liked)
                search.best_choice = list(chosen)
            return
        ri, replica, pod = pods[i]
        key = (ri, replica)
        scored = []
        for option in options(i):
            if pod > 0 and option <= chosen[-1]:
                continue  # pods of a replica are interchangeable: keep them ordered
            if (
                pod == 0
                and ri in symmetric
                and replica > 0
                and option <= first_of[(ri, replica - 1)]
            ):
                continue  # replicas of a symmetric role are interchangeable: keep them ordered
            row, gpus = option
            add_intra = sum(_distance(index, row, a, row, b) for a, b in combinations(gpus, 2))
            add_intra += sum(
                _distance(index, row, g, r2, g2) for g in gpus for r2, g2 in placed[key]
            )
            add_traffic = 0.0
            for peer, weight in peers[key]:
                add_traffic += weight * sum(
                    _distance(index, row, g, r2, g2) for g in gpus for r2, g2 in placed[peer]
                )
            for other in range(len(request.roles)):
                w = role_weight.get((ri, other), 0.0)
                if w:
                    add_traffic += w * sum(
                        _distance(index, row, g, r2, g2)
                        for g in gpus
                        for r2, g2 in role_gpus[other]
                    )
            scored.append((intra + add_intra, round(traffic + add_traffic, 6), option))
        scored.sort()
        for new_intra, new_traffic, option in scored:
            row, gpus = option
            bound_intra, bound_traffic = bound(key, len(gpus))
            if (
                search.best is not None
                and (
                    new_intra + bound_intra,
                    round(new_traffic + bound_traffic, 6) - 1e-6,
                )
                >= search.best[:2]
            ):
                if new_intra + bound_intra > search.best[0]:
                    break  # sorted by intra: every later child is as bad
                continue
            mask = sum(1 << g for g in gpus)
            search.free[row] &= ~mask
            head = search.head[row]
            for column, need in enumerate(demand[ri]):
                head[column] -= need
            on_row[row] += len(gpus)
            ports.add(ri, row, 1)
            placed[key].extend((row, g) for g in gpus)
            role_gpus[ri].extend((row, g) for g in gpus)
            chosen.append(option)
            if pod == 0:
                first_of[key] = option
            like = int(scores[ri][row]) if scores[ri] is not None else 0  # type: ignore[index]
            dfs(i + 1, new_intra, new_traffic, liked + like)
            chosen.pop()
            del placed[key][-len(gpus) :]
            del role_gpus[ri][-len(gpus) :]
            on_row[row] -= len(gpus)
            ports.add(ri, row, -1)
            search.free[row] |= mask
            for column, need in enumerate(demand[ri]):
                head[column] += need

    dfs(0, 0, 0.0, 0)
    if search.best_choice is None:
        return Plan(False, strategy="exact")
    assignments = [
        Assignment(PodKey(request.roles[ri].name, replica, pod), index.names[row], row, tuple(gpus))
        for (ri, replica, pod), (row, gpus) in zip(pods, search.best_choice, strict=True)
    ]
    ev = objective.evaluate(index, request, assignments, free_before=snapshot.free)
    liked = objective.preference(request, assignments, scores)
    return Plan(
        True,
        tuple(assignments),
        cost=Cost(ev.cost.intra, ev.cost.traffic, ev.cost.fragmentation, liked),
        tiers=ev.tiers,
        replica_tiers=ev.replica_tiers,
        traffic=ev.edges,
        strategy="exact",
    )


def _nvlink_only(
    index: TopologyIndex, row: int, gpus: tuple[int, ...], others: list[tuple[int, int]]
) -> bool:
    """All pairs among ``gpus`` and with the replica's GPUs so far are same-node NVLink."""
    nv = index.node_class(row).nvlink
    mine = [g for r, g in others if r == row]
    if any(r != row for r, _ in others):
        return False
    return all(nv[a, b] for a, b in combinations(gpus, 2)) and all(
        nv[a, b] for a in gpus for b in mine
    )


def _smallest_distance(index: TopologyIndex, rows: list[int]) -> int:
    """The least distance between two different GPUs anywhere among ``rows``."""
    best = None
    for cls_id in sorted({int(index.class_of[r]) for r in rows}):
        dist = index.classes[cls_id].dist
        if dist.shape[0] > 1:
            off = dist[~np.eye(dist.shape[0], dtype=bool)]
            best = int(off.min()) if best is None else min(best, int(off.min()))
    if len(rows) > 1:
        # any cross-node pair is at least the cheapest GPU-to-network/fabric path twice
        ups = [int(index.up(r).min()) for r in rows]
        fabs = [int(index.node_class(r).fab.min()) for r in rows if index.clique_of[r] >= 0]
        low = min(ups + fabs)
        best = 2 * low if best is None else min(best, 2 * low)
    return best if best is not None else 0

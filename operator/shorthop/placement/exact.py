"""An exact solver for small instances: depth-first search with branch and bound.

Enumerates every way to put every pod on a node its role may use (``filters``: taints, node
selector, node affinity, host ports, also between the plan's own pods) and a set of that node's
free GPUs (pods of one replica in non-decreasing order, to skip permutations), accumulating the
lexicographic (intra-replica, traffic, -preferred node affinity) cost pair by pair, and prunes a
branch as soon as its partial cost (with the most preference the remaining pods could add) cannot
beat the best found. Used by tests and benchmarks to check the solver's cost; refuses
instances whose search space is too large (``ExactTooLarge``).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np

from shorthop.errors import ShorthopError
from shorthop.placement import filters, objective
from shorthop.placement.plan import Assignment, Cost, Plan, PodKey
from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot, bits

MAX_OPTIONS = 2_000_000


class ExactTooLarge(ShorthopError):
    """The instance is too large for exhaustive search."""


def solve(snapshot: ClusterSnapshot, request: Request) -> Plan:
    index = snapshot.index
    rows = [int(r) for r in range(len(index.names))]
    pods = [
        (ri, replica, pod)
        for ri, role in enumerate(request.roles)
        for replica in range(role.replicas)
        for pod in range(role.pods_per_replica)
    ]
    options_per_q: dict[int, int] = {}
    space = 1
    for ri, _, _ in pods:
        q = request.roles[ri].pod_gpus
        if q not in options_per_q:
            options_per_q[q] = sum(
                len(list(combinations(bits(int(snapshot.free[r])), q))) for r in rows
            )
        space *= max(1, options_per_q[q])
        if space > MAX_OPTIONS**2:
            raise ExactTooLarge(f"search space above {MAX_OPTIONS}^2 options")
    found = filters.role_filters(snapshot, request)
    usable = [f.usable for f in found]
    scores = [f.preference for f in found]
    ports = filters.PlanPorts(request, len(rows))
    # The most preference the pods from i on could still add (for pruning).
    best_score = [
        int(s[u].max(initial=0)) if s is not None else 0
        for s, u in zip(scores, usable, strict=True)
    ]
    still = [0] * (len(pods) + 1)
    for i in range(len(pods) - 1, -1, -1):
        still[i] = still[i + 1] + best_score[pods[i][0]]
    dist = [index.node_class(r).dist if index.alive[r] else None for r in rows]

    def d(ra: int, ga: int, rb: int, gb: int) -> int:
        if ra == rb:
            return int(dist[ra][ga, gb])  # type: ignore[index]
        return index.distance(ra, ga, rb, gb)

    # Which placed replicas exchange traffic with which, and how much.
    peers: dict[tuple[int, int], list[tuple[tuple[int, int], float]]] = defaultdict(list)
    from shorthop.placement.request import peer_pairs

    for edge in request.traffic:
        for i, j in peer_pairs(
            request.roles[edge.source].replicas, request.roles[edge.target].replicas
        ):
            peers[(edge.source, i)].append(((edge.target, j), edge.weight))
            peers[(edge.target, j)].append(((edge.source, i), edge.weight))

    free = [int(snapshot.free[r]) for r in rows]
    placed: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(
        list
    )  # replica -> (row, gpu)
    chosen: list[tuple[int, tuple[int, ...]]] = []
    best: list[object] = [None, None]  # [(intra, traffic, -preference), assignment list]

    def options(ri: int) -> list[tuple[int, tuple[int, ...]]]:
        q = request.roles[ri].pod_gpus
        out = []
        blocked = ports.blocked(ri, np.array(rows, dtype=np.intp))
        for r in rows:
            if usable[ri][r] and not blocked[r] and free[r].bit_count() >= q:
                out += [(r, combo) for combo in combinations(bits(free[r]), q)]
        return out

    def dfs(i: int, intra: int, traffic: float, liked: int) -> None:
        if best[0] is not None:
            cost, hope = (intra, traffic), (intra, traffic, -(liked + still[i]))
            if cost > best[0][:2] or hope >= best[0]:  # type: ignore[index, operator]
                return
        if i == len(pods):
            best[0] = (intra, traffic, -liked)
            best[1] = list(chosen)
            return
        ri, replica, pod = pods[i]
        key = (ri, replica)
        for option in options(ri):
            if pod > 0 and chosen and pods[i - 1][:2] == key and option <= chosen[-1]:
                continue  # pods of a replica are interchangeable: keep them ordered
            row, gpus = option
            add_intra = sum(d(row, a, row, b) for a, b in combinations(gpus, 2))
            add_intra += sum(d(row, g, r2, g2) for g in gpus for r2, g2 in placed[key])
            add_traffic = 0.0
            for peer, weight in peers[key]:
                add_traffic += weight * sum(
                    d(row, g, r2, g2) for g in gpus for r2, g2 in placed[peer]
                )
            mask = sum(1 << g for g in gpus)
            free[row] &= ~mask
            placed[key].extend((row, g) for g in gpus)
            chosen.append(option)
            ports.add(ri, row, 1)
            like = int(scores[ri][row]) if scores[ri] is not None else 0  # type: ignore[index]
            dfs(i + 1, intra + add_intra, round(traffic + add_traffic, 6), liked + like)
            ports.add(ri, row, -1)
            chosen.pop()
            del placed[key][-len(gpus) :]
            free[row] |= mask

    dfs(0, 0, 0.0, 0)
    if best[1] is None:
        return Plan(False, strategy="exact")
    chosen_best: list[tuple[int, tuple[int, ...]]] = best[1]  # type: ignore[assignment]
    assignments = [
        Assignment(PodKey(request.roles[ri].name, replica, pod), index.names[row], row, tuple(gpus))
        for (ri, replica, pod), (row, gpus) in zip(pods, chosen_best, strict=True)
    ]
    ev = objective.evaluate(index, request, assignments, free_before=snapshot.free)
    liked = objective.preference(request, assignments, scores)
    return Plan(
        True,
        tuple(assignments),
        cost=Cost(ev.cost.intra, ev.cost.traffic, ev.cost.fragmentation, liked),
        tiers=ev.tiers,
        replica_tiers=ev.replica_tiers,
        strategy="exact",
    )

"""The cost floor: when every GPU pair a plan pays for is at the least distance any two GPUs
of the cluster have, no plan is cheaper, in intra or in traffic cost.

The objective sums distances over GPU pairs (each replica's own pairs; the pairs between peers
of ``paired`` edges and between the roles of ``all-to-all`` edges, weighted), so a plan whose
every such pair is at :func:`least_distance` has each of these sums at its least, and any other
plan has each sum at least as large. Every later step of ``run`` compares by those sums
(refinement keeps a move only when the moved replicas' cost falls, the exhaustive search only a
cheaper plan, first-fit's plan only when cheaper), so after a start at the floor they could
only tie, and a tie keeps the start: ``run`` skips them (:func:`at_floor`).

Callers: ``run``. Reads the state; changes nothing.
"""

from __future__ import annotations

from shorthop.placement import objective, pairsums
from shorthop.placement.request import Pattern
from shorthop.placement.solver.state import State
from shorthop.topology.index import TopologyIndex


def least_distance(index: TopologyIndex) -> int:
    """A lower bound on the distance between any two different GPUs of ``index`` (kept with
    the index): the least of the classes' off-diagonal distances inside a node, twice the least
    fabric distance (two nodes of one NVLink domain), and twice the least uplink, the fabric
    route out of a domain included, plus twice the least network term (two nodes elsewhere)."""
    return index.derived(_least_distance)


def _least_distance(index: TopologyIndex) -> int:
    exits = [int(e) for e in index.clique_exit.tolist()]
    least_exit = min([0, *exits])  # an exit is never negative; 0 keeps the bound safe if so
    inside, fabric, uplink = [], [], []
    for cls in index.classes:
        g = cls.gpus
        if g > 1:
            inside.append(min(int(cls.dist[i, j]) for i in range(g) for j in range(g) if i != j))
        if g:
            fabric.append(int(cls.fab.min()))
            uplink.append(min(int(cls.up.min()), int(cls.fab.min()) + least_exit))
    network = 2 * min(uplink) + 2 * min(int(h) for h in index.h.tolist()) if uplink else None
    candidates = [*inside, *(2 * f for f in fabric)] + ([network] if network is not None else [])
    return min(candidates) if candidates else 0


def at_floor(state: State) -> bool:
    """Whether every GPU pair of the state's (complete) plan that the objective sums is at
    :func:`least_distance`: its intra cost and every traffic sum are then as low as any plan's.
    """
    index = state.index
    least = least_distance(index)
    sizes = {
        key: sum(mask.bit_count() for _, _, mask in r.parts()) for key, r in state.replicas.items()
    }
    floor_intra = sum(k * (k - 1) // 2 for k in sizes.values()) * least
    if state.total_intra() != floor_intra:
        return False
    seen: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    for key in state.replicas:
        for peer, _ in state.peers[key]:
            pair = (min(key, peer), max(key, peer))
            if pair in seen:
                continue
            seen.add(pair)
            paid = objective.between_cost(index, state.placed_set(key), state.placed_set(peer))
            if paid != sizes[key] * sizes[peer] * least:
                return False
    for e in state.request.traffic:
        if e.pattern is not Pattern.ALL_TO_ALL:
            continue
        if e.source == e.target:
            return False  # a role with itself: not pairs of different replicas only
        s, t = state.role_masks[e.source], state.role_masks[e.target]
        if not s or not t:
            continue
        paid = pairsums.pair_sums(index, pairsums.mass(index, s), pairsums.mass(index, t))[0]
        gpus_s = sum(m.bit_count() for m in s.values())
        gpus_t = sum(m.bit_count() for m in t.values())
        if paid != gpus_s * gpus_t * least:
            return False
    return True

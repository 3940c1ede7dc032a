"""Phase 3d, medium instances: greedy under every order of whole roles, swaps, evacuations.

Greedy's interleaved order puts the first replica of a small role next to the first replica of
the large one, and the rest of the deployment gathers around them: with an NVLink domain of 12
free GPUs and a few nodes outside it, 14 1-GPU prefill replicas and one decode replica ended
with the decode replica outside the domain (traffic 800.7 where the optimum is 236.4), and no
single move leaves that basin: each prefill replica alone is best next to the decode replica,
and the decode replica alone is best next to most prefill replicas. Placing whole roles one
after another, in every order, starts elsewhere: the small role first goes where its partners
have the most room, and the large role follows. A start is kept only when it ends cheaper after
refinement.

Then rounds (at most :data:`ROUNDS`, each followed by refinement, while one helps) of *swaps*
(``swap``: two replicas of different roles with the same shape and rules trade GPUs, which no
single move can do across a full NVLink domain) and *evacuations* (every replica on one node
lifted and placed again, greedy's order, each where it is now cheapest; kept when cheaper):
7 pods left outside a full NVLink domain, split over two nodes, where moving any one alone
costs as much as it saves, gather on one node.

Only on *medium* instances (:func:`medium`): too large for the exhaustive search
(``search.small``) yet with at most :data:`MEDIUM_ROWS` usable nodes with free GPUs and
:data:`MEDIUM_PODS` pods to place, where one greedy run costs a few milliseconds. Large clusters
keep their latency: there the homes (``home``) give greedy its starts.

Last, on the fewest nodes, a few nodes at a time are placed again by the exhaustive search
(phase 3e, ``neighbourhood``).

Caller: ``run._run``. Changes states only through ``State.commit``/``lift``/``put_back``.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray

from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.solver import floor, neighbourhood, swap
from shorthop.placement.solver.greedy import greedy, order, place
from shorthop.placement.solver.refine import refine
from shorthop.placement.solver.search import small
from shorthop.placement.solver.state import (
    Failure,
    Fixed,
    Key,
    State,
    Strategy,
)

MEDIUM_ROWS = 48  # usable nodes with free GPUs
MEDIUM_PODS = 64  # pods to place
MAX_ORDERED_ROLES = 3  # every order of up to 3 roles (6 starts); more roles: none
ROUNDS = 3  # rounds of swaps and evacuations (each followed by refinement), at most


def medium(state: State) -> bool:
    """Whether ``state``'s instance gets the starts, swaps and evacuations of this phase."""
    missing = sum(r.pods - len(r.fixed) for r in state.replicas.values())
    if not missing or missing > MEDIUM_PODS or small(state):
        return False
    usable = np.logical_or.reduce(state.usable)
    rows = np.flatnonzero(usable & (state.snapshot.free_counts > 0))
    return len(rows) <= MEDIUM_ROWS


def improve(
    best: State,
    snapshot: ClusterSnapshot,
    request: Request,
    allowed: NDArray[np.bool_] | None,
    fixed: Fixed,
) -> State:
    """``best``, or a cheaper state from a start under another order of whole roles, then
    improved by rounds of swaps and evacuations; unchanged when the instance is not
    :func:`medium` or ``best`` is at the floor (nothing is cheaper)."""
    if not medium(best) or floor.at_floor(best):
        return best
    if len(request.roles) <= MAX_ORDERED_ROLES:
        for roles in itertools.permutations(range(len(request.roles))):
            start = State(snapshot, request, allowed, fixed, Strategy.COST)
            start.roles_first = roles
            try:
                greedy(start)
            except Failure:
                continue
            refine(start)
            if _rank(start) < _rank(best):
                best = start
    for _ in range(ROUNDS):
        moved = swap.swap(best)
        moved = evacuate(best) or moved
        if not moved:
            break
        refine(best)
    if neighbourhood.improve(best):
        refine(best)
    return best


def evacuate(state: State) -> bool:
    """Node by node, lift every replica with pods this run placed there and place them again
    (greedy's order, each where it is now cheapest); kept when the cost of those replicas and
    every pair touching them falls (``State.group_cost``: the rest of the plan is unchanged).
    True when some node's evacuation was kept."""
    kept = False
    ranked = [k for k in order(state) if not state.replicas[k].fixed]
    rows = sorted({row for k in ranked for _, row, _ in state.replicas[k].placed})
    for row in rows:
        keys = [k for k in ranked if any(at == row for _, at, _ in state.replicas[k].placed)]
        if not keys:
            continue  # an earlier evacuation moved them away
        before = state.group_cost(keys)
        olds = [state.lift(k) for k in keys]
        placed: list[Key] = []
        try:
            for k in keys:
                state.commit(k, place(state, k))
                placed.append(k)
        except Failure:
            pass
        if len(placed) == len(keys) and state.group_cost(keys) < before:
            kept = True
            continue
        state.put_back(dict(zip(keys, olds, strict=True)))  # (a key not placed lifts nothing)
    return kept


def _rank(state: State) -> tuple[int, float]:
    intra, traffic = state.total_cost()
    return intra, round(traffic, 6)

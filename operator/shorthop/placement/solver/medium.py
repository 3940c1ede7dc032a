"""Phase 3d, medium instances: greedy under every order of whole roles, swaps, evacuations.

Greedy's interleaved order puts the first replica of a small role next to the first replica of
the large one, and the rest of the deployment gathers around them. On a cluster with an NVLink
domain of 12 free GPUs and a few nodes outside it, 14 1-GPU prefill replicas and one decode
replica end with the decode replica outside the domain (traffic 632.9 where the optimum is
350.7), and no single move leaves that basin: each prefill replica alone is best next to the
decode replica, and the decode replica alone is best next to most prefill replicas. Placing whole
roles one after another, in every order, starts elsewhere: the small role first goes where its
partners have the most room, and the large role follows. A start is kept only when it ends
cheaper after refinement.

Swaps then exchange two placed replicas of different roles that have the same shape and the
same scheduling rules (each takes the other's GPUs, so intra costs and capacity are unchanged):
the move that turns 4 + 2 replicas of two roles outside a full NVLink domain into 5 + 1, which
no single move can make when the domain has no free GPU. First improvement, repeated while one
helps (at most :data:`SWAP_ROUNDS`). *Evacuations* lift every replica on one node and place them
again (greedy's order, each where it is now cheapest): 7 pods left outside a full NVLink domain,
split over two nodes, where moving any one alone costs as much as it saves, gather on one node.
Swaps and evacuations repeat, each round followed by refinement, while one helps (at most
:data:`ROUNDS`).

Only on *medium* instances (:func:`medium`): too large for the exhaustive search
(``search.small``) yet with at most :data:`MEDIUM_ROWS` usable nodes with free GPUs and
:data:`MEDIUM_PODS` pods to place, where one greedy run costs a few milliseconds. Large clusters
keep their latency: there the homes (``home``) give greedy its starts.

Caller: ``run._run``. Changes states only through ``State.commit``/``lift``/``restore``.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from numpy.typing import NDArray

from shorthop.placement.request import Request, RoleRequest
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.solver import floor
from shorthop.placement.solver.greedy import greedy, order, place
from shorthop.placement.solver.refine import refine
from shorthop.placement.solver.search import small
from shorthop.placement.solver.state import (
    Candidate,
    Failure,
    Fixed,
    Key,
    Part,
    State,
    Strategy,
    merged_masks,
)

MEDIUM_ROWS = 48  # usable nodes with free GPUs
MEDIUM_PODS = 64  # pods to place
MAX_ORDERED_ROLES = 3  # every order of up to 3 roles (6 starts); more roles: none
SWAP_ROUNDS = 8  # swaps kept per round, at most
ROUNDS = 3  # rounds of swaps and evacuations (each followed by refinement), at most


def medium(state: State) -> bool:
    """Whether ``state``'s instance gets the starts and swaps of this phase."""
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
    """``best``, or a cheaper state from a start under another order of whole roles, with
    swaps applied; unchanged when the instance is not :func:`medium` or ``best`` is at the
    floor (nothing is cheaper)."""
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
        moved = swap(best)
        moved = evacuate(best) or moved
        if not moved:
            break
        refine(best)
    return best


def swap(state: State) -> bool:
    """Exchange pairs of replicas (first improvement, up to :data:`SWAP_ROUNDS`); True when
    at least one swap was kept."""
    kept = 0
    while kept < SWAP_ROUNDS and _one_swap(state):
        kept += 1
    return kept > 0


def _one_swap(state: State) -> bool:
    before = _rank(state)
    roles = state.request.roles
    keys = sorted(k for k, r in state.replicas.items() if r.placed and not r.fixed)
    tried: set[tuple[object, ...]] = set()
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if not _interchangeable(roles[a[0]], roles[b[0]]) or a[0] == b[0]:
                continue
            parts_a, parts_b = _parts(state, a), _parts(state, b)
            if {row for row, _ in parts_a} == {row for row, _ in parts_b}:
                continue  # the same nodes: a swap moves nothing the objective sees
            # replicas of one role on the same nodes swap alike: try one of them
            seen = (a[0], tuple(r for r, _ in parts_a), b[0], tuple(r for r, _ in parts_b))
            if seen in tried:
                continue
            tried.add(seen)
            old_a, old_b = state.lift(a), state.lift(b)
            state.commit(a, Candidate(0, 0.0, 0.0, 0, parts_b))
            state.commit(b, Candidate(0, 0.0, 0.0, 0, parts_a))
            if _rank(state) < before:
                return True
            state.lift(a)
            state.lift(b)
            state.restore(a, old_a)
            state.restore(b, old_b)
    return False


def evacuate(state: State) -> bool:
    """Node by node, lift every replica with pods this run placed there and place them again
    (greedy's order, each where it is now cheapest); kept when the plan's cost falls. True when
    some node's evacuation was kept."""
    kept = False
    rows = sorted({row for r in state.replicas.values() if not r.fixed for _, row, _ in r.placed})
    for row in rows:
        keys = [
            k
            for k in order(state)
            if not state.replicas[k].fixed
            and any(at == row for _, at, _ in state.replicas[k].placed)
        ]
        if not keys:
            continue  # an earlier evacuation moved them away
        before = _rank(state)
        olds = [state.lift(k) for k in keys]
        placed: list[Key] = []
        try:
            for k in keys:
                state.commit(k, place(state, k))
                placed.append(k)
        except Failure:
            pass
        if len(placed) == len(keys) and _rank(state) < before:
            kept = True
            continue
        for k in placed:
            state.lift(k)
        for k, old in zip(keys, olds, strict=True):
            state.restore(k, old)
    return kept


def _interchangeable(a: RoleRequest, b: RoleRequest) -> bool:
    """Replicas of ``a`` and ``b`` may take each other's GPUs: the same shape, the same rules
    (nodes allowed, tolerations, CPU and memory per pod, replica scope) and no host ports (a
    port is counted per role on each node)."""
    if a.constraints.host_ports or b.constraints.host_ports:
        return False

    def rules(r: RoleRequest) -> RoleRequest:  # the role less its name, count and field path
        return dataclasses.replace(
            r, name="", replicas=0, constraints=dataclasses.replace(r.constraints, path="")
        )

    return rules(a) == rules(b)


def _parts(state: State, key: Key) -> tuple[Part, ...]:
    placed = state.replicas[key].placed
    return tuple(sorted(merged_masks((row, mask) for _, row, mask in placed).items()))


def _rank(state: State) -> tuple[int, float]:
    intra, traffic = state.total_cost()
    return intra, round(traffic, 6)

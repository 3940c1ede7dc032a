"""Phase 3e, medium instances: a few nodes at a time placed again by the exhaustive search.

Swaps and evacuations (``medium``) move one or two replicas, or one node's, along a path where
every step is cheaper. Some plans are cheaper only after several replicas move between several
nodes at once: 9 + 9 one-GPU replicas over two NVLink trays, two NVSwitch nodes 200 apart and
one far node ended on five nodes (traffic 454.8) where three suffice (425.6), and every single
move or trade from there costs more. Here, for every set of :data:`SIZES` nodes, the replicas
placed only on those nodes are lifted and the exhaustive search (``search.within``) places them
again on those nodes' free GPUs, everything else staying where it is; a cheaper plan is kept.
Rounds repeat while one improves (at most :data:`ROUNDS`).

Bounded: only when at most :data:`MAX_ROWS` usable nodes have free GPUs or pods of this run
(``C(8, 2) + C(8, 3)`` = 84 node sets a round), at most ``search.SMALL_PODS`` pods lifted at a
time, :data:`BUDGET` options scored per node set; only deployments whose replicas are told
apart by nothing but their role (no ``paired`` edge: the pairs name replicas by id), and none
with host ports (the search reads which nodes a role may use before anything is lifted).

Caller: ``medium.improve``. Changes states only through ``State.lift``/``commit``/``put_back``.
"""

from __future__ import annotations

import itertools

import numpy as np

from shorthop.placement.request import Pattern
from shorthop.placement.solver import search, universe
from shorthop.placement.solver.state import Key, PodPart, State

SIZES = (2, 3)  # nodes placed again at once
MAX_ROWS = 8  # candidate nodes (usable, with free GPUs or pods of this run), at most
ROUNDS = 3
BUDGET = 5_000  # options the search scores per node set
MARGIN = 1e-6  # traffic a plan must save (ties rounded apart are not worth a search's commit)


def improve(state: State) -> bool:
    """Rounds over every set of :data:`SIZES` candidate nodes; True when some plan was kept."""
    if any(e.pattern is Pattern.PAIRED for e in state.request.traffic) or any(
        role.constraints.host_ports for role in state.request.roles
    ):
        return False
    rows = _rows(state)
    if len(rows) > MAX_ROWS:
        return False
    kept = False
    for _ in range(ROUNDS):
        # the smallest sets first; larger ones only once those find nothing (they cost more)
        for size in SIZES:
            moved = False
            for chosen in itertools.combinations(rows, size):
                moved = _again(state, chosen) or moved
            if moved:
                break
        if not moved:
            break
        kept = True
    return kept


def _rows(state: State) -> list[int]:
    """Usable nodes with free GPUs now or pods this run placed."""
    usable = np.logical_or.reduce(state.usable)
    held = {row for r in state.replicas.values() for _, row, _ in r.placed}
    return [int(r) for r in np.flatnonzero(usable) if state.count[r] > 0 or int(r) in held]


def _again(state: State, chosen: tuple[int, ...]) -> bool:
    """Place the replicas that only ``chosen`` nodes hold (pods of this run, none kept by the
    request) again there by the search; True when the plan got cheaper."""
    inside = set(chosen)
    moving = [
        k
        for k, r in state.replicas.items()
        if r.placed and not r.fixed and all(row in inside for _, row, _ in r.placed)
    ]
    if not moving or sum(len(state.replicas[k].placed) for k in moving) > search.SMALL_PODS:
        return False
    free = {row: int(state.free[row]) for row in chosen}
    head = {row: [int(v) for v in state.headroom[row]] for row in chosen}
    for k in moving:
        demand = state.demand[k[0]].tolist()
        for _, row, mask in state.replicas[k].placed:
            free[row] |= mask
            head[row] = [h + d for h, d in zip(head[row], demand, strict=True)]
    stays: dict[Key, list[PodPart]] = {
        k: ([] if k in moving else r.parts()) for k, r in state.replicas.items()
    }
    scope = universe.Scope(sorted(inside), free, head, stays)
    return search.within(state, scope, BUDGET, MARGIN)

"""Phase 3, refinement: local search over a complete greedy placement.

Greedy placed each replica knowing only the peers placed before it. Now that all are placed, each
move lifts some replicas out and places them again (``greedy.place``) in that order; a move is
kept when the (intra, traffic) cost of the replicas moved and their peer pairs falls, else undone.
Moves, per pass: 3a, each replica alone; 3b, each replica with all its peers (the hub first).
Replicas whose every peer pair is already on NVLink are skipped (nothing to gain), and a pass
stops early on a large deployment after :data:`REFINE_PATIENCE` fruitless moves in a row.

Caller: ``run``. Changes the state only through ``State.commit``/``lift``/``restore``.
"""

from __future__ import annotations

import numpy as np

from shorthop.placement.solver.greedy import order, place
from shorthop.placement.solver.state import Candidate, Failure, Key, State, Strategy, merged_masks

REFINE_PASSES = 2
REFINE_PATIENCE = 4  # stop a pass after this many moves in a row that did not help


def refine(state: State) -> None:
    """Phase 3: local search (single and group moves), always under ``Strategy.COST``."""
    state.strategy = Strategy.COST
    replicas = order(state)
    for _ in range(REFINE_PASSES):
        improved = False
        misses = 0
        moves: list[list[Key]] = []
        # phase 3a: one replica at a time, now that its peers are known
        moves += [[key] for key in replicas if state.has_traffic(key)]
        # phase 3b: a replica with all its peers, the hub first
        moves += [[key] + [p for p, _ in state.peers[key]] for key in replicas if state.peers[key]]
        for keys in moves:
            if misses >= REFINE_PATIENCE and len(moves) > 4 * REFINE_PATIENCE:
                break  # a large, crowded deployment: more moves rarely help and cost time
            if not all(state.replicas[k].placed for k in keys) or _close_enough(state, keys[0]):
                continue
            if _move(state, keys):
                improved, misses = True, 0
            else:
                misses += 1
        if not improved:
            break


def _close_enough(state: State, key: Key) -> bool:
    """True when every GPU pair between ``key`` and its partners (peers, or the other role of
    an all-to-all edge) is already an NVLink pair (same node over NVLink, or the same NVLink
    domain): no move can improve its traffic."""
    index = state.index
    mine = state.placed_set(key)
    mine_rows = np.array(sorted(mine), dtype=np.intp)
    for p in state.partners(key):
        # the rows holding the partner's GPUs (the summary's masks: no per-row sums needed)
        other = np.fromiter(p.summary.masks, dtype=np.intp, count=len(p.summary.masks))
        if mine_rows.size == 1 and other.size == 1 and other[0] == mine_rows[0]:
            row = int(mine_rows[0])
            gpus = np.array(
                [g for g in range(index.gpus(row)) if p.summary.masks[row] >> g & 1], dtype=np.intp
            )
            if not index.node_class(row).nvlink[np.ix_(mine[row], gpus)].all():
                return False
            continue
        # Several nodes: all of them in one NVLink domain (whole arrays: a role has many rows).
        clique = index.clique_of[mine_rows[0]]
        if clique < 0 or (index.clique_of[mine_rows] != clique).any():
            return False
        if (index.clique_of[other] != clique).any():
            return False
    return True


def _move(state: State, keys: list[Key]) -> bool:
    """Lift ``keys`` and place them again in that order; keep the result if it is cheaper.
    When every replica lands on exactly the GPUs it had, the state is the one it started from
    and so is its cost: the move fails without being costed (mostly: a local optimum). Else
    the new cost is taken, the old placement put back and costed, and the new one made again
    when cheaper (commits are deterministic)."""
    caches = state.caches()
    olds = [state.lift(k) for k in keys]
    placed: list[Key] = []
    chosen: list[Candidate] = []
    unchanged = True
    try:
        for k, old in zip(keys, olds, strict=True):
            cand = place(state, k)
            unchanged = unchanged and merged_masks(cand.rows) == merged_masks(
                (row, m) for _, row, m in old
            )
            if unchanged and len(keys) == 1:
                break  # the one replica back where it was: nothing to commit or cost
            state.commit(k, cand)
            placed.append(k)
            chosen.append(cand)
    except Failure:
        pass
    after = state.group_cost(keys) if len(placed) == len(keys) and not unchanged else None
    for k in placed:
        state.lift(k)
    for k, old in zip(keys, olds, strict=True):
        state.restore(k, old)
    state.reuse(caches)  # every GPU is back where it was: so are the summaries
    if after is None or not after < state.group_cost(keys):
        return False
    for k in keys:
        state.lift(k)
    for k, cand in zip(keys, chosen, strict=True):
        state.commit(k, cand)
    return True

"""Scoring one candidate exactly, and the order candidates compare in (phase 2d).

:func:`score_many` costs putting a replica's missing pods on each of a few sets of GPUs: the
intra-replica cost with the pods it keeps (``objective.intra_cost``), the weighted traffic to its
placed peers, the GPUs left free on the nodes it touches, the preferred node affinity weight of its
nodes and the look-ahead for peers still to come (one ``lookahead.estimate`` call for all).
:func:`rank` is the order candidates compare in under the run's strategy; :func:`best_of` keeps
the best of a few.

Callers: ``candidates`` (phase 2b, refining the chosen node) and ``fill`` (phase 2c). Reads the
state; changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shorthop.placement import objective, pairsums
from shorthop.placement import tree as domain_tree
from shorthop.placement.solver import lookahead
from shorthop.placement.solver.state import (
    Candidate,
    Key,
    Part,
    Partners,
    State,
    Strategy,
    gpu_set_of,
)


def rank(state: State, cand: Candidate) -> tuple[float, ...]:
    """Candidate order: cost first, or (when packing to find a feasible plan) best fit first."""
    if state.strategy is Strategy.PACK:
        return (
            cand.frag,
            cand.intra,
            round(cand.traffic, 6),
            cand.lookahead,
            -cand.preference,
            cand.tie,
        )
    return cand.key()


def score_many(
    state: State,
    key: Key,
    options: Sequence[Sequence[Part]],
    partners: Partners,
    ties: Sequence[int],
    intra: Sequence[int] | None = None,
) -> list[Candidate]:
    """The candidates of putting the missing pods of ``key`` on each of ``options`` (non-empty),
    costed exactly; ``ties[i]`` breaks ties last; ``intra`` when the callers know each option's
    intra cost already. The look-ahead runs once for all of them."""
    traffic, ahead = measures(state, key, options, partners)
    return made(state, key, options, ties, intra, traffic, ahead)


def made(
    state: State,
    key: Key,
    options: Sequence[Sequence[Part]],
    ties: Sequence[int],
    intra: Sequence[int] | None,
    traffic: Sequence[float],
    ahead: Sequence[float],
) -> list[Candidate]:
    """The candidates of :func:`score_many` from its :func:`measures` of the same options."""
    r = state.replicas[key]
    kept = [(row, mask) for _, row, mask in r.fixed]
    out = []
    known = list(intra) if intra is not None else [None] * len(options)
    for parts, tie, estimate, cost, given in zip(options, ties, ahead, traffic, known, strict=True):
        inner = (
            given
            if given is not None
            else objective.intra_cost(state.index, gpu_set_of([*kept, *parts]))
        )
        frag = float(sum((int(state.free[row]) & ~mask).bit_count() for row, mask in parts))
        frag += _domain_left(state, parts)
        pref = state.preference_of(r.role, parts)
        out.append(Candidate(inner, cost, frag, tie, tuple(parts), estimate, pref))
    return out


def measures(
    state: State, key: Key, options: Sequence[Sequence[Part]], partners: Partners
) -> tuple[list[float], list[float]]:
    """Per option of :func:`score_many`: (its traffic to the placed partners, its look-ahead
    rounded), as the candidates carry them; each option's values do not depend on the others."""
    need = state.unplaced_peer_gpus(key)
    ahead = np.zeros(len(options), dtype=np.float64)
    traffic = np.zeros(len(options), dtype=np.float64)
    if not options or not (need[0] or partners):
        return traffic.tolist(), ahead.tolist()
    flat = [part for parts in options for part in parts]
    rows = np.array([row for row, _ in flat], dtype=np.intp)
    masks = np.array([mask for _, mask in flat], dtype=np.int64)
    owner = np.repeat(np.arange(len(options)), [len(parts) for parts in options])
    if need[0]:
        room = state.capacity.room(need[1])
        estimates = lookahead.estimate(
            state, rows, masks, need, room, owner=owner, candidates=len(options)
        )
        ahead = np.round(estimates, 6)
    if partners:
        per_part = np.zeros(len(flat), dtype=np.float64)
        for p in partners:
            per_part += p.weight * pairsums.costs_to(state.index, p.summary, rows, masks)
        traffic = np.bincount(owner, weights=per_part, minlength=len(options)).astype(np.float64)
    return traffic.tolist(), ahead.tolist()


def best_of(
    state: State, key: Key, options: list[list[Part]], partners: Partners
) -> Candidate | None:
    """The best-ranked of ``options`` (empty options skipped), or None; the first of equals."""
    options = [parts for parts in options if parts]
    ties = [min(row for row, _ in parts) for parts in options]
    best = None
    for cand in score_many(state, key, options, partners, ties):
        if best is None or rank(state, cand) < rank(state, best):
            best = cand
    return best


def _domain_left(state: State, parts: Sequence[Part]) -> float:
    """``State.domain_left`` over the NVLink domains ``parts`` touch (each counted once; plain
    Python: a candidate touches a handful of nodes)."""
    clique_of = state.tree.ancestor_at[domain_tree.CLIQUE_LAYER]
    used: dict[int, int] = {}
    for row, mask in parts:
        c = int(clique_of[row])
        if c >= 0:
            used[c] = used.get(c, 0) + mask.bit_count()
    if not used:
        return 0.0
    room = state.capacity.room(1)
    return sum(max(int(room[c]) - n, 0) / 100 for c, n in sorted(used.items()))

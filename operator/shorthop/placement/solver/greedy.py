"""Phase 2, greedy: place every replica that misses pods, one at a time, in :func:`order`.

For one replica, :func:`place` gathers the candidates of phase 2b (``candidates.single_node``) and
2c (``fill.multi_node``) and keeps the best by ``score.rank`` (2d); under
``Strategy.FIRST_FIT`` it places pod by pod on the first node with room instead
(:func:`first_fit`). A replica with no candidate raises ``Failure`` with the reason from
``explain``. :func:`greedy` commits each choice to the state.

Callers: ``run`` (the strategies) and ``refine`` (placing a lifted replica again).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import tree as domain_tree
from shorthop.placement.bitsets import bits
from shorthop.placement.request import Pattern
from shorthop.placement.solver import candidates, explain, fill
from shorthop.placement.solver.state import Candidate, Failure, Key, State, Strategy


def order(state: State) -> list[Key]:
    """The order replicas are placed in, per strategy (largest first, or ids for first-fit;
    under ``COST`` the roles of an ``all-to-all`` deployment interleaved unless the state says
    otherwise: ``interleave`` off, or whole roles in the order of ``roles_first``)."""
    roles = state.request.roles
    if state.strategy is Strategy.FIRST_FIT:
        return sorted(state.replicas)
    if state.strategy is Strategy.PACK:
        return sorted(
            state.replicas,
            key=lambda k: (-roles[k[0]].pod_gpus, -roles[k[0]].gpus_per_replica, k),
        )
    largest_first = sorted(
        state.replicas,
        key=lambda k: (-roles[k[0]].gpus_per_replica, -roles[k[0]].pod_gpus, k),
    )
    if state.roles_first is not None:
        rank = {ri: i for i, ri in enumerate(state.roles_first)}
        return sorted(largest_first, key=lambda k: rank[k[0]])  # stable: largest first inside
    if not state.interleave or not any(
        e.pattern is Pattern.ALL_TO_ALL for e in state.request.traffic
    ):
        return largest_first  # (``run``'s largest-first start sets ``interleave`` False)
    return interleaved(state, largest_first)


def interleaved(state: State, keys: list[Key]) -> list[Key]:
    """Roles in proportion: next always the role with the smallest share of its replicas
    placed so far (ties: larger replicas first), so each replica of an ``all-to-all`` role
    lands next to a mix of the roles it talks to, and the roles stay mixed domain by domain.

    """
    by_role: dict[int, list[Key]] = {}
    for key in keys:
        by_role.setdefault(key[0], []).append(key)
    position = {ri: i for i, ri in enumerate(dict.fromkeys(k[0] for k in keys))}
    taken = dict.fromkeys(by_role, 0)
    out: list[Key] = []
    while len(out) < len(keys):
        ri = min(
            (r for r in by_role if taken[r] < len(by_role[r])),
            key=lambda r: (taken[r] / len(by_role[r]), position[r]),
        )
        out.append(by_role[ri][taken[ri]])
        taken[ri] += 1
    return out


def greedy(state: State, *, intra_above: int | None = None) -> bool:
    """Phase 2: place every replica that misses pods, in :func:`order`; raises ``Failure``.
    With ``intra_above``, stops (False) as soon as the replicas placed so far cost more inside
    than that: a replica's intra cost only adds to the state's total, so the finished start
    would too. True when every replica was placed."""
    spent = 0
    for key in order(state):
        if state.replicas[key].missing():
            state.commit(key, place(state, key))
            if intra_above is not None:
                spent += state.replica_intra(key)
                if spent > intra_above:
                    return False
    return True


def place(state: State, key: Key) -> Candidate:
    """The best candidate for the missing pods of ``key``; raises ``Failure`` when none fits."""
    r = state.replicas[key]
    role = state.request.roles[r.role]
    if state.strategy is Strategy.FIRST_FIT and role.replica_scope is None:
        return first_fit(state, key)
    tree = state.tree
    pods = len(r.missing())
    # phase 2a: capacity, pods per node and rolled up per domain (kept current by every commit)
    fit = state.capacity.pods_fit(r.role)
    cap = state.capacity.rolled_up(r.role)
    partners = state.partners(key)
    scoped = role.replica_scope is not None
    max_layer = int(tree.layer[tree.root])
    if role.replica_scope is not None:
        max_layer = tree.layer_of_tier(role.replica_scope)
    if r.fixed and scoped:
        anchor = fill.scope_anchor(state, key, max_layer)
        inside = np.zeros(len(fit), dtype=np.bool_)
        if anchor is not None:
            inside[tree.rows_under(anchor)] = True
        fit = np.where(inside, fit, 0)
        cap = tree.rollup(fit)
    # phase 2b: single-node candidates
    best = candidates.single_node(
        state, key, pods, fit, partners, nvlink_only=role.replica_scope == 0
    )
    if pods > 1 and max_layer > domain_tree.NODE_LAYER:
        # phase 2c: multi-node candidates; phase 2d: the best of all, by score.rank
        best = fill.multi_node(state, key, pods, fit, cap, partners, max_layer, best)
    if best is None:
        # per row, the domain holding it at the scope's layer (a node outside every NVLink
        # domain is its own), so the message names the room there is
        scope_cap = int(cap[tree.carried[max_layer]].max(initial=0))
        raise Failure(explain.why(state, key, fit, scope_cap if scoped else None))
    return best


def first_fit(state: State, key: Key) -> Candidate:
    """Pod by pod, the first node (row order) with room; the lowest free GPUs (first-fit).
    Capacity only shrinks while first-fit runs, so a cursor per role skips the full rows."""
    r = state.replicas[key]
    q = state.request.roles[r.role].pod_gpus
    fit = state.capacity.pods_fit(r.role)
    cursor = state.cursor.get(r.role, 0)
    parts: dict[int, int] = {}
    taken: dict[int, int] = {}
    for _ in r.missing():
        while cursor < len(fit) and fit[cursor] - taken.get(cursor, 0) <= 0:
            cursor = _next_with_room(fit, cursor + 1)
        if cursor == len(fit):
            raise Failure(explain.why(state, key, fit, None))
        row = cursor
        free = int(state.free[row]) & ~parts.get(row, 0)
        parts[row] = parts.get(row, 0) | sum(1 << g for g in bits(free)[:q])
        taken[row] = taken.get(row, 0) + 1
    state.cursor[r.role] = cursor
    # First-fit is never compared candidate by candidate; only the finished plan is scored.
    return Candidate(0, 0.0, 0.0, min(parts), tuple(sorted(parts.items())))


def _next_with_room(fit: NDArray[np.int64], start: int) -> int:
    """The first row from ``start`` on with room (``len(fit)`` when none): numpy over windows
    that double, so a long run of full rows costs a few calls, not a Python step per row."""
    size = 64
    while start < len(fit):
        hits = np.flatnonzero(fit[start : start + size] > 0)
        if hits.size:
            return start + int(hits[0])
        start += size
        size *= 2
    return len(fit)

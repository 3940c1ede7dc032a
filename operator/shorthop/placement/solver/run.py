"""The driver: phase 1 (scope), the strategies, phase 4 (the plan), and :func:`solve` itself.

:func:`solve` tries the domains of a deployment scope (phase 1) and runs the strategies on each
(:func:`_run`): greedy (phase 2) then refinement (phase 3) under ``Strategy.COST``, falling back
to ``PACK`` and then ``FIRST_FIT`` when a replica does not fit (a deployment that needs nearly
every free pod slot also gets a ``PACK`` start beside ``COST``'s), and always also from first-fit's
plan, keeping the cheaper (never worse than first-fit); a start whose every GPU pair is at the
least distance any two GPUs have (``floor``) is kept as it is, as nothing can beat it. A medium
instance then gets starts under every order of whole roles, swaps and evacuations (``medium``).
:func:`_plan_from` turns the final state into a scored
:class:`~shorthop.placement.plan.Plan` (phase 4).

Callers: ``placement.placers``, the controller, ``shorthop plan``, benchmarks (through the
package's ``solve``). Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import filters, objective
from shorthop.placement import tree as domain_tree
from shorthop.placement.bitsets import bits
from shorthop.placement.plan import Assignment, Cost, Plan, PodKey, Reason
from shorthop.placement.request import Pattern, Request
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.solver import floor, home, medium
from shorthop.placement.solver.fill import EVALUATE_ALL_BELOW
from shorthop.placement.solver.greedy import greedy
from shorthop.placement.solver.refine import refine
from shorthop.placement.solver.rescue import rescue
from shorthop.placement.solver.search import search, small
from shorthop.placement.solver.state import (
    Candidate,
    Failure,
    Fixed,
    State,
    Strategy,
    merged_masks,
)

STRATEGY_NAME = "shorthop"  # Plan.strategy of every plan this solver returns


def solve(snapshot: ClusterSnapshot, request: Request, *, fixed: Fixed | None = None) -> Plan:
    """Plan ``request`` on ``snapshot``; pods in ``fixed`` stay where they are.

    Parameters
    ----------
    snapshot : ClusterSnapshot
        Free GPUs; pods in ``fixed`` must already be accounted as used in it.
    request : Request
    fixed : mapping of PodKey -> (row, GPU indices), optional
        Existing pods to keep (scale-up keeps every existing replica; repair keeps survivors).

    Returns
    -------
    Plan
        Feasible with every pod assigned, or infeasible with reasons. Never raises for an
        infeasible request.

    Notes
    -----
    See the package docstring for the algorithm. Cost grows with the number of replicas times the
    number of candidate nodes (vectorised) plus a bounded number of domain fills per replica.
    """
    found = filters.role_filters(snapshot, request)
    exclusions = {
        role.name: dict(f.excluded)
        for role, f in zip(request.roles, found, strict=True)
        if f.excluded
    }
    plan = _solve(snapshot, request, fixed or {}, [f.preference for f in found])
    return dataclasses.replace(plan, exclusions=exclusions) if exclusions else plan


def _solve(
    snapshot: ClusterSnapshot,
    request: Request,
    fixed: Fixed,
    scores: list[NDArray[np.int64] | None],
) -> Plan:
    index = snapshot.index
    tree = domain_tree.tree(index)
    scope = (
        request.required_scope if request.required_scope is not None else request.preferred_scope
    )
    if scope is not None and tree.layer_of_tier(scope) < tree.layer[tree.root]:
        # phase 1: the best-fitting domains of the deployment's scope, each tried in full
        layer = tree.layer_of_tier(scope)
        counts = np.array([int(m).bit_count() for m in snapshot.free.tolist()], dtype=np.int64)
        usable = snapshot.schedulable
        fixed_rows = {row for row, _ in fixed.values()}
        need = _total_gpus(request) - sum(len(g) for _, g in fixed.values())
        free_under = tree.rollup(np.where(usable, counts, 0))
        verts = np.flatnonzero(tree.layer == layer)
        if fixed_rows:
            holders = set.intersection(*(set(tree.ancestors(r)) | {r} for r in fixed_rows))
            verts = np.array([v for v in verts.tolist() if v in holders], dtype=np.int64)
        fitting = verts[free_under[verts] >= need] if verts.size else verts
        fitting = fitting[_pods_fit_under(tree, snapshot, request, fixed, counts, fitting)]
        fitting = fitting[np.lexsort((fitting, free_under[fitting]))][
            : max(3, EVALUATE_ALL_BELOW // 4)
        ]
        plans = []
        last_failure: Reason | None = None
        for v in fitting.tolist():
            allowed = np.zeros(len(index.names), dtype=np.bool_)
            allowed[tree.rows_under(v)] = True
            try:
                attempt = _run(snapshot, request, allowed, fixed)
            except Failure as failure:
                last_failure = failure.reason
                continue
            plans.append(_plan_from(attempt, snapshot.free, scores))
        if plans:
            return min(plans, key=lambda p: p.cost.rank())
        if request.required_scope is not None:
            tier = index.tiers[scope]
            largest = int(free_under[verts].max()) if verts.size else 0
            if last_failure is None:
                last_failure = Reason(
                    "deployment-scope",
                    "spec.placement.required",
                    need,
                    largest,
                    f"the deployment needs {need} GPUs in one {tier}; "
                    f"the largest {tier} has {largest} free",
                )
            return _infeasible(last_failure)
    try:
        attempt = _run(snapshot, request, None, fixed)
    except Failure as failure:
        return _infeasible(failure.reason)
    return _plan_from(attempt, snapshot.free, scores)


def _run(
    snapshot: ClusterSnapshot, request: Request, allowed: NDArray[np.bool_] | None, fixed: Fixed
) -> State:
    """The strategies (:func:`_strategies`), then on a medium instance other role orders,
    swaps and evacuations (``medium``, kept only when cheaper). Raises ``Failure`` when no
    strategy finds room."""
    best = _strategies(snapshot, request, allowed, fixed)
    return medium.improve(best, snapshot, request, allowed, fixed)


def _strategies(
    snapshot: ClusterSnapshot, request: Request, allowed: NDArray[np.bool_] | None, fixed: Fixed
) -> State:
    """Greedy under ``COST``, falling back to ``PACK`` then ``FIRST_FIT`` when a replica does
    not fit; also starts from first-fit's plan and keeps whichever start ends cheaper, so the
    result is never worse than first-fit. Raises ``Failure`` when no strategy finds room."""
    failure: Failure | None = None
    for strategy in (Strategy.COST, Strategy.PACK, Strategy.FIRST_FIT):
        try:
            attempt = _construct(snapshot, request, allowed, fixed, strategy)
        except Failure as exc:
            failure = failure or exc
            continue
        if floor.at_floor(attempt):
            return attempt  # nothing is cheaper: refinement, search and first-fit could only tie
        refine(attempt)
        search(attempt)
        if strategy is Strategy.FIRST_FIT:
            return attempt
        first = State(snapshot, request, allowed, fixed, Strategy.FIRST_FIT)
        try:
            # costlier inside replicas already: its traffic need not be summed, nor its rest placed
            if not greedy(first, intra_above=attempt.total_cost()[0]):
                return attempt
        except Failure:
            return attempt
        if first.total_intra() > attempt.total_cost()[0]:
            return attempt  # the same, counting the replicas that kept every pod
        if first.total_cost() < attempt.total_cost():
            refine(first)
            if first.total_cost() < attempt.total_cost():
                return first
        return attempt
    assert failure is not None
    rescued = State(snapshot, request, allowed, fixed, Strategy.COST)
    if small(rescued) and rescue(rescued):
        # Every strategy failed, yet a placement exists (a tight small cluster): start from it.
        refine(rescued)
        search(rescued)
        return rescued
    raise failure


def _construct(
    snapshot: ClusterSnapshot,
    request: Request,
    allowed: NDArray[np.bool_] | None,
    fixed: Fixed,
    strategy: Strategy,
) -> State:
    """Phase 2 under ``strategy``; under ``COST`` for a deployment with ``all-to-all`` traffic
    also inside its homes (phase 1b), keeping the cheapest (:func:`_start_rank`). The
    unrestricted greedy is skipped when a home's start reaches the intra floor with traffic no
    higher than :func:`_nvlink_traffic_bound`, or when no NVLink domain has room for a replica
    of each end of an edge (:func:`_nvlink_pair_room`); the intra floor alone is not enough
    (1-GPU replicas are at the floor anywhere, also in a rack of PCIe nodes). A home that mirrors
    an earlier one (``home.mirrors``) is not run: its start would tie and lose to the earlier
    one. On a small instance the chosen start is handed back over the whole cluster
    (:func:`_unconfined`). The tightest rack or block holding the deployment gets a start when
    it can beat the best one (:func:`_network_start`), and a crowded deployment (:func:`_crowded`,
    not small) one with ``PACK``, kept only when cheaper. Raises ``Failure`` when nothing fits."""
    starts: list[State] = []
    attempt = State(snapshot, request, allowed, fixed, strategy)
    network: int | None = None  # the tightest rack or block holding it (home.candidates)
    if strategy is Strategy.COST and any(e.pattern is Pattern.ALL_TO_ALL for e in request.traffic):
        tightest, homes, network = home.candidates(attempt)
        base = allowed if allowed is not None else np.ones(len(snapshot.free), np.bool_)
        tight_start: list[State] = []
        distinct: list[int] = []
        for v in homes:  # a home whose start can only mirror an earlier one's is not run
            if not any(home.mirrors(attempt, u, v, base) for u in distinct):
                distinct.append(v)
        homes = distinct
        for v in ([] if tightest is None else [tightest]) + homes:
            inside = State(snapshot, request, base & home.rows_of(attempt, v), fixed, strategy)
            try:
                greedy(inside)
            except Failure:
                continue
            (tight_start if v == tightest else starts).append(inside)
        # A home at the intra floor makes the unrestricted greedy moot when its traffic is as
        # if every KV pair were on NVLink, or when no NVLink domain has room for a replica of
        # each end of an edge (then no KV pair can be on NVLink, wherever the replicas go).
        intra_floor = home.intra_floor(attempt)
        bound = _nvlink_traffic_bound(attempt) if _nvlink_pair_room(attempt) else float("inf")
        if any(s.total_cost()[0] == intra_floor and s.total_cost()[1] <= bound for s in starts):
            return _unconfined(_best_start(tight_start + starts), attempt, allowed, fixed)
        starts = tight_start + starts
    reach = _reach(attempt)  # read before greedy takes the capacity
    # (a small instance is left to the exhaustive search, which proves its optimum)
    crowded = strategy is Strategy.COST and not small(attempt) and _crowded(attempt)
    try:
        greedy(attempt)
    except Failure:
        if not starts:
            raise
    else:
        starts.append(attempt)
    best = _best_start(starts)
    if reach is not None and reach.missed(best):
        largest = State(snapshot, request, allowed, fixed, strategy)
        largest.interleave = False
        try:
            greedy(largest)
        except Failure:
            return _unconfined(best, attempt, allowed, fixed)
        best = _best_start([best, largest])
    if network is not None:
        best = _network_start(best, attempt, network, allowed, fixed)
    if crowded:
        # Nearly every free slot is needed: where each replica goes decides where the others
        # can, and the cheapest spot for each in turn can leave a later one split over the
        # cluster; best fit (``PACK``, largest first) keeps the large replicas whole.
        packed = State(snapshot, request, allowed, fixed, Strategy.PACK)
        try:
            greedy(packed)
        except Failure:
            return _unconfined(best, attempt, allowed, fixed)
        packed.strategy = Strategy.COST
        if packed.total_cost() < best.total_cost():
            best = packed  # only when cheaper: ties keep the starts' own choice
    return _unconfined(best, attempt, allowed, fixed)


def _network_start(
    best: State,
    attempt: State,
    vertex: int,
    allowed: NDArray[np.bool_] | None,
    fixed: Fixed,
) -> State:
    """``best``, or the start inside network domain ``vertex`` (the tightest that holds the
    deployment, ``home.candidates``) when that one is cheaper. Tried only when every KV pair at
    the longest distance inside it would still cost less traffic than ``best`` has
    (``home.traffic_bound_inside``): one more greedy run, over one rack or block."""
    if home.traffic_bound_inside(attempt, vertex) >= best.total_cost()[1]:
        return best
    base = allowed if allowed is not None else np.ones(len(attempt.snapshot.free), np.bool_)
    inside = State(
        attempt.snapshot,
        attempt.request,
        base & home.rows_of(attempt, vertex),
        fixed,
        attempt.strategy,
    )
    try:
        greedy(inside)
    except Failure:
        return best
    return _best_start([best, inside])


def _unconfined(
    start: State, attempt: State, allowed: NDArray[np.bool_] | None, fixed: Fixed
) -> State:
    """``start`` as it is, unless it is a home's start on a small instance: then its placement
    moved into a state over everything ``attempt`` may use, so that refinement and the
    exhaustive search after it look beyond the home (on a large instance they stay inside it,
    which keeps them fast)."""
    confined = any(
        not np.array_equal(mine, whole)
        for mine, whole in zip(start.base_usable, attempt.base_usable, strict=True)
    )
    if not confined or not small(attempt):
        return start
    out = State(attempt.snapshot, attempt.request, allowed, fixed, attempt.strategy)
    for key, r in start.replicas.items():
        parts = tuple(sorted(merged_masks((row, mask) for _, row, mask in r.placed).items()))
        if parts:
            out.commit(key, Candidate(0, 0.0, 0.0, parts[0][0], parts))
    return out


@dataclasses.dataclass(frozen=True)
class _Reach:
    """What every role of a deployment could reach on its own, read before greedy runs: the
    intra floor (``home.intra_floor`` with ``home.floor_within_reach``), or, for replicas that
    fit no single node, room for each inside one NVLink domain (``home.nvlink_slots_suffice``).
    A start that misses it is joined by one with the largest replicas first: interleaved roles
    keep each replica next to the others, but a small replica can take the node or the trays a
    large one needed whole, and the large one is split across NVLink domains."""

    floor: int | None
    nvlink_slots: bool

    def missed(self, start: State) -> bool:
        if self.floor is not None:
            return start.total_cost()[0] > self.floor
        return self.nvlink_slots and _splits_an_nvlink_replica(start)


def _reach(attempt: State) -> _Reach | None:
    """:class:`_Reach` of an ``all-to-all`` deployment under ``COST`` that is not small (the
    search proves those); None when neither bound holds (then no largest-first start)."""
    if attempt.strategy is not Strategy.COST or small(attempt):
        return None
    if not any(e.pattern is Pattern.ALL_TO_ALL for e in attempt.request.traffic):
        return None
    floor_ = home.intra_floor(attempt)
    if floor_ is not None:
        return _Reach(floor_, False) if home.floor_within_reach(attempt) else None
    return _Reach(None, True) if home.nvlink_slots_suffice(attempt) else None


CROWDED = 0.75  # the share of the free pod slots a deployment needs to get a PACK start too


def _crowded(state: State) -> bool:
    """Whether the missing pods need at least :data:`CROWDED` of the free slots of some pod
    size the cluster (or the rows ``state`` may use) has (``home.pod_slots_suffice``'s slots)."""
    pods: dict[int, int] = {}
    for key, r in state.replicas.items():
        missing = len(r.missing())
        if missing:
            q = state.request.roles[key[0]].pod_gpus
            pods[q] = pods.get(q, 0) + missing
    usable = np.where(state.capacity.usable_any, state.count, 0)
    for q in pods:
        slots = int((usable // q).sum())
        want = sum(n * (g // q) for g, n in pods.items() if g >= q)
        if want >= CROWDED * slots:
            return True
    return False


def _splits_an_nvlink_replica(state: State) -> bool:
    """Whether some replica of ``state`` spans more than one NVLink domain (nodes outside any
    clique count as their own)."""
    clique = state.index.clique_of
    for r in state.replicas.values():
        domains = {int(clique[row]) if clique[row] >= 0 else -1 - row for _, row, _ in r.parts()}
        if len(domains) > 1:
            return True
    return False


def _nvlink_traffic_bound(state: State) -> float:
    """The traffic cost if every KV GPU pair were an NVLink pair at the NVLink-domain distance
    (between two nodes of one NVL72-style clique): per edge, its weight times the GPU pairs it
    pays for (``all-to-all``: those of one replica pair, the mean; ``paired``: those of every
    peer pair) times that distance."""
    distance = 2 * state.index.config.weights.nvlink_domain
    return home.paid_gpu_pairs(state) * distance + 1e-6


def _nvlink_pair_room(state: State) -> bool:
    """Whether some NVLink domain (an NVL72-style clique, or a node with NVLink between its
    GPUs) has free GPUs for one replica of each end of some traffic edge at once."""
    index, tree = state.index, state.tree
    roles = state.request.roles
    want = min(
        (
            roles[e.source].gpus_per_replica + roles[e.target].gpus_per_replica
            for e in state.request.traffic
        ),
        default=0,
    )
    if not want or not index.classes:
        return False
    usable = state.capacity.usable_any
    linked = np.array(
        [bool(c.nvlink[~np.eye(c.gpus, dtype=np.bool_)].any()) for c in index.classes],
        dtype=np.bool_,
    )
    alone = usable & (index.clique_of < 0) & linked[index.class_of]
    if alone.any() and int(state.count[alone].max()) >= want:
        return True
    cliques = tree.layer_vertices[domain_tree.CLIQUE_LAYER]
    if not cliques.size:
        return False
    room = tree.rollup(np.where(usable, state.count, 0))
    return bool(room[cliques].max() >= want)


def _best_start(starts: list[State]) -> State:
    """The first of ``starts`` by :func:`_start_rank` (the earliest of equals). What a start
    takes of the cluster's whole units is counted only among those tied on cost: it scans the
    NVLink domains touched, and most runs have one start, or starts of different costs."""
    low = min(s.total_cost() for s in starts)
    tied = [s for s in starts if s.total_cost() == low]
    return tied[0] if len(tied) == 1 else min(tied, key=wholes_taken)


def _start_rank(state: State) -> tuple[tuple[int, float], tuple[int, int, float]]:
    """Starts compare by (intra, traffic) cost, then by what they take of the cluster's whole
    units (``wholes_taken``): equal plans keep the one that leaves more free for large replicas."""
    return state.total_cost(), wholes_taken(state)


def wholes_taken(state: State) -> tuple[int, int, float]:
    """What the pods placed in ``state`` take of the cluster's whole units, fewest first: the
    NVLink domains that were entirely free (an NVL72-style clique, or a node outside any clique),
    then the nodes that were entirely free, then the free GPUs left on the nodes touched plus a
    hundredth of those left in the cliques touched (``objective.fragmentation``)."""
    index = state.index
    before = state.snapshot.free_counts
    rows = sorted({row for r in state.replicas.values() for _, row, _ in r.placed})
    if not rows:
        return 0, 0, 0.0
    total = np.array([index.gpus(row) for row in rows], dtype=np.int64)
    whole = before[rows] == total
    clique = index.clique_of[rows]
    domains = int((whole & (clique < 0)).sum())
    clique_left = 0
    for c in np.unique(clique[clique >= 0]).tolist():
        members = np.flatnonzero(index.clique_of == c)
        free = before[members]
        if all(int(free[i]) == index.gpus(int(m)) for i, m in enumerate(members.tolist())):
            domains += 1
        clique_left += int(state.count[members].sum())
    node_left = int(state.count[rows].sum())
    return domains, int(whole.sum()), node_left + clique_left / 100


def _pods_fit_under(
    tree: domain_tree.DomainTree,
    snapshot: ClusterSnapshot,
    request: Request,
    fixed: Fixed,
    counts: NDArray[np.int64],
    verts: NDArray[np.int64],
) -> NDArray[np.bool_]:
    """Of ``verts``, those with enough whole slots for the missing pods
    (``home.pod_slots_suffice``)."""
    kept: dict[str, int] = {}
    for key in fixed:
        kept[key.role] = kept.get(key.role, 0) + 1
    missing = [
        (r.pod_gpus, r.replicas * r.pods_per_replica - kept.get(r.name, 0)) for r in request.roles
    ]
    usable = np.where(snapshot.schedulable, counts, 0)
    return home.pod_slots_suffice(tree, usable, missing)[verts]


def _total_gpus(request: Request) -> int:
    return sum(r.replicas * r.gpus_per_replica for r in request.roles)


def _plan_from(
    state: State, free_before: NDArray[np.uint64], scores: list[NDArray[np.int64] | None]
) -> Plan:
    """Phase 4, feasible: every pod placed; score the plan with ``objective`` and name the lowest
    domain holding each replica."""
    index, tree = state.index, state.tree
    names = [r.name for r in state.request.roles]
    assignments = []
    for (ri, rid), r in sorted(state.replicas.items()):
        for pod, row, mask in sorted(r.parts()):
            assignments.append(
                Assignment(PodKey(names[ri], rid, pod), index.names[row], row, bits(mask))
            )
    placed = {
        PodKey(names[ri], rid, p) for (ri, rid), r in state.replicas.items() for p, _, _ in r.placed
    }
    new = [a for a in assignments if a.key in placed]
    ev = objective.evaluate(index, state.request, assignments)
    frag = objective.fragmentation(index, free_before, new)
    domains = []
    for (ri, rid), r in sorted(state.replicas.items()):
        rows = sorted({row for _, row, _ in r.parts()})
        common = set(tree.ancestors(rows[0])) | {rows[0]}
        for row in rows[1:]:
            common &= set(tree.ancestors(row)) | {row}
        lowest = min(common, key=lambda v: (int(tree.layer[v]), v), default=tree.root)
        domains.append(f"{names[ri]}-{rid}: {tree.name(lowest)}")
    return Plan(
        feasible=True,
        assignments=tuple(assignments),
        cost=Cost(
            ev.cost.intra,
            ev.cost.traffic,
            frag,
            objective.preference(state.request, assignments, scores),
        ),
        tiers=ev.tiers,
        replica_tiers=ev.replica_tiers,
        traffic=ev.edges,
        domains=tuple(domains),
        strategy=STRATEGY_NAME,
    )


def _infeasible(reason: Reason) -> Plan:
    """Phase 4, infeasible: the plan carries the reason."""
    return Plan(feasible=False, reasons=(reason,), strategy=STRATEGY_NAME)

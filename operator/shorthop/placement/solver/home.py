"""Phase 1b, homes: domains that can hold the whole deployment at its least intra cost.

With ``all-to-all`` traffic the traffic cost is the mean distance between the roles' GPUs, so
it is decided less by where any one replica goes than by how far apart the replicas end up.
Greedy places one replica at a time next to what is placed; when the cheapest spots for the
large replicas (a free NVSwitch node, free trays of an NVL72 rack) are scattered, it follows them
across the cluster. A *home* is chosen first, from rolled-up counts alone: a domain with a *slot*
for every missing replica, with slack (a slot: the whole replica inside one NVLink domain, a node
over NVLink alone or the nodes of one NVL72-style clique; for replicas that fit no NVLink domain,
room for their pods) and enough GPUs for all of them. Homes are searched layer by layer from
NVLink domains upward; the best fits of the lowest layer that has any are returned (above
NVLink domains, also the lowest domain with slack around the NVLink domain with the most room,
:func:`_around_roomiest_domain`), and ``run`` places the deployment in each (greedy restricted
to it) beside the unrestricted greedy, unless a home's start already reaches :func:`intra_floor`
with traffic as low as on NVLink (``run`` decides).
Beside them, the tightest NVLink domain (or node) that holds the deployment without slack is
always tried too (it never stops the unrestricted greedy from running): where greedy fits the
deployment into it, every KV transfer stays on NVLink (an NVL72 rack with exactly the GPUs a
deployment needs beats any roomier rack or block), and a partly used domain that holds it as
cheaply as an empty one is preferred by ``run`` at equal cost. So is the tightest rack or block
that holds it without slack, but only where every KV pair at the longest distance inside it
would cost less than the best start's traffic (:func:`traffic_bound_inside`): an extra greedy
run, which pays where greedy over roomier homes followed free GPUs across racks. A home that
:func:`mirrors` an
earlier one (the same rows, state and shape, e.g. two empty racks) is not
placed in: its start could only tie the earlier one, which ``run`` keeps.

Callers: ``run``. Reads a probe state (capacities, best subsets); changes nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import pairsums, subsets
from shorthop.placement import tree as domain_tree
from shorthop.placement.request import Pattern
from shorthop.placement.solver.state import State
from shorthop.topology.index import TopologyIndex

HOMES = 2  # best-fitting homes tried


def _least_intra(state: State, role: int) -> tuple[int | None, NDArray[np.int64]]:
    """(the least intra cost a whole replica of ``role`` has on any one node, replicas per row
    that get it); (None, zeros) when no node fits a whole replica."""
    shape = state.request.roles[role]
    rows = len(state.index.names)
    per_row = np.zeros(rows, dtype=np.int64)
    nvlink_only = shape.replica_scope == 0
    best = state.capacity.best((role, shape.pods_per_replica, nvlink_only))
    least = min((int(i.min()) for i in best.intra if i.size), default=int(subsets.INF))
    if least >= subsets.INF:
        return None, per_row
    fit = state.capacity.pods_fit(role)
    for cls_rows, intra in zip(best.rows, best.intra, strict=True):
        hit = cls_rows[intra == least]
        per_row[hit] = fit[hit] // shape.pods_per_replica
    return least, per_row


def intra_floor(state: State) -> int | None:
    """A lower bound on the plan's intra cost that greedy reaches when every missing replica
    gets a node at its role's least single-node cost (None when some role has no such node)."""
    total = 0
    least_of: dict[int, int | None] = {}
    for key, r in state.replicas.items():
        if r.fixed:
            if r.missing():
                return None
            continue
        if key[0] not in least_of:
            least_of[key[0]] = _least_intra(state, key[0])[0]
        least = least_of[key[0]]
        if least is None:
            return None
        total += least
    return total


def floor_within_reach(state: State) -> bool:
    """Whether every role, on its own, has enough nodes at its least single-node intra cost for
    all its missing replicas (necessary for a plan at :func:`intra_floor`)."""
    missing: dict[int, int] = {}
    for key, r in state.replicas.items():
        if r.missing():
            missing[key[0]] = missing.get(key[0], 0) + 1
    for role, n in missing.items():
        least, per_row = _least_intra(state, role)
        if least is None or int(per_row.sum()) < n:
            return False
    return True


def _slots(state: State, role: int, *, nvlink_only: bool = False) -> NDArray[np.int64]:
    """Per tree vertex: how many whole replicas of ``role`` fit inside one NVLink domain under it
    (a node over NVLink alone, or the nodes of one NVL72-style clique); for a role whose
    replicas fit in no NVLink domain, how many fit by pod capacity (unless ``nvlink_only``)."""
    tree = state.tree
    shape = state.request.roles[role]
    pods = shape.pods_per_replica
    fit = state.capacity.pods_fit(role)
    best = state.capacity.best((role, pods, True), keep=False)  # read once per start
    node_slots = np.zeros(len(state.index.names), dtype=np.int64)
    for cls_rows, intra in zip(best.rows, best.intra, strict=True):
        ok = cls_rows[intra < subsets.INF]
        node_slots[ok] = fit[ok] // pods
    values = np.zeros(tree.vertices, dtype=np.int64)
    clique = state.index.clique_of
    alone = clique < 0
    values[: len(node_slots)][alone] = node_slots[alone]
    members = np.flatnonzero(~alone & (fit > 0))
    if members.size:
        per_clique = np.bincount(clique[members], weights=fit[members]).astype(np.int64)
        values[tree.clique_base : tree.clique_base + len(per_clique)] = per_clique // pods
    slots = tree.rollup_vertices(values)
    slots[: len(node_slots)] = node_slots  # a node alone: its own replicas only
    if not slots[tree.root] and not nvlink_only:
        return state.capacity.rolled_up(role) // pods
    return slots


def nvlink_slots_suffice(state: State) -> bool:
    """Whether every role, on its own, has room for each of its missing replicas inside one
    NVLink domain (a node over NVLink alone, or one NVL72-style clique)."""
    missing: dict[int, int] = {}
    for key, r in state.replicas.items():
        if r.missing():
            missing[key[0]] = missing.get(key[0], 0) + 1
    root = state.tree.root
    return all(int(_slots(state, role, nvlink_only=True)[root]) >= n for role, n in missing.items())


class Homes(NamedTuple):
    """What :func:`candidates` offers ``run`` to place the deployment in."""

    tightest: int | None  # the tightest NVLink domain (or node) holding it, without slack
    homes: list[int]  # up to HOMES vertices of the lowest layer holding it with slack
    network: int | None  # the tightest network domain holding it, without slack


def candidates(state: State) -> Homes:
    """The tightest NVLink domain or node where every missing replica has a slot and all
    missing GPUs fit (None when there is none or it is among the homes); up to :data:`HOMES`
    vertices of the lowest layer where they fit with slack, best fit first; and the tightest
    rack, block or other network domain of the lowest such layer where they fit without slack
    (:func:`traffic_bound_inside` says when it is worth a start). Nothing when a replica being
    repaired keeps pods (it stays where they are) or nothing is missing."""
    tree = state.tree
    missing = _missing(state)  # None: replicas being repaired stay where their pods are
    if not missing:
        return Homes(None, [], None)
    fits, tight, room, need = _holders(state, missing)
    tightest: int | None = None
    network: int | None = None
    best: list[int] = []
    for layer in range(int(tree.layer[tree.root])):
        verts = np.flatnonzero(tight & (tree.layer == layer))
        if verts.size and layer <= domain_tree.CLIQUE_LAYER and tightest is None:
            # One NVLink domain (or node): without slack greedy may fail in it (the start is
            # skipped then); where it succeeds as cheaply it leaves roomier domains whole.
            tightest = int(verts[np.lexsort((verts, room[verts]))][0])
        if verts.size and layer > domain_tree.CLIQUE_LAYER and network is None:
            # Homes need slack, so a rack of a few nodes with just enough room is never one;
            # yet where greedy fits the deployment into it, every KV pair stays in that rack.
            network = int(verts[np.lexsort((verts, room[verts]))][0])
        verts = verts[fits[verts]]
        if verts.size and not best:
            best = [int(v) for v in verts[np.lexsort((verts, room[verts]))][:HOMES]]
            if layer > domain_tree.CLIQUE_LAYER:
                around = _around_roomiest_domain(tree, room, fits, need)
                if around is not None and around not in best:
                    best.append(around)
        if best and network is not None:
            break
    if tightest in best:
        tightest = None
    if network in best:
        network = None
    return Homes(tightest, best, network)


def _missing(state: State) -> dict[int, int] | None:
    """Missing replicas per role; None when a replica being repaired keeps pods."""
    missing: dict[int, int] = {}
    for key, r in state.replicas.items():
        if r.missing():
            if r.fixed:
                return None
            missing[key[0]] = missing.get(key[0], 0) + 1
    return missing


def _holders(
    state: State, missing: dict[int, int]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.int64], int]:
    """Per tree vertex: whether it holds every missing replica with slack, whether it holds
    them at all (a slot each, room for all their GPUs), its free GPUs; and the GPUs missing."""
    tree = state.tree
    fits = np.ones(tree.vertices, dtype=np.bool_)
    tight = np.ones(tree.vertices, dtype=np.bool_)
    need = 0
    for role, n in missing.items():
        slots = _slots(state, role)
        # Slack: the other roles' pods take GPUs of the same nodes.
        fits &= slots >= n + (n + 1) // 2
        tight &= slots >= n
        need += n * state.request.roles[role].gpus_per_replica
    usable = np.where(state.capacity.usable_any, state.count, 0)
    room = tree.rollup(usable)
    fits &= room >= need + need // 2
    tight &= room >= need
    # Without slack, GPU counts are not enough: fragmented nodes may have the GPUs but not in
    # pieces as large as the pods (greedy would run only to fail).
    roles = state.request.roles
    pods = [(roles[r].pod_gpus, n * roles[r].pods_per_replica) for r, n in missing.items()]
    tight &= pod_slots_suffice(tree, usable, pods)
    return fits, tight, room, need


def pod_slots_suffice(
    tree: domain_tree.DomainTree, counts: NDArray[np.int64], pods: list[tuple[int, int]]
) -> NDArray[np.bool_]:
    """Per tree vertex: whether the free GPUs ``counts`` (per row, 0 where unusable) under it
    have enough whole slots for ``pods`` (GPUs per pod, pods): per pod size ``q``, every pod of
    ``q`` GPUs or more takes ``pod_gpus // q`` free ``q``-GPU slots of one node (sizes are
    powers of two). Necessary, so no domain that could hold them is dropped; GPU counts alone
    let fragmented domains pass."""
    ok = np.ones(tree.vertices, dtype=np.bool_)
    for q in sorted({g for g, n in pods if g > 0 and n > 0}):
        slots = tree.rollup((counts // q).astype(np.int64))
        ok &= slots >= sum(n * (g // q) for g, n in pods if g >= q and n > 0)
    return ok


def traffic_bound_inside(state: State, vertex: int) -> float:
    """An upper bound on the traffic cost of any placement of the deployment inside the
    network domain ``vertex`` (tree layer >= 2): every KV GPU pair at the longest distance two
    GPUs under it can have (across nodes: both GPUs' longest way up plus the domain's switch
    path; on one node: the longest distance of its class). Greedy over the homes follows the
    cheapest spot of each replica across NVLink domains of several racks (1-GPU replicas on
    trays of five NVL72 racks: mean KV distance 444); inside one rack of three HGX nodes every
    KV pair costs at most 200."""
    index = state.index
    rows = np.flatnonzero(rows_of(state, vertex) & index.alive)
    if not rows.size:
        return float("inf")
    terms = pairsums.gpu_terms(index)
    layer = int(state.tree.layer[vertex])
    across = 2 * int(terms.up[rows].max()) + int(pairsums.network_h2(index)[layer - 2])
    within = max(int(index.classes[c].dist.max()) for c in np.unique(index.class_of[rows]))
    return paid_gpu_pairs(state) * max(across, within)


def paid_gpu_pairs(state: State) -> float:
    """The KV GPU pairs the traffic cost pays for, weighted: per edge, its weight times the GPU
    pairs of one replica pair (``all-to-all``: the cost is their mean) or of every peer pair
    (``paired``). Times a distance, the traffic cost were every pair at that distance."""
    roles = state.request.roles
    total = 0.0
    for edge in state.request.traffic:
        source, target = roles[edge.source], roles[edge.target]
        if not source.replicas or not target.replicas:
            continue
        pairs = 1 if edge.pattern is Pattern.ALL_TO_ALL else max(source.replicas, target.replicas)
        total += edge.weight * pairs * source.gpus_per_replica * target.gpus_per_replica
    return total


def _around_roomiest_domain(
    tree: domain_tree.DomainTree, room: NDArray[np.int64], fits: NDArray[np.bool_], need: int
) -> int | None:
    """The lowest domain that holds the deployment with slack around the NVLink domain with
    the most room, when that room is at least half of what the deployment needs; else None.
    The best-fitting homes are chosen by room alone, so when no NVLink domain holds the whole
    deployment they can be racks of nodes where every KV transfer crosses the network, while a
    rack or block around a roomy NVL72-style domain keeps most of them on NVLink."""
    cliques = tree.layer_vertices[domain_tree.CLIQUE_LAYER]
    if not cliques.size:
        return None
    roomiest = int(cliques[np.argmax(room[cliques])])  # the lowest id among equals
    if 2 * int(room[roomiest]) < need:
        return None
    for v in tree.ancestors(roomiest):
        if fits[v]:
            return v
    return None


def rows_of(state: State, vertex: int) -> NDArray[np.bool_]:
    """Mask of the rows under ``vertex``."""
    tree = state.tree
    layer = int(tree.layer[vertex])
    if layer == 0:
        mask = np.zeros(len(state.index.names), dtype=np.bool_)
        mask[vertex] = True
        return mask
    out: NDArray[np.bool_] = tree.ancestor_at[layer] == vertex
    return out


def mirrors(state: State, first: int, second: int, base: NDArray[np.bool_]) -> bool:
    """Whether greedy restricted to home ``second`` can only mirror greedy restricted to home
    ``first`` (an earlier vertex of the same layer): then both starts end at the same cost and
    the same whole units taken, and ``run`` keeps the earlier of equals, so ``second`` need not
    run. True only when nothing a start reads tells the two apart:

    - no pod is kept anywhere (a kept pod's distance to the home would differ);
    - the rows under each, in row order, pair up one to one with the same free GPUs, headroom,
      readiness, ``base``, usability and preference per role, node class, uplink and fabric
      distances;
    - every tree layer, network level and NVLink domain groups the paired rows alike, each id
      shifted by one constant (so vertex ids break ties alike), and every NVLink domain under
      either lies wholly under it (``run.wholes_taken`` counts whole domains).

    Everything else a start reads is summed up the tree from these rows alone (the rows
    outside are not usable in either start) or is the same for both.
    """
    if any(r.fixed for r in state.replicas.values()):
        return False
    tree, index, snap = state.tree, state.index, state.snapshot
    if int(tree.layer[first]) != int(tree.layer[second]):
        return False
    a = np.flatnonzero(rows_of(state, first))
    b = np.flatnonzero(rows_of(state, second))
    if len(a) != len(b) or not len(a):
        return False
    terms = pairsums.gpu_terms(index)
    per_row = (
        snap.free,
        state.base_headroom,
        base,
        *state.base_usable,
        *(p for p in state.preference if p is not None),
        snap.schedulable,
        index.alive,
        index.class_of,
        terms.up,
        terms.fab,
    )
    if any(not np.array_equal(values[a], values[b]) for values in per_row):
        return False
    ids, members = index.derived(_groupings)
    x, y = ids[:, a], ids[:, b]
    valid = x >= 0
    if not np.array_equal(valid, y >= 0):
        return False
    shift = y - x
    if (np.where(valid, shift, 0) != np.where(valid, shift[:, :1], 0)).any():
        return False  # per grouping, ids may differ by one constant only (rows share a domain)
    cliques = ids[-1]
    for rows in (a, b):
        inside = cliques[rows]
        inside = inside[inside >= 0]
        if inside.size and (np.bincount(inside, minlength=len(members)) != members)[inside].any():
            return False
    return True


def _groupings(index: TopologyIndex) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``[grouping, row]``: each row's vertex at every tree layer, domain id at every network
    level and NVLink domain last (-1: none); and how many rows each NVLink domain has."""
    tree = domain_tree.tree(index)
    ids = np.vstack([tree.ancestor_at, index.dom.T, index.clique_of[None, :]]).astype(np.int64)
    cliques = index.clique_of[index.clique_of >= 0]
    members = np.bincount(cliques, minlength=len(index.clique_names)).astype(np.int64)
    return ids, members

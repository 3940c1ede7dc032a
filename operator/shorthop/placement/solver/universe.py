"""The exhaustive search's universe: which GPUs it may use and which stay where they are.

A :class:`Scope` names the nodes whose free GPUs the search may hand out, what is free on them
(GPUs and headroom) and, per replica, the pods that stay (:func:`whole`: the free GPUs of every
usable node and the pods the request keeps, the search of phase 3c; ``neighbourhood``: a few
nodes, and every pod elsewhere staying). :func:`problem` turns it into the distance matrix of the
universe and the replicas still to place. Twins (GPUs of a node that swapping changes no
distance for) let the search try one of each (:func:`twin_classes`, :func:`canonical_subsets`),
and :func:`highest_twins` hands out a node's highest free twins, as greedy does.

Callers: ``search`` and ``neighbourhood``. Reads the state; changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import pairsums
from shorthop.placement.solver.state import Key, PodPart, State
from shorthop.topology.index import NodeClass, TopologyIndex


def twin_classes(index: TopologyIndex, row: int) -> tuple[int, ...]:
    """Per GPU of ``row``, its twin class (the lowest GPU it is interchangeable with). The same
    for every node of one class with the same uplinks: kept with the index per (class, uplinks)."""
    up = pairsums.gpu_terms(index).up[row]
    known = index.derived(_twin_memo)
    shape = (int(index.class_of[row]), up.tobytes())
    found = known.get(shape)
    if found is None:
        found = known.setdefault(shape, _new_twin_classes(index.node_class(row), up))
    return found


@lru_cache(maxsize=4096)
def canonical_subsets(twins: tuple[int, ...], free: int, k: int) -> tuple[tuple[int, ...], ...]:
    """The ``k``-GPU subsets of the GPUs in ``free`` up to twins (``twins``: per GPU of the node,
    its twin class, :func:`twin_classes`): of each class the lowest GPUs first. A function of its
    arguments alone, kept across searches (the same node shapes and free masks recur)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for g in range(len(twins)):
        if free >> g & 1:
            by_class[twins[g]].append(g)
    classes = sorted(by_class.values())
    out = []
    for counts in product(*(range(len(c) + 1) for c in classes)):
        if sum(counts) == k:
            taken = (g for c, n in zip(classes, counts, strict=True) for g in c[:n])
            out.append(tuple(sorted(taken)))
    return tuple(out)


def _twin_memo(index: TopologyIndex) -> dict[tuple[int, bytes], tuple[int, ...]]:
    return {}


def _new_twin_classes(cls: NodeClass, up: NDArray[np.int64]) -> tuple[int, ...]:
    g = cls.gpus
    label = list(range(g))
    for i in range(g):
        for j in range(i):
            if label[j] == j and _twins(cls.dist, cls.nvlink, up, cls.fab, i, j):
                label[i] = j
                break
    return tuple(label)


def _twins(
    dist: NDArray[np.int64],
    nv: NDArray[np.bool_],
    up: NDArray[np.int64],
    fab: NDArray[np.int64],
    i: int,
    j: int,
) -> bool:
    if up[i] != up[j] or fab[i] != fab[j]:
        return False
    rest = np.ones(dist.shape[0], dtype=np.bool_)
    rest[[i, j]] = False
    return bool((dist[i, rest] == dist[j, rest]).all() and (nv[i, rest] == nv[j, rest]).all())


@dataclass
class Replica:
    key: Key
    role: int
    k: int  # new GPUs
    q: int
    fixed: list[int]  # universe ids of its kept GPUs
    scope_layer: int | None
    nvlink_only: bool
    anchor: frozenset[int] | None  # vertices holding its kept pods (``DomainTree.holders``)


@dataclass
class Problem:
    rows: list[int]
    gpu_id: dict[tuple[int, int], int]  # (row, gpu) -> universe id
    dist: NDArray[np.int64]
    replicas: list[Replica]
    free: dict[int, int]  # row -> free mask
    head: dict[int, list[int]]  # row -> [cpu, memory, pods]
    gpu_of: list[tuple[int, int]]  # universe id -> (row, gpu)
    placed: dict[Key, list[int]] = field(default_factory=dict)  # universe ids per replica
    role_placed: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    on_row: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    kept: dict[Key, list[PodPart]] = field(default_factory=dict)  # per replica: pods that stay
    scored: int = 0


@dataclass(frozen=True)
class Scope:
    """What one search may change: the free GPUs (row -> mask) and headroom of ``rows``, and
    per replica the pods that stay (``kept``; the others are placed by the search)."""

    rows: list[int]
    free: Mapping[int, int]
    head: Mapping[int, list[int]]
    kept: Mapping[Key, list[PodPart]]


def whole(state: State) -> Scope:
    """Every usable node with free GPUs in the snapshot; the pods the request keeps stay."""
    snap = state.snapshot
    usable = np.logical_or.reduce(state.usable)
    rows = [int(r) for r in np.flatnonzero(usable & (snap.free_counts > 0))]
    return Scope(
        rows,
        {row: int(snap.free[row]) for row in rows},
        {row: [int(v) for v in state.base_headroom[row]] for row in rows},
        {key: r.fixed for key, r in state.replicas.items()},
    )


def highest_twins(
    state: State, chosen: list[tuple[int, int]], free: Mapping[int, int]
) -> dict[tuple[int, int], int]:
    """Per chosen (row, GPU): the GPU to take instead, so that of each twin class a node gives
    its highest free GPUs (``free``: the scope's), as greedy does, not the lowest ones the
    search enumerates (the same cost: twins are interchangeable). kube-scheduler's allocator
    takes the lowest free devices first, so on DRA nodes this keeps the two schedulers apart
    (docs/design.md, DRA)."""
    out: dict[tuple[int, int], int] = {}
    by_row: dict[int, list[int]] = defaultdict(list)
    for row, gpu in chosen:
        by_row[row].append(gpu)
    for row, gpus in by_row.items():
        twins = twin_classes(state.index, row)
        mask = free[row]
        for cls in sorted({twins[g] for g in gpus}):
            mine = sorted(g for g in gpus if twins[g] == cls)
            pool = [g for g in range(len(twins)) if twins[g] == cls and mask >> g & 1]
            for old, new in zip(mine, pool[len(pool) - len(mine) :], strict=True):
                out[(row, old)] = new
    return out


def problem(state: State, scope: Scope) -> Problem:
    """The universe of ``scope``: the free GPUs of its rows and every GPU of a pod that stays,
    their distances (``pairsums.dense``), and the replicas with pods to place."""
    index = state.index
    gpus: list[tuple[int, int]] = []
    for row in scope.rows:
        gpus += [(row, g) for g in range(index.gpus(row)) if scope.free[row] >> g & 1]
    for parts in scope.kept.values():
        for _, row, mask in parts:
            gpus += [(row, g) for g in range(64) if mask >> g & 1]
    gpus = sorted(set(gpus))
    gpu_id = {g: i for i, g in enumerate(gpus)}
    dist = pairsums.dense(
        index,
        np.array([r for r, _ in gpus], dtype=np.intp),
        np.array([g for _, g in gpus], dtype=np.intp),
    )
    tree = state.tree
    replicas = []
    for key, r in sorted(state.replicas.items()):
        kept = scope.kept[key]
        if r.pods == len(kept):
            continue
        role = state.request.roles[r.role]
        fixed = [gpu_id[(row, g)] for _, row, mask in kept for g in range(64) if mask >> g & 1]
        layer = tree.layer_of_tier(role.replica_scope) if role.replica_scope is not None else None
        anchor = None
        if layer is not None and kept:
            anchor = frozenset.intersection(*(tree.holders(layer, row) for _, row, _ in kept))
        replicas.append(
            Replica(
                key,
                r.role,
                (r.pods - len(kept)) * role.pod_gpus,
                role.pod_gpus,
                fixed,
                layer,
                role.replica_scope == 0,
                anchor,
            )
        )
    # Largest first; among equal sizes the replicas with the most paired peers (a hub before
    # its spokes), so the spokes are costed against it and the bound cuts early.
    replicas.sort(key=lambda x: (-x.k, -x.q, -len(state.peers[x.key]), x.key))
    return Problem(
        rows=list(scope.rows),
        gpu_id=gpu_id,
        dist=dist,
        replicas=replicas,
        free={row: scope.free[row] for row in scope.rows},
        head={row: list(scope.head[row]) for row in scope.rows},
        gpu_of=gpus,
        kept={key: list(parts) for key, parts in scope.kept.items()},
    )

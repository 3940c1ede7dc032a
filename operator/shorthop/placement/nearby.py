"""Whether a plan's new replicas landed where the deployment already runs, and why not.

A scale-out or a repair places new replicas next to the pods that stay when there is room; when
a new replica ends up outside the narrowest domain holding every pod that stays (its NVLink
domain, else its finest shared network domain: the deployment's *home*), the operator says why
in a ``PlacedAway`` event: the GPUs free there that the role may use, against those it needed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import filters
from shorthop.placement.plan import Assignment, PodKey
from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.solver.explain import count
from shorthop.topology.index import TopologyIndex
from shorthop.topology.levels import NVLINK_DOMAIN


@dataclass(frozen=True, slots=True)
class Home:
    """The narrowest domain holding every pod that stays."""

    tier: str
    name: str
    rows: NDArray[np.bool_]  # [rows] the domain's nodes


@dataclass(frozen=True, slots=True)
class Away:
    """New replicas placed outside the deployment's home, with the room the home had."""

    home: Home
    replicas: tuple[tuple[str, int], ...]  # (role, replica id)
    free: Mapping[str, int]  # role -> GPUs free in the home that the role may use
    needed: Mapping[str, int]  # role -> GPUs its replicas placed away needed

    def message(self) -> str:
        """``decode-2, decode-3 placed outside nvlink-domain r1 where the deployment runs:
        0 GPUs free there for role decode (16 needed)``."""
        names = ", ".join(f"{role}-{rid}" for role, rid in self.replicas)
        why = "; ".join(
            f"{count(self.free[role], 'GPU')} free there for role {role} "
            f"({self.needed[role]} needed)"
            for role in sorted(self.needed)
        )
        return (
            f"{names} placed outside {self.home.tier} {self.home.name} "
            f"where the deployment runs: {why}"
        )


def home(index: TopologyIndex, rows: Iterable[int]) -> Home | None:
    """The NVLink domain of ``rows`` if they share one, else their finest shared network
    domain; None when they share only the cluster (or there are none)."""
    used = sorted(set(rows))
    if not used:
        return None
    cliques = {int(index.clique_of[r]) for r in used}
    if len(cliques) == 1 and min(cliques) >= 0:
        clique = cliques.pop()
        members = np.asarray(index.clique_of == clique)
        return Home(NVLINK_DOMAIN, index.clique_names[clique], members)
    for level in range(index.levels - 1, -1, -1):
        ids = {int(index.dom[r, level]) for r in used}
        if len(ids) == 1 and min(ids) >= 0:
            found = ids.pop()
            tier = index.tiers[index.tiers.index(NVLINK_DOMAIN) + index.levels - level]
            path = index.domain_paths[level][found]
            members = np.asarray(index.dom[:, level] == found)
            return Home(tier, str(path[-1]), members)
    return None


def away(
    snap: ClusterSnapshot,
    request: Request,
    assignments: Iterable[Assignment],
    kept: Mapping[PodKey, tuple[int, tuple[int, ...]]],
) -> Away | None:
    """The plan's new replicas (none of their pods kept) outside the home of the ``kept`` pods
    (pod -> (row, GPUs)); ``snap``: what the plan was made on (kept pods' GPUs taken).
    None when every new replica is home, or there is no home (nothing kept, or spread out)."""
    where = home(snap.index, (row for row, _ in kept.values()))
    if where is None:
        return None
    kept_replicas = {(k.role, k.replica) for k in kept}
    rows: dict[tuple[str, int], set[int]] = defaultdict(set)
    for a in assignments:
        replica = (a.key.role, a.key.replica)
        row = snap.index.row_of.get(a.node)
        if replica not in kept_replicas and row is not None:
            rows[replica].add(row)
    outside = sorted(r for r, used in rows.items() if not all(where.rows[u] for u in used))
    if not outside:
        return None
    roles = {r.name: r for r in request.roles}
    needed: dict[str, int] = defaultdict(int)
    for role, _ in outside:
        needed[role] += roles[role].gpus_per_replica
    free = {}
    counts = snap.free_counts if len(snap.free_counts) else np.zeros(len(where.rows), np.int64)
    for role in needed:
        usable = filters.role_filter(snap, roles[role]).usable
        n = min(len(usable), len(where.rows), len(counts))
        free[role] = int(counts[:n][usable[:n] & where.rows[:n]].sum())
    return Away(where, tuple(outside), free, dict(needed))

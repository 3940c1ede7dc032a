"""Which nodes a role may use, and which it prefers: a role's scheduling rules over a snapshot.

Filters (hard), per role and every node at once, in this order: the node is usable at all
(Ready, not cordoned, in the topology), its ``NoSchedule``/``NoExecute`` taints are tolerated,
``nodeName``, ``nodeSelector``, required node affinity, no host port of the role conflicts with
one bound on the node (by its pods, or pods the operator assumed there), and the node is not
excluded for the role after a kubelet rejected a pod of it there. A node left out is counted
under the first rule it fails (Kueue's ``ExclusionStats``), and :func:`describe` turns the
rules that left nodes out into the words and field paths of an infeasible plan's reason.

Scores (soft): the sum of the weights of the preferred node affinity terms a node matches. The
solver ranks them after the topology cost and before fragmentation (a preference never costs a
tier or an NVLink pair).

:class:`PlanPorts` keeps host ports apart *within* a plan: two pods that bind conflicting host
ports (two pods of one role with a host port, or pods of two roles sharing one) never share a
node.

Callers: the solver (``solver.state``, ``solver.explain``), the exact solver, the baselines and
the controller (``triage.anchor``'s masks, the check before a bind). Pure: reads the snapshot,
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import constraints
from shorthop.placement.request import Request, RoleRequest
from shorthop.placement.snapshot import ClusterSnapshot

# Why a usable node was left out for a role, in the order the rules are applied.
CAUSES = ("taints", "nodeName", "nodeSelector", "nodeAffinity", "hostPort", "rejected")


@dataclass(frozen=True, eq=False)
class RoleFilter:
    """One role's filters over a snapshot.

    ``usable``: rows its pods may use. ``by_labels``: the same without host ports (a pod already
    planned holds its own ports through its assumption). ``excluded``: nodes left out by each
    cause (only causes that left some out, in :data:`CAUSES` order), among the nodes usable at
    all. ``preference``: per row, the weight of the preferred terms it matches (None without
    preferred terms)."""

    usable: NDArray[np.bool_]
    by_labels: NDArray[np.bool_]
    excluded: tuple[tuple[str, int], ...]
    preference: NDArray[np.int64] | None

    def left_out(self) -> str:
        """``40 by nodeSelector, 2 by taints`` (empty when none)."""
        return ", ".join(f"{n} by {cause}" for cause, n in self.excluded)


def role_filter(snapshot: ClusterSnapshot, role: RoleRequest) -> RoleFilter:
    """The filters and scores of one role (see the module docstring).

    Notes
    -----
    O(rows) numpy work per rule the role has; label lookups go through the snapshot's
    ``LabelTable``, whose inverted index per label key is built once per node-set change.
    """
    base = snapshot.schedulable
    table = snapshot.node_labels
    c = role.constraints
    passes: list[tuple[str, NDArray[np.bool_] | None]] = [
        ("taints", snapshot.usable_rows(role.tolerations) if snapshot.taints else None),
        ("nodeName", table.node_name(c.node_name) if c.node_name is not None else None),
        ("nodeSelector", table.selector(c.node_selector) if c.node_selector else None),
        ("nodeAffinity", table.required(c.required) if c.required is not None else None),
        ("hostPort", _port_mask(snapshot, c.host_ports) if c.host_ports else None),
        ("rejected", _named(table, role.excluded) if role.excluded else None),
    ]
    usable = base.copy()
    by_labels = base.copy()
    excluded = []
    for cause, mask in passes:
        if mask is None:
            continue
        lost = int(np.count_nonzero(usable & ~mask))
        usable &= mask
        if cause != "hostPort":
            by_labels &= mask
        if lost:
            excluded.append((cause, lost))
    preference = table.preference(c.preferred) if c.preferred else None
    return RoleFilter(usable, by_labels, tuple(excluded), preference)


def role_filters(snapshot: ClusterSnapshot, request: Request) -> list[RoleFilter]:
    return [role_filter(snapshot, role) for role in request.roles]


def _port_mask(
    snapshot: ClusterSnapshot, ports: Sequence[constraints.HostPort]
) -> NDArray[np.bool_]:
    mask = np.ones(len(snapshot.schedulable), dtype=np.bool_)
    for row, bound in snapshot.host_ports.items():
        if row < len(mask) and constraints.ports_conflict(ports, bound):
            mask[row] = False
    return mask


def _named(table: constraints.LabelTable, names: frozenset[str]) -> NDArray[np.bool_]:
    mask = np.ones(len(table), dtype=np.bool_)
    for name in names:
        mask &= table.requirement(
            constraints.Requirement(constraints.NODE_NAME_FIELD, "NotIn", (name,), field=True)
        )
    return mask


def admits(role: RoleRequest, labels: Mapping[str, str], name: str) -> str | None:
    """Why a node with these labels may not take a pod of ``role`` now (``nodeName``, node
    selector, required node affinity, a rejection by its kubelet), or None when it may. The
    check made again just before a bind, against the node as it is then."""
    c = role.constraints
    if name in role.excluded:
        return f"node {name} is excluded for role {role.name}: its kubelet rejected a pod of it"
    if c.admits(labels, name):
        return None
    if c.node_name is not None and c.node_name != name:
        cause = "nodeName"
    elif any(labels.get(k) != v for k, v in c.node_selector):
        cause = "nodeSelector"
    else:
        cause = "nodeAffinity"
    field, text = describe(role, cause)
    return f"node {name} no longer matches {text} ({field})"


def describe(role: RoleRequest, cause: str) -> tuple[str, str]:
    """(field path, words) of the rule behind ``cause`` for ``role``."""
    c = role.constraints
    path = c.path
    if cause == "taints":
        return f"{path}.tolerations", "its tolerations (untolerated NoSchedule/NoExecute taints)"
    if cause == "nodeName":
        return f"{path}.nodeName", f"nodeName {c.node_name}"
    if cause == "nodeSelector":
        return f"{path}.nodeSelector", f"nodeSelector {c.describe_selector()}"
    if cause == "nodeAffinity":
        field = f"{path}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        text = f"required node affinity {c.describe_required()}"
        broken = [t.broken for t in c.required or () if t.broken is not None]
        return field, text + (f" [{broken[0]}]" if broken else "")
    if cause == "hostPort":
        ports = ", ".join(p.describe() for p in c.host_ports)
        return f"{path}.containers", f"hostPort {ports} (already bound there)"
    names = ", ".join(sorted(role.excluded)[:5]) + (", ..." if len(role.excluded) > 5 else "")
    return "status.excludedNodes", f"the kubelet rejections excluding {names}"


@dataclass(frozen=True, slots=True)
class Shortfall:
    """What a role's filters leave: nodes, their free GPUs, and room in whole pods."""

    field: str
    rules: str  # "nodeSelector a=b and required node affinity ..."
    plural: bool
    nodes: int
    free: int
    room: int  # GPUs in whole pods of the role's size

    def sentence(self, need: int) -> str:
        """``nodeSelector a=b leaves 3 nodes with 12 free GPUs; needs 16``."""
        verb = "leave" if self.plural else "leaves"
        room = f" ({self.room} in whole pods)" if self.room < self.free else ""
        return (
            f"{self.rules} {verb} {self.nodes} node{'' if self.nodes == 1 else 's'} with "
            f"{self.free} free GPUs{room}; needs {need}"
        )


def shortfall(snapshot: ClusterSnapshot, role: RoleRequest, found: RoleFilter) -> Shortfall | None:
    """The role's rules that left nodes out and what they leave, or None when none did, or
    only taints did (untolerated taints are the cluster's doing, not a rule of the template:
    the usual capacity reason says it better)."""
    if all(cause == "taints" for cause, _ in found.excluded):
        return None
    fields, texts = zip(*(describe(role, cause) for cause, _ in found.excluded), strict=True)
    rows = np.flatnonzero(found.usable)
    counts = snapshot.free_counts[rows] if len(snapshot.free_counts) else np.zeros(0, np.int64)
    q = max(role.pod_gpus, 1)
    return Shortfall(
        field=fields[0] if len(fields) == 1 else role.constraints.path,
        rules=" and ".join(texts),
        plural=len(texts) > 1,
        nodes=len(rows),
        free=int(counts.sum()),
        room=int(((counts // q) * q).sum()),
    )


class PlanPorts:
    """Host ports taken by a plan's own pods: per row, how many pods of each role with host
    ports it holds, and so where a role's pods may no longer go. Mutable scratch of one run."""

    def __init__(self, request: Request, rows: int) -> None:
        roles = request.roles
        self.active = any(r.constraints.host_ports for r in roles)
        self.clash = [
            [
                constraints.ports_conflict(a.constraints.host_ports, b.constraints.host_ports)
                for b in roles
            ]
            for a in roles
        ]
        self.load = np.zeros((len(roles), rows if self.active else 0), dtype=np.int64)

    def add(self, role: int, row: int, pods: int) -> None:
        """``pods`` pods of ``role`` arrive on ``row`` (negative: leave)."""
        if self.active and self.clash[role][role]:
            self.load[role, row] += pods

    def blocks(self, role: int, row: int) -> bool:
        """:meth:`blocked` for one row (cheap when no role binds host ports)."""
        if not self.active:
            return False
        return any(c and self.load[other, row] > 0 for other, c in enumerate(self.clash[role]))

    def blocked(self, role: int, rows: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Of ``rows``, those where a pod of the plan binds a host port that a pod of ``role``
        would clash with."""
        out = np.zeros(len(rows), dtype=np.bool_)
        if self.active:
            for other, clash in enumerate(self.clash[role]):
                if clash:
                    out |= self.load[other, rows] > 0
        return out

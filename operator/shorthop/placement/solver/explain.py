"""Phase 4, infeasible: why a replica found no room, as a ``Reason`` naming the field and numbers.

In order of what a user would fix first: the role's scheduling rules (node selector, node
affinity, node name, tolerations, host ports, kubelet rejections) leave fewer free GPUs than the
role needs (the rule's field, e.g. ``spec.roles[1].template.spec.nodeSelector``, with the nodes and
GPUs it leaves and the nodes each rule left out), a role binding host ports has more pods than
nodes it may use (one such pod per node), a pod larger than every usable node
(``spec.roles[r].gpusPerPod``), a resource besides GPUs its pods request (CPU, memory, pod
slots, ``rdma/ib``, hugepages...) left on its nodes for too few of them
(``spec.roles[r].template.spec.containers``), a replica scope no domain has room for
(``spec.roles[r].replicaScope``), or not enough capacity in the cluster (``spec.roles[r]``, with
what the rules leave when they left nodes out). The deployment-wide scope's reason is written by
``run``.

Callers: ``greedy`` (raises ``Failure`` with it). Reads the state; changes nothing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shorthop.placement import filters
from shorthop.placement.plan import Reason
from shorthop.placement.solver.state import Key, State


def why(state: State, key: Key, fit: NDArray[np.int64], scope_cap: int | None) -> Reason:
    """The reason replica ``key`` does not fit; ``fit`` is pods per node, ``scope_cap`` the most
    pods the largest domain of its replica scope can take (None without a replica scope)."""
    r = state.replicas[key]
    role = state.request.roles[r.role]
    pods, q = len(r.missing()), role.pod_gpus
    where = f"spec.roles[{r.role}]"
    found = filters.role_filter(state.snapshot, role)
    short = filters.shortfall(state.snapshot, role, found)
    # Pods of each role this run places (their replicas' pods that are not kept).
    to_place = [0] * len(state.request.roles)
    for x in state.replicas.values():
        to_place[x.role] += x.pods - len(x.fixed)
    if short is not None and to_place[r.role] * q > short.room:
        return Reason(
            "node-filter",
            short.field,
            to_place[r.role] * q,
            short.room,
            f"{short.sentence(to_place[r.role] * q)} for role {role.name} "
            f"(nodes left out: {found.left_out()})",
        )
    # Pods that bind clashing host ports: one per node, whichever role they belong to.
    clash = [j for j, c in enumerate(state.ports.clash[r.role]) if c]
    nodes = int(found.usable.sum())
    if clash and sum(to_place[j] for j in clash) > nodes:
        ports = ", ".join(p.describe() for p in role.constraints.host_ports)
        others = [state.request.roles[j].name for j in clash if j != r.role]
        also = f" or of role {', '.join(others)}" if others else ""
        needed = sum(to_place[j] for j in clash)
        return Reason(
            "host-port",
            f"{role.constraints.path}.containers",
            needed,
            nodes,
            f"role {role.name} binds hostPort {ports}, so a node takes one pod of it{also}; "
            f"{needed} pods need as many nodes and {count(nodes, 'node')} "
            f"{'passes' if nodes == 1 else 'pass'} its rules",
        )
    usable = state.base_usable[r.role]
    largest = max((state.index.gpus(int(row)) for row in np.flatnonzero(usable)), default=0)
    if largest < q:
        return Reason(
            "gpus-per-pod",
            f"{where}.gpusPerPod",
            q,
            largest,
            f"each pod of role {role.name} needs {q} GPUs on one node; "
            f"the largest usable node has {largest}",
        )
    short_of = _short_resource(state, r.role, usable, to_place[r.role])
    if short_of is not None:
        return short_of
    if role.replica_scope is not None and scope_cap is not None:
        tier = state.index.tiers[role.replica_scope]
        return Reason(
            "replica-scope",
            f"{where}.replicaScope",
            pods * q,
            scope_cap * q,
            f"replica {r.rid} of role {role.name} needs {count(pods, 'pod')} x {q} GPUs "
            f"= {pods * q} GPUs in one {tier}; "
            f"the largest free {tier} has room for {scope_cap * q}",
        )
    total = int(fit.sum())
    rules = (
        f"; {short.rules} {'leave' if short.plural else 'leaves'} {count(short.nodes, 'node')} "
        f"with {short.free} free GPUs"
        if short is not None
        else ""
    )
    return Reason(
        "capacity",
        where,
        pods * q,
        total * q,
        f"replica {r.rid} of role {role.name} needs {count(pods, 'more pod')} of {q} GPUs; "
        f"the cluster has room for {total} such pods ({total * q} GPUs) "
        f"after the rest of the deployment{rules}",
    )


def _short_resource(state: State, ri: int, usable: NDArray[np.bool_], pods: int) -> Reason | None:
    """The first resource besides GPUs (CPU, memory, pod slots, then the others the pods
    request: rdma/ib, hugepages...) of which the nodes the role may use have room, alone, for
    fewer than ``pods`` pods of role ``ri``; None when each alone has room for them all."""
    role = state.request.roles[ri]
    base = state.snapshot.headroom
    wanted = [
        ("cpu", role.cpu_millis, base[:, 0]),
        ("memory", role.memory_bytes, base[:, 1]),
        ("pods", 1, base[:, 2]),
    ]
    for name, amount in role.other:
        left = state.snapshot.other.get(name)
        wanted.append((name, amount, np.zeros(len(base), np.int64) if left is None else left))
    for name, amount, left in wanted:
        if amount <= 0:
            continue
        offer = np.maximum(left[usable], 0)
        room = int((offer // amount).sum())
        if room >= pods:
            continue
        total, holding = int(offer.sum()), int((offer > 0).sum())
        return Reason(
            "resources",
            f"{role.constraints.path}.containers",
            pods * amount,
            total,
            f"each pod of role {role.name} takes {_amount(name, amount)} {name}; the nodes it "
            f"may use have {_amount(name, total)} left ({count(holding, 'node')}), room for "
            f"{count(room, 'pod')} of the {pods} to place",
        )
    return None


def _amount(name: str, n: int) -> str:
    """``n`` of resource ``name`` as a quantity: CPUs from millicores, sizes in binary units."""
    if name == "cpu":
        return str(n // 1000) if n % 1000 == 0 else f"{n}m"
    if name in {"memory", "ephemeral-storage"} or name.startswith("hugepages-"):
        for suffix, unit in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
            if n and n % unit == 0:
                return f"{n // unit}{suffix}"
    return str(n)


def count(n: int, noun: str) -> str:
    """``1 pod``, ``2 pods``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")

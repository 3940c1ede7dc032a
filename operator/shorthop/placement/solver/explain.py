"""Phase 4, infeasible: why a replica found no room, as a ``Reason`` naming the field and numbers.

In order of what a user would fix first: a pod larger than every usable node
(``spec.roles[r].gpusPerPod``), a replica scope no domain has room for
(``spec.roles[r].replicaScope``), or not enough capacity in the cluster (``spec.roles[r]``).
The deployment-wide scope's reason is written by ``run``.

Callers: ``greedy`` (raises ``Failure`` with it). Reads the state; changes nothing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shorthop.placement.plan import Reason
from shorthop.placement.solver.state import Key, State


def why(state: State, key: Key, fit: NDArray[np.int64], scope_cap: int | None) -> Reason:
    """The reason replica ``key`` does not fit; ``fit`` is pods per node, ``scope_cap`` the most
    pods the largest domain of its replica scope can take (None without a replica scope)."""
    r = state.replicas[key]
    role = state.request.roles[r.role]
    pods, q = len(r.missing()), role.pod_gpus
    where = f"spec.roles[{role.name}]"
    usable = state.usable[r.role]
    largest = max((state.index.gpus(int(row)) for row in np.flatnonzero(usable)), default=0)
    if largest < q:
        return Reason(
            "gpus-per-pod",
            f"{where}.gpusPerPod",
            q,
            largest,
            f"each pod needs {q} GPUs on one node; the largest usable node has {largest}",
        )
    if role.replica_scope is not None and scope_cap is not None:
        tier = state.index.tiers[role.replica_scope]
        return Reason(
            "replica-scope",
            f"{where}.replicaScope",
            pods * q,
            scope_cap * q,
            f"replica {r.rid} needs {count(pods, 'pod')} x {q} GPUs = {pods * q} GPUs "
            f"in one {tier}; "
            f"the largest free {tier} has room for {scope_cap * q}",
        )
    total = int(fit.sum())
    return Reason(
        "capacity",
        where,
        pods * q,
        total * q,
        f"replica {r.rid} needs {count(pods, 'more pod')} of {q} GPUs; the cluster has room "
        f"for {total} such pods ({total * q} GPUs) after the rest of the deployment",
    )


def count(n: int, noun: str) -> str:
    """``1 pod``, ``2 pods``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")

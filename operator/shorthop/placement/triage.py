"""What to do with a deployment's existing pods before planning: the reconciler's decisions, pure.

Two steps, each a pure function returning a frozen value:

1. :func:`decide` sorts the pods against the request and one snapshot: which to keep (bound,
   healthy), which are created but unbound, which go and why (failed, on a node that is gone,
   NotReady, cordoned or overcommitted, left over from an earlier deployment of the name, no
   longer in the spec), which replicas a scale-down removes (incomplete ones first, then the
   most spread out: highest intra-replica cost), and the one replica a template change rolls
   (only while every replica is complete and ready: one at a time).
2. :func:`anchor`, on the freshest snapshot (the reconciler calls it under its planning lock),
   says what the solver keeps fixed: the kept pods, the unbound pods whose planned GPUs are
   still free and whose node still passes their role's scheduling rules (the others go), and
   the previous GPUs of replicas being replaced when they are all still free and their nodes
   pass the rules (sticky placement); with the GPUs the snapshot still shows free that those
   hold (``taken``, to mark used before solving). Bound pods stay where they are even when
   their node no longer matches (node affinity is *IgnoredDuringExecution*).

The reconciler then only orders the API calls. Callers: ``controller.reconcile``. Inputs are
:class:`PodState` (the operator's pod records are one), the
:class:`~shorthop.placement.request.Request`, each role's template hash, and the replica
placements of the previous status (:class:`PlacedReplica`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shorthop.placement import filters, objective
from shorthop.placement.bitsets import mask_of
from shorthop.placement.plan import PodKey
from shorthop.placement.request import Request
from shorthop.placement.snapshot import ClusterSnapshot

Placement = tuple[int, tuple[int, ...]]  # (row, GPU indices)


@dataclass(frozen=True, slots=True, kw_only=True)
class PodState:
    """What triage needs to know about one pod of the deployment (from its labels, annotations,
    spec and status)."""

    name: str
    uid: str
    node: str | None  # spec.nodeName: bound when set
    phase: str
    deleting: bool  # deletionTimestamp set
    ready: bool
    gpus: int  # GPUs it requests
    exact: tuple[int, ...] | None  # shorthop's GPU annotation
    owner_uid: str | None  # uid of the owning InferenceDeployment
    role: str | None
    replica: int | None
    pod: int | None
    template_hash: str | None
    failed_reason: str | None = None
    planned_node: str | None = None  # where shorthop planned it (set before binding)
    peers: tuple[tuple[str, int], ...] = ()  # paired peers it was told (role, replica)
    namespace: str = ""
    claims: tuple[str, ...] = ()  # ResourceClaims it references (pods on DRA nodes)

    @property
    def active(self) -> bool:
        return self.phase not in ("Succeeded", "Failed")

    @property
    def slot(self) -> PodKey:
        """Its (role, replica, pod) from its labels; -1 where a label is missing."""
        return PodKey(
            str(self.role),
            self.replica if self.replica is not None else -1,
            self.pod if self.pod is not None else -1,
        )


@dataclass(frozen=True, slots=True)
class PlacedPod:
    node: str
    gpus: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PlacedReplica:
    """One replica as the previous status placed it, pods in pod-index order."""

    role: str
    replica: int
    pods: tuple[PlacedPod, ...]


@dataclass(frozen=True, slots=True)
class Removal:
    """A pod to delete; ``force`` skips the grace period (its node is gone or unusable)."""

    pod: PodState
    force: bool
    why: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`. ``removals`` are listed in the order to delete them."""

    keep: Mapping[PodKey, PodState]  # bound and healthy: stay where they are
    unbound: Mapping[PodKey, PodState]  # created, never bound: bind or drop (see anchor)
    removals: tuple[Removal, ...]
    repairs: tuple[str, ...]  # why replicas are being repaired (one event)
    scaled_away: tuple[tuple[str, int], ...]  # (role, replica) removed by a scale-down
    rolled: tuple[str, int] | None  # the replica replaced for a template change
    # Names still held by pods going away (being deleted, or removed now): busy until seen gone.
    busy_names: frozenset[str] = field(default_factory=frozenset)

    @property
    def terminating(self) -> bool:
        return bool(self.busy_names)

    def busy(self, deployment: str, key: PodKey) -> bool:
        """The name of the pod ``key`` still belongs to a pod being deleted."""
        return key.name(deployment) in self.busy_names

    def present(self) -> set[PodKey]:
        return set(self.keep) | set(self.unbound)


@dataclass(frozen=True, slots=True)
class Anchors:
    """The outcome of :func:`anchor`: what the solver keeps fixed, and which unbound pods go."""

    fixed: Mapping[PodKey, Placement]  # every pod the plan keeps
    taken: Mapping[int, int]  # row -> GPUs fixed pods hold that the snapshot shows free
    bind: Mapping[PodKey, PodState]  # unbound pods kept: bound where they were planned
    dropped: tuple[Removal, ...]  # unbound pods whose GPUs are taken
    sticky: Mapping[PodKey, Placement]  # replicas replaced on their previous GPUs


def decide(
    request: Request,
    template_hashes: Mapping[str, str],
    owner_uid: str,
    pods: Sequence[PodState],
    snapshot: ClusterSnapshot,
) -> Decision:
    """Sort a deployment's pods (see the module docstring).

    Parameters
    ----------
    request : Request
        The deployment's roles (replicas, pods per replica).
    template_hashes : mapping of role name -> hash of its pod template
    owner_uid : str
        The deployment's uid: pods owned by another uid are left over from an earlier
        deployment of the same name.
    pods : sequence of PodState
        The deployment's pods, in name order (the order removals are made in).
    snapshot : ClusterSnapshot
        Which nodes exist and are usable, which are overcommitted; the index for costs.

    Returns
    -------
    Decision
    """
    roles = {r.name: r for r in request.roles}
    keep: dict[PodKey, PodState] = {}
    unbound: dict[PodKey, PodState] = {}
    deleting: set[str] = set()
    removals: list[Removal] = []
    repairs: list[str] = []
    for p in pods:
        key = p.slot
        if p.deleting:
            deleting.add(p.name)
            continue
        if p.owner_uid != owner_uid:
            removals.append(Removal(p, False, "left over from an earlier deployment of this name"))
            continue
        role = roles.get(str(p.role))
        if role is None or key.replica < 0 or not 0 <= key.pod < role.pods_per_replica:
            removals.append(Removal(p, False, "its role or pod index is no longer in the spec"))
            continue
        if not p.active:
            failed = p.failed_reason or p.phase
            removals.append(Removal(p, False, f"pod failed ({failed})"))
            repairs.append(f"pod {p.name} failed ({failed}); placing it again")
            continue
        if p.node and not snapshot.known(p.node):
            removals.append(Removal(p, True, f"node {p.node} is gone"))
            repairs.append(f"node {p.node} is gone; re-placing its pods")
            continue
        if p.node and not snapshot.usable(p.node):
            why = f"node {p.node} is NotReady, cordoned or no longer a GPU node"
            removals.append(Removal(p, True, why))
            repairs.append(f"node {p.node} is unavailable; re-placing its pods")
            continue
        (keep if p.node else unbound)[key] = p
    # On a DRA node: a GPU of ours that another claim holds too (a race with another
    # scheduler), or our claim holding other devices than planned (a device vanished from the
    # slice): move the pod and re-plan it; its claim goes with it.
    for k, p in sorted(keep.items(), key=lambda kp: kp[1].name):
        pod_key = f"{p.namespace}/{p.name}"
        if pod_key in snapshot.contested:
            why = f"a GPU of it on {p.node} is allocated to another ResourceClaim too"
        elif pod_key in snapshot.mismatched:
            why = f"its ResourceClaim does not hold the devices planned on {p.node}"
        else:
            continue
        del keep[k]
        removals.append(Removal(p, True, why))
        repairs.append(f"pod {p.name}: {why}; re-placing it")
    # A node where more GPUs are bound than it has (a bind raced with another scheduler):
    # move our newest pods off it and re-plan them.
    crowded: dict[str, int] = {}
    for k, p in sorted(keep.items(), key=lambda kp: kp[1].name, reverse=True):
        node = str(p.node)
        over = crowded.setdefault(node, snapshot.overcommitted.get(node, 0))
        if over > 0:
            del keep[k]
            crowded[node] = over - p.gpus
            removals.append(Removal(p, True, f"node {p.node} has more GPUs bound than it owns"))
            repairs.append(f"node {p.node} was overcommitted by a concurrent bind; re-planning")
    scaled = _scale_down(request, snapshot, keep, unbound, removals)
    rolled = _roll(request, template_hashes, keep, removals, rolling=not deleting and not unbound)
    return Decision(
        keep=keep,
        unbound=unbound,
        removals=tuple(removals),
        repairs=tuple(repairs),
        scaled_away=tuple(scaled),
        rolled=rolled,
        busy_names=frozenset(deleting | {r.pod.name for r in removals}),
    )


def _scale_down(
    request: Request,
    snapshot: ClusterSnapshot,
    keep: dict[PodKey, PodState],
    unbound: dict[PodKey, PodState],
    removals: list[Removal],
) -> list[tuple[str, int]]:
    """Remove surplus replicas, keeping the ones whose loss would cost most."""
    row_of = snapshot.index.row_of
    scaled: list[tuple[str, int]] = []
    for role in request.roles:
        present = sorted({k.replica for k in [*keep, *unbound] if k.role == role.name})
        surplus = len(present) - role.replicas
        if surplus <= 0:
            continue
        placed = {
            rid: [
                (row_of[str(p.node)], p.exact or ())
                for k, p in keep.items()
                if k.role == role.name and k.replica == rid and p.node in row_of
            ]
            for rid in present
        }
        sets = {rid: objective.gpu_set(pods) for rid, pods in placed.items()}
        # The cheapest to lose first: incomplete replicas (a pod or more not placed: a crash
        # mid scale-down can leave one with fewer pods, and fewer GPUs look cheaper), then the
        # most spread out, then the highest id.
        ranked = sorted(
            present,
            key=lambda rid: (
                len(placed[rid]) >= role.pods_per_replica,
                -objective.intra_cost(snapshot.index, sets[rid]) if sets[rid] else 0,
                -rid,
            ),
        )
        for rid in ranked[:surplus]:
            scaled.append((role.name, rid))
            for group in (keep, unbound):
                for k in [k for k in group if k.role == role.name and k.replica == rid]:
                    why = f"scaled {role.name} down to {role.replicas}"
                    removals.append(Removal(group.pop(k), False, why))
    return scaled


def _roll(
    request: Request,
    hashes: Mapping[str, str],
    keep: dict[PodKey, PodState],
    removals: list[Removal],
    *,
    rolling: bool,
) -> tuple[str, int] | None:
    """Template changed: replace one stale replica at a time, only while all others run."""
    replicas: dict[tuple[str, int], list[PodState]] = defaultdict(list)
    for k, p in keep.items():
        replicas[(k.role, k.replica)].append(p)
    # Only while every replica of every role is complete and ready (maxUnavailable = 1).
    complete = all(
        sum(
            1
            for (role, _), members in replicas.items()
            if role == r.name
            and len(members) == r.pods_per_replica
            and all(p.ready for p in members)
        )
        == r.replicas
        for r in request.roles
    )
    stale = sorted(
        key
        for key, members in replicas.items()
        if any(p.template_hash != hashes[key[0]] for p in members)
    )
    if not stale or not rolling or not complete:
        return None
    role, rid = stale[0]
    for k in [k for k in keep if (k.role, k.replica) == (role, rid)]:
        why = f"template of {role} changed; replacing replica {rid}"
        removals.append(Removal(keep.pop(k), False, why))
    return role, rid


def anchor(
    decision: Decision,
    request: Request,
    snapshot: ClusterSnapshot,
    previous: Iterable[PlacedReplica],
    assumed: Mapping[str, tuple[int, ...]],
    rules: Mapping[str, filters.RoleFilter] | None = None,
) -> Anchors:
    """What the solver keeps fixed (see the module docstring).

    Parameters
    ----------
    decision : Decision
        From :func:`decide`.
    request : Request
    snapshot : ClusterSnapshot
        The freshest state: GPUs kept must be free in it.
    previous : iterable of PlacedReplica
        The replica placements of the previous status.
    assumed : mapping of pod name -> GPU indices
        GPUs this operator assumed for an unbound pod on its planned node: they count as free
        for that pod.
    rules : mapping of role name -> RoleFilter, optional
        Each role's scheduling rules on ``snapshot`` (``filters.role_filter``); without them
        every usable node passes.

    Returns
    -------
    Anchors
    """
    row_of = snapshot.index.row_of
    fixed: dict[PodKey, Placement] = {}
    taken: dict[int, int] = defaultdict(int)
    for k, p in decision.keep.items():
        if p.node in row_of and p.exact:
            fixed[k] = (row_of[str(p.node)], p.exact)
    # Created but never bound (a crash, or a failed bind, between create and bind): keep if
    # its GPUs are free.
    bind: dict[PodKey, PodState] = {}
    dropped: list[Removal] = []

    def passes(role: str | None, row: int, *, own_ports: bool) -> bool:
        found = rules.get(str(role)) if rules is not None else None
        # An unbound pod's own assumption holds its host ports there: only its labels count.
        return found is None or bool((found.by_labels if own_ports else found.usable)[row])

    for k, p in decision.unbound.items():
        row = row_of.get(str(p.planned_node))
        if row is not None and not passes(p.role, row, own_ports=True):
            why = f"created but never bound, and {p.planned_node} no longer passes its rules"
            dropped.append(Removal(p, False, why))
            continue
        if row is not None and p.exact and snapshot.usable(p.planned_node):
            wanted = mask_of(p.exact)
            free = (int(snapshot.free[row]) | mask_of(assumed.get(p.name, ()))) & ~taken[row]
            if free & wanted == wanted:
                fixed[k] = (row, p.exact)
                taken[row] |= wanted
                bind[k] = p
                continue
        dropped.append(Removal(p, False, "created but never bound, and its GPUs are taken"))
    # Replicas being replaced keep their previous GPUs where still free (sticky placement).
    roles = {r.name: r for r in request.roles}
    present = decision.keep.keys() | bind.keys()
    sticky: dict[PodKey, Placement] = {}
    for replica in previous:
        role = roles.get(replica.role)
        if role is None or replica.replica >= role.replicas:
            continue
        keys = [PodKey(role.name, replica.replica, p) for p in range(role.pods_per_replica)]
        if any(k in fixed or k in present for k in keys):
            continue
        if len(replica.pods) != role.pods_per_replica:
            continue
        candidate: dict[PodKey, Placement] = {}
        for key, pod in zip(keys, replica.pods, strict=True):
            row = row_of.get(pod.node)
            wanted = mask_of(pod.gpus)
            if (
                row is None
                or len(pod.gpus) != role.pod_gpus
                or not snapshot.schedulable[row]
                or not passes(role.name, row, own_ports=False)
                or (int(snapshot.free[row]) & ~taken[row]) & wanted != wanted
            ):
                break
            candidate[key] = (row, pod.gpus)
        else:
            for key, (row, gpus) in candidate.items():
                fixed[key] = sticky[key] = (row, gpus)
                taken[row] |= mask_of(gpus)
    return Anchors(
        fixed=fixed,
        taken={row: mask for row, mask in taken.items() if mask},
        bind=bind,
        dropped=tuple(dropped),
        sticky=sticky,
    )


def told_peers(decision: Decision) -> dict[tuple[str, int], set[tuple[str, int]]]:
    """The paired peers each replica that stays was told (its pods' peer annotation), so that
    ``request.with_pairs`` keeps those pairs while both replicas exist."""
    told: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
    for key, pod in [*decision.keep.items(), *decision.unbound.items()]:
        told[(key.role, key.replica)].update(pod.peers)
    return dict(told)


def missing_pods(request: Request, present: Iterable[PodKey]) -> bool:
    """Whether some desired pod does not exist yet. Counted, not enumerated: the schema allows
    1024 replicas of 4096 one-GPU pods per role, and a set of 4 million keys took seconds of
    every visit (found by chaos/test_fuzz.py)."""
    roles = {r.name: r for r in request.roles}
    count = 0
    for key in present:
        role = roles.get(key.role)
        if (
            role is not None
            and 0 <= key.replica < role.replicas
            and 0 <= key.pod < role.pods_per_replica
        ):
            count += 1
    return count < sum(r.replicas * r.pods_per_replica for r in request.roles)

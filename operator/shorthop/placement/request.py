"""What to place: an InferenceDeployment spec turned into the solver's terms.

The only module of the core that reads ``shorthop.api``, and the one place that resolves a role's
shape: ``gpusPerPod`` defaults to ``gpusPerReplica`` here (:func:`pod_gpus`), and every other
module reads the resolved :class:`RoleRequest`. A pod's CPU and memory come from its template by
the rule of :mod:`~shorthop.placement.occupancy` (init containers included), the same rule that
counts the pod once it runs. Tier names in scopes are checked against the configured tiers here,
so an unknown name is a :class:`~shorthop.errors.SpecError` naming the field; so are the
template's scheduling rules (:mod:`~shorthop.placement.constraints`: node selector, node affinity,
node name, host ports), which every plan must honour. Also defines the traffic patterns between
roles (:class:`Pattern`) and the stable pairing of replicas for ``paired`` edges
(:func:`pairing`, :func:`replica_pairs`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shorthop.api import models
from shorthop.errors import SpecError
from shorthop.placement import constraints, occupancy, runtime_class
from shorthop.placement.constraints import Constraints
from shorthop.placement.occupancy import Toleration


@dataclass(frozen=True, slots=True)
class RoleRequest:
    """One role, resolved: ``replicas`` replicas of ``pods_per_replica`` pods with
    ``pod_gpus`` GPUs each: ``gpusPerPod`` resolved (the API model's ``gpus_per_pod`` is optional
    and keeps the CRD's name; this one is always set)."""

    name: str
    replicas: int
    pods_per_replica: int
    pod_gpus: int
    replica_scope: int | None = None  # tier index: each replica inside one domain of this tier
    tolerations: tuple[Toleration, ...] = ()
    cpu_millis: int = 0  # per pod
    memory_bytes: int = 0  # per pod
    constraints: Constraints = field(default_factory=Constraints)  # the template's rules
    excluded: frozenset[str] = frozenset()  # nodes whose kubelet rejected a pod of the role
    other: occupancy.Amounts = ()  # per pod: other resources (rdma/ib, hugepages-2Mi, ...)

    @property
    def gpus_per_replica(self) -> int:
        return self.pods_per_replica * self.pod_gpus


class Pattern(enum.StrEnum):
    """Which replicas of two roles exchange traffic (``traffic[].pattern``).

    ``ALL_TO_ALL`` (the default): any replica of the source role may send to any replica of the
    target role (Dynamo's prefill queue, routers without a topology scorer), so the cost is the
    mean over every (source replica, target replica) pair. ``PAIRED``: a router that pairs
    replicas; each replica has one or more fixed peers (:func:`pairing`), told to its pods in
    ``SHORTHOP_PEERS``.
    """

    ALL_TO_ALL = "all-to-all"
    PAIRED = "paired"


@dataclass(frozen=True, slots=True)
class TrafficEdge:
    source: int  # role index
    target: int  # role index, never ``source``
    weight: float
    pattern: Pattern = Pattern.ALL_TO_ALL

    def __post_init__(self) -> None:
        if self.source == self.target:
            raise ValueError("a traffic edge joins two different roles")


Pair = tuple[int, int, int]  # (traffic edge index, source replica id, target replica id)


@dataclass(frozen=True, slots=True)
class Request:
    """A whole deployment to place (frozen; equal requests give equal plans).

    ``pairs`` are the peer pairs of ``paired`` edges made before (what existing pods were told):
    :func:`replica_pairs` keeps those whose replicas still exist and pairs only the others.
    """

    roles: tuple[RoleRequest, ...]
    traffic: tuple[TrafficEdge, ...] = ()
    required_scope: int | None = None  # tier index for the whole deployment
    preferred_scope: int | None = None
    name: str = "deployment"
    pairs: tuple[Pair, ...] = ()

    def role_index(self, name: str) -> int:
        return next(i for i, r in enumerate(self.roles) if r.name == name)


def pairing(
    sources: Sequence[int], targets: Sequence[int], kept: Iterable[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Stable peer pairs between the replica ids of two roles (a ``paired`` edge).

    1. pairs in ``kept`` whose two replicas still exist stay (existing pairs never change);
    2. the replicas left without a peer on both sides are paired with each other by rank
       (:func:`peer_pairs`: every replica of the larger side gets one peer, spread evenly);
    3. any replica still without a peer (one side had none left) takes the least-loaded replica
       of the other role (fewest peers, then lowest id).

    With nothing kept this is :func:`peer_pairs` over the ids. Sorted by (source, target).

    >>> pairing([0, 1], [0, 1, 2, 3], kept=[(0, 0), (1, 1)])
    [(0, 0), (0, 2), (1, 1), (1, 3)]
    >>> pairing([0, 1], [0, 1, 2, 3])
    [(0, 0), (0, 1), (1, 2), (1, 3)]
    """
    s_ids, t_ids = sorted(set(sources)), sorted(set(targets))
    if not s_ids or not t_ids:
        return []
    s_set, t_set = set(s_ids), set(t_ids)
    pairs = {(s, t) for s, t in kept if s in s_set and t in t_set}
    load_s = dict.fromkeys(s_ids, 0)
    load_t = dict.fromkeys(t_ids, 0)
    for s, t in pairs:
        load_s[s] += 1
        load_t[t] += 1
    free_s = [s for s in s_ids if not load_s[s]]
    free_t = [t for t in t_ids if not load_t[t]]
    if free_s and free_t:
        for i, j in peer_pairs(len(free_s), len(free_t)):
            pairs.add((free_s[i], free_t[j]))
            load_s[free_s[i]] += 1
            load_t[free_t[j]] += 1
    for s in s_ids:
        if not load_s[s]:
            t = min(t_ids, key=lambda t: (load_t[t], t))
            pairs.add((s, t))
            load_s[s] += 1
            load_t[t] += 1
    for t in t_ids:
        if not load_t[t]:
            s = min(s_ids, key=lambda s: (load_s[s], s))
            pairs.add((s, t))
            load_s[s] += 1
            load_t[t] += 1
    return sorted(pairs)


def replica_pairs(
    request: Request, replicas: Mapping[int, Iterable[int]]
) -> dict[int, list[tuple[int, int]]]:
    """Per ``paired`` traffic edge (by index), its peer pairs (source id, target id) over the
    replica ids present (``replicas``: role index -> ids), keeping ``request.pairs``."""
    out: dict[int, list[tuple[int, int]]] = {}
    for e, edge in enumerate(request.traffic):
        if edge.pattern is not Pattern.PAIRED:
            continue
        kept = [(s, t) for edge_index, s, t in request.pairs if edge_index == e]
        out[e] = pairing(
            sorted(replicas.get(edge.source, ())), sorted(replicas.get(edge.target, ())), kept
        )
    return out


def with_pairs(
    request: Request, told: Mapping[tuple[str, int], Iterable[tuple[str, int]]]
) -> Request:
    """``request`` keeping the peer pairs existing replicas were told (replica -> its peers, by
    role name and replica id), for every ``paired`` edge between their two roles.

    >>> req = Request(roles=(RoleRequest("p", 2, 1, 1), RoleRequest("d", 4, 1, 1)),
    ...               traffic=(TrafficEdge(0, 1, 1.0, Pattern.PAIRED),))
    >>> with_pairs(req, {("d", 1): [("p", 1)], ("p", 1): [("d", 1)]}).pairs
    ((0, 1, 1),)
    """
    names = [r.name for r in request.roles]
    pairs: set[Pair] = set()
    for (role, rid), peers in told.items():
        for peer_role, peer_id in peers:
            for e, edge in enumerate(request.traffic):
                if edge.pattern is not Pattern.PAIRED:
                    continue
                ends = (names[edge.source], names[edge.target])
                if ends == (role, peer_role):
                    pairs.add((e, rid, peer_id))
                elif ends == (peer_role, role):
                    pairs.add((e, peer_id, rid))
    return dataclasses.replace(request, pairs=tuple(sorted(pairs)))


def peer_pairs(source_replicas: int, target_replicas: int) -> list[tuple[int, int]]:
    """Which replica of one role talks to which of another.

    Every replica of the larger role has exactly one peer in the smaller role, spread evenly;
    every replica of the smaller role has at least one. Replica *ranks* are used, so callers map
    them to replica ids.

    >>> peer_pairs(2, 2), peer_pairs(4, 2), peer_pairs(1, 3)
    ([(0, 0), (1, 1)], [(0, 0), (1, 0), (2, 1), (3, 1)], [(0, 0), (0, 1), (0, 2)])
    """
    if source_replicas <= 0 or target_replicas <= 0:
        return []
    if source_replicas >= target_replicas:
        return [(i, i * target_replicas // source_replicas) for i in range(source_replicas)]
    return [(j * source_replicas // target_replicas, j) for j in range(target_replicas)]


def _tier(tiers: tuple[str, ...], value: str | None, field: str) -> int | None:
    if value is None:
        return None
    if value not in tiers:
        raise SpecError(
            field, f"unknown tier {value!r}; this cluster's tiers are {', '.join(tiers)}"
        )
    return tiers.index(value)


def pod_gpus(role: models.Role) -> int:
    """GPUs of one pod of the role: ``gpusPerPod``, defaulting to ``gpusPerReplica``.

    >>> role = {"name": "r", "replicas": 1, "template": {"spec": {"containers": [{}]}}}
    >>> pod_gpus(models.Role.model_validate({**role, "gpusPerReplica": 8})), pod_gpus(
    ...     models.Role.model_validate({**role, "gpusPerReplica": 8, "gpusPerPod": 4}))
    (8, 4)
    """
    return role.gpus_per_pod or role.gpus_per_replica


def replica_peers(
    request: Request, replicas: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], list[tuple[str, int]]]:
    """For each (role, replica), its peers over ``paired`` edges (:func:`replica_pairs` over the
    replica ids present), both directions, in traffic-edge order. ``all-to-all`` edges name no
    peers: every replica of the other role is one.

    >>> req = Request(roles=(RoleRequest("p", 2, 1, 1), RoleRequest("d", 1, 1, 1)),
    ...               traffic=(TrafficEdge(0, 1, 1.0, Pattern.PAIRED),))
    >>> replica_peers(req, [("p", 0), ("p", 3), ("d", 0)])[("d", 0)]
    [('p', 0), ('p', 3)]
    """
    names = [r.name for r in request.roles]
    by_role: dict[int, list[int]] = defaultdict(list)
    for role, replica in replicas:
        if role in names:
            by_role[names.index(role)].append(replica)
    peers: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for e, pairs in replica_pairs(request, by_role).items():
        edge = request.traffic[e]
        for s, t in pairs:
            a, b = (names[edge.source], s), (names[edge.target], t)
            peers[a].append(b)
            peers[b].append(a)
    return dict(peers)


def from_spec(
    spec: models.InferenceDeploymentSpec,
    tiers: tuple[str, ...],
    *,
    name: str = "deployment",
    runtime_classes: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> Request:
    """Translate a validated spec; raises :class:`SpecError` for unknown tier names.
    ``runtime_classes``: the RuntimeClasses the templates name, by name (None: the class does
    not exist, a spec error), applied as the API server applies them to the pods
    (``runtime_class.applied``: overhead, node selector, tolerations); a template naming a class
    not in it is read as it is (the class is not known)."""
    classes = runtime_classes or {}
    roles = []
    for i, role in enumerate(spec.roles):
        pod_spec = role.template.spec
        class_name = runtime_class.named(pod_spec)
        if class_name is not None and class_name in classes:
            pod_spec = runtime_class.applied(
                pod_spec, classes[class_name], f"spec.roles[{i}].template.spec"
            )
        cpu, memory = occupancy.resource_request(pod_spec)
        gpus = pod_gpus(role)
        roles.append(
            RoleRequest(
                name=role.name,
                replicas=role.replicas,
                pods_per_replica=role.gpus_per_replica // gpus,
                pod_gpus=gpus,
                replica_scope=_tier(tiers, role.replica_scope, f"spec.roles[{i}].replicaScope"),
                tolerations=occupancy.tolerations_of(pod_spec),
                cpu_millis=cpu,
                memory_bytes=memory,
                other=occupancy.other_requests(pod_spec),
                constraints=constraints.parse(pod_spec, f"spec.roles[{i}].template.spec"),
            )
        )
    names = [r.name for r in roles]
    traffic = tuple(
        TrafficEdge(names.index(t.from_), names.index(t.to), t.weight, Pattern(t.pattern))
        for t in spec.effective_traffic()
    )
    return Request(
        roles=tuple(roles),
        traffic=traffic,
        required_scope=_tier(tiers, spec.placement.required, "spec.placement.required"),
        preferred_scope=_tier(tiers, spec.placement.preferred, "spec.placement.preferred"),
        name=name,
    )


def with_exclusions(request: Request, excluded: Mapping[str, Iterable[str]]) -> Request:
    """``request`` with the nodes ``excluded[role]`` left out for each role (nodes whose kubelet
    rejected a pod of that role)."""
    if not any(excluded.values()):
        return request
    roles = tuple(
        dataclasses.replace(r, excluded=r.excluded | frozenset(excluded.get(r.name, ())))
        for r in request.roles
    )
    return dataclasses.replace(request, roles=roles)

"""What to place: an InferenceDeployment spec turned into the solver's terms.

The only module of the core that reads ``shorthop.api``, and the one place that resolves a role's
shape: ``gpusPerPod`` defaults to ``gpusPerReplica`` here (:func:`pod_gpus`), and every other
module reads the resolved :class:`RoleRequest`. A pod's CPU and memory come from its template by
the rule of :mod:`~shorthop.placement.occupancy` (init containers included), the same rule that
counts the pod once it runs. Tier names in scopes are checked against the configured tiers here,
so an unknown name is a :class:`~shorthop.errors.SpecError` naming the field; so are the
template's scheduling rules (:mod:`~shorthop.placement.constraints`: node selector, node affinity,
node name, host ports), which every plan must honour. Also defines the peer pairing between roles
that carry traffic.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shorthop.api import models
from shorthop.errors import SpecError
from shorthop.placement import constraints, occupancy
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

    @property
    def gpus_per_replica(self) -> int:
        return self.pods_per_replica * self.pod_gpus


@dataclass(frozen=True, slots=True)
class TrafficEdge:
    source: int  # role index
    target: int
    weight: float


@dataclass(frozen=True, slots=True)
class Request:
    """A whole deployment to place (frozen; equal requests give equal plans)."""

    roles: tuple[RoleRequest, ...]
    traffic: tuple[TrafficEdge, ...] = ()
    required_scope: int | None = None  # tier index for the whole deployment
    preferred_scope: int | None = None
    name: str = "deployment"

    def role_index(self, name: str) -> int:
        return next(i for i, r in enumerate(self.roles) if r.name == name)


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
    """For each (role, replica), the replicas it exchanges traffic with, by :func:`peer_pairs`
    over the replica ids present (by rank), both directions, in traffic-edge order.

    >>> req = Request(roles=(RoleRequest("p", 2, 1, 1), RoleRequest("d", 1, 1, 1)),
    ...               traffic=(TrafficEdge(0, 1, 1.0),))
    >>> replica_peers(req, [("p", 0), ("p", 3), ("d", 0)])[("d", 0)]
    [('p', 0), ('p', 3)]
    """
    by_role: dict[str, list[int]] = defaultdict(list)
    for role, replica in replicas:
        by_role[role].append(replica)
    peers: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for edge in request.traffic:
        source, target = request.roles[edge.source].name, request.roles[edge.target].name
        s_ids, t_ids = sorted(by_role.get(source, [])), sorted(by_role.get(target, []))
        for i, j in peer_pairs(len(s_ids), len(t_ids)):
            a, b = (source, s_ids[i]), (target, t_ids[j])
            peers[a].append(b)
            peers[b].append(a)
    return dict(peers)


def from_spec(
    spec: models.InferenceDeploymentSpec, tiers: tuple[str, ...], *, name: str = "deployment"
) -> Request:
    """Translate a validated spec; raises :class:`SpecError` for unknown tier names."""
    roles = []
    for i, role in enumerate(spec.roles):
        pod_spec = role.template.spec
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
                constraints=constraints.parse(pod_spec, f"spec.roles[{i}].template.spec"),
            )
        )
    names = [r.name for r in roles]
    traffic = tuple(
        TrafficEdge(names.index(t.from_), names.index(t.to), t.weight)
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

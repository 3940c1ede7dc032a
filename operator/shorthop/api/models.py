"""Pydantic models of the InferenceDeployment API (``shorthop.io/v1alpha1``): the single source of
truth for the CRD schema (``api.crd`` generates ``crds/`` from them) and for the operator's reads.

Field names are the CRD's camelCase via aliases; models are frozen and reject unknown fields.
Cross-field rules that the API server enforces are declared once, as CEL rules in
``json_schema_extra["x-kubernetes-validations"]``, and mirrored by pydantic validators so the CLI
rejects the same specs the API server does. Imports nothing from the rest of shorthop.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "shorthop.io"
VERSION = "v1alpha1"
KIND = "InferenceDeployment"
PLURAL = "inferencedeployments"
SHORT_NAME = "infd"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
TIER_NAME = DNS_LABEL
MAX_ROLES = 16
MAX_GPUS = 4096


class Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


# The tier names a scope accepts, for the CRD's descriptions (``kubectl explain``). The network
# levels come from the operator's topology preset; a unit test keeps this list in step with
# ``topology.levels.PRESETS`` (this module imports nothing from the rest of shorthop).
TIER_NAMES_HELP = (
    "A tier name, closest first: same-node-nvlink, same-node-pcie, nvlink-domain, then the "
    "network levels of the operator's topology preset from fine to coarse (plain: rack, block, zone; "
    "topograph: leaf, spine, core; aws: layer-3, layer-2, layer-1; gke: host, subblock, block; "
    "oci: local-block, network-block, hpc-island; or the levels configured), then cluster."
)


class FieldError(ValueError):
    """A validator's error about one field below the model validated: ``loc`` is that field's
    path relative to the model (``("traffic", 0, "to")``), so the error names the field itself
    (``spec.traffic[0].to``) rather than the model as a whole."""

    def __init__(self, loc: tuple[int | str, ...], message: str) -> None:
        self.loc = loc
        super().__init__(message)


def _cel(*rules: tuple[str, str] | dict[str, str]) -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [
            rule if isinstance(rule, dict) else {"rule": rule[0], "message": rule[1]}
            for rule in rules
        ]
    }


class PodTemplate(Model):
    """The pod template of a role: any PodTemplateSpec; at least one container."""

    metadata: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        description="Labels and annotations for the role's pods (ObjectMeta).",
    )
    spec: dict[str, Any] = Field(
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "description": "The pod's containers (at least one); shorthop sets their "
                    "GPU limits.",
                    "minItems": 1,
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                }
            },
        },
        description="A PodSpec. shorthop sets schedulerName, nodeName (via binding) and GPU limits.",
    )

    @field_validator("spec")
    @classmethod
    def _containers(cls, spec: dict[str, Any]) -> dict[str, Any]:
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("spec.containers must list at least one container")
        if not all(isinstance(c, dict) for c in containers):
            raise ValueError("spec.containers must list containers (mappings)")
        return spec


class Scope(Model):
    """A placement scope: a tier name (``nvlink-domain``, a network level such as ``rack``, or
    ``cluster``). ``required`` is hard; ``preferred`` is tried first and relaxed if it cannot fit."""

    required: str | None = Field(
        default=None,
        pattern=TIER_NAME,
        max_length=63,
        description="Hard scope: the whole deployment inside one domain of this tier. "
        + TIER_NAMES_HELP,
    )
    preferred: str | None = Field(
        default=None,
        pattern=TIER_NAME,
        max_length=63,
        description="Soft scope: tried first, relaxed to wider tiers if it cannot fit. "
        + TIER_NAMES_HELP,
    )


class Role(Model):
    """One pool of identical replicas (e.g. prefill or decode)."""

    name: str = Field(
        pattern=DNS_LABEL, max_length=40, description="Role name, e.g. prefill or decode."
    )
    # strict: "3" or true is no number to the API server, so not to shorthop plan either.
    replicas: int = Field(
        ge=0, le=1024, strict=True, description="Number of replicas (0 scales the role down)."
    )
    gpus_per_replica: int = Field(
        ge=1,
        le=MAX_GPUS,
        strict=True,
        description="GPUs one replica uses (its tensor/pipeline-parallel group).",
    )
    gpus_per_pod: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        le=64,
        description="GPUs per pod; a replica spans gpusPerReplica/gpusPerPod pods. Defaults to gpusPerReplica.",
    )
    replica_scope: str | None = Field(
        default=None,
        pattern=TIER_NAME,
        max_length=63,
        description="Hard scope for each replica: all its pods inside one domain of this tier. "
        + TIER_NAMES_HELP,
    )
    service_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        strict=True,
        description="Port (and targetPort) of the role's headless Service, the one its pods' DNS "
        "names belong to. Default: the operator's servicePort setting (chart value servicePort, "
        "8000).",
    )
    template: PodTemplate = Field(
        description="The pod template of the role's pods (labels, annotations and a PodSpec)."
    )

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra=_cel(
            (
                "!has(self.gpusPerPod) || self.gpusPerReplica % self.gpusPerPod == 0",
                "gpusPerReplica must be a multiple of gpusPerPod",
            ),
        ),
    )

    @model_validator(mode="after")
    def _divisible(self) -> Role:
        if self.gpus_per_pod is not None and self.gpus_per_replica % self.gpus_per_pod:
            raise ValueError(
                f"gpusPerReplica ({self.gpus_per_replica}) must be a multiple of gpusPerPod ({self.gpus_per_pod})"
            )
        return self


class TrafficPattern(StrEnum):
    ALL_TO_ALL = "all-to-all"
    PAIRED = "paired"


class Traffic(Model):
    """KV-cache traffic between two roles; ``weight`` scales its cost."""

    from_: str = Field(
        alias="from",
        pattern=DNS_LABEL,
        max_length=40,
        description="Role that sends (e.g. prefill); one of spec.roles[].name.",
    )
    to: str = Field(
        pattern=DNS_LABEL,
        max_length=40,
        description="Role that receives (e.g. decode); one of spec.roles[].name.",
    )
    weight: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        strict=True,
        description="How much this edge's hop distance counts in the placement cost.",
    )
    pattern: TrafficPattern = Field(
        default=TrafficPattern.ALL_TO_ALL,
        description=(
            "Which replicas exchange KV cache. all-to-all (default): any replica of `from` may "
            "send to any replica of `to` (a prefill queue, a router without a topology scorer); "
            "the cost is the mean over every (from, to) replica pair. paired: the router pairs "
            "replicas; each replica has fixed peers (told in SHORTHOP_PEERS) and the cost is "
            "the sum over peer pairs."
        ),
    )

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra=_cel(
            ("self.from != self.to", "traffic joins two different roles: from and to differ"),
        ),
    )

    @model_validator(mode="after")
    def _two_roles(self) -> Traffic:
        if self.from_ == self.to:
            raise ValueError(f"from and to are both {self.to!r}; traffic joins two different roles")
        return self


class KVCache(Model):
    """Model of the KV transfer from prefill to decode (for the modeled transfer time in status):
    time = bytesPerToken x tokens / bandwidth of the pair's tier."""

    bytes_per_token: int = Field(
        default=327_680, ge=1, strict=True, description="KV bytes per token (70B GQA: 320 KiB)."
    )
    tokens: int = Field(default=4096, ge=1, strict=True, description="Prompt tokens per request.")


class InferenceDeploymentSpec(Model):
    roles: list[Role] = Field(
        min_length=1,
        max_length=MAX_ROLES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="Pools of identical replicas (e.g. prefill and decode), each with its GPU "
        "shape, count, replica scope and pod template; names are unique.",
    )
    traffic: list[Traffic] | None = Field(
        default=None,
        max_length=64,
        description="Traffic between roles. Default: prefill -> decode with weight 1 when both exist.",
    )
    placement: Scope = Field(default_factory=Scope, description="Scope for the whole deployment.")
    kv_cache: KVCache = Field(
        default_factory=KVCache,
        description="KV-cache size, for the modeled prefill-to-decode transfer time in status.",
    )

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra=_cel(
            {
                "rule": "!has(self.traffic) || self.traffic.all(t, self.roles.exists(r, r.name == t.from) && self.roles.exists(r, r.name == t.to))",
                "message": "traffic must name roles defined in spec.roles",
                # Names the (first) unknown role. The API server's cost estimate refuses a message
                # of unbounded length (join, string()), so it cannot list the roles as the models
                # do; the fixed message above is the fallback.
                "messageExpression": "'unknown role ' + (self.traffic.map(t, t.from) + self.traffic.map(t, t.to)).filter(n, !self.roles.exists(r, r.name == n))[0] + '; traffic must name roles defined in spec.roles'",
                "fieldPath": ".traffic",
                "reason": "FieldValueInvalid",
            },
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> InferenceDeploymentSpec:
        names = [r.name for r in self.roles]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise FieldError(("roles", i), f"role names must be unique; {name!r} appears twice")
        for i, t in enumerate(self.traffic or []):
            for end, role in (("from", t.from_), ("to", t.to)):
                if role not in names:
                    raise FieldError(
                        ("traffic", i, end),
                        f"unknown role {role!r}; traffic must name roles defined in spec.roles: "
                        f"{', '.join(names)}",
                    )
        return self

    def effective_traffic(self) -> list[Traffic]:
        """The traffic list, defaulting to prefill -> decode (weight 1) when both roles exist."""
        if self.traffic is not None:
            return list(self.traffic)
        names = {r.name for r in self.roles}
        if {"prefill", "decode"} <= names:
            return [Traffic.model_validate({"from": "prefill", "to": "decode", "weight": 1.0})]
        return []

    def role(self, name: str) -> Role:
        return next(r for r in self.roles if r.name == name)


class ObjectMeta(Model):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    name: str
    namespace: str = "default"


class InferenceDeployment(Model):
    """A whole manifest as a user applies it."""

    api_version: Literal["shorthop.io/v1alpha1"] = "shorthop.io/v1alpha1"
    kind: Literal["InferenceDeployment"] = "InferenceDeployment"
    metadata: ObjectMeta
    spec: InferenceDeploymentSpec


# -- status ------------------------------------------------------------------------------------


class Phase(StrEnum):
    PENDING = "Pending"
    PLACING = "Placing"
    RUNNING = "Running"
    DEGRADED = "Degraded"
    UNSCHEDULABLE = "Unschedulable"
    INVALID = "Invalid"


class Condition(Model):
    """A standard condition (Placed, Ready, Degraded, Valid)."""

    type: Literal["Placed", "Ready", "Degraded", "Valid"] = Field(
        description="Placed, Ready, Degraded or Valid."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Machine-readable reason in CamelCase (see docs/operations.md).",
    )
    message: str = Field(default="", max_length=32768, description="What happened, for people.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition describes."
    )


class PodPlacement(Model):
    """Where one pod of a replica went."""

    name: str = Field(description="Pod name.")
    node: str = Field(description="Node the pod is bound to.")
    gpus: list[int] = Field(description="GPU indices on the node (NVML minor numbers).")
    devices: list[str] | None = Field(
        default=None,
        description="On a node whose GPUs are allocated through Dynamic Resource Allocation: the devices of the pod's ResourceClaim, in the order of gpus.",
    )
    tier: str = Field(description="Widest tier among this pod's GPU pairs with its replica peers.")
    ready: bool = Field(default=False, description="The pod's Ready condition.")


class ReplicaPlacement(Model):
    """Where one replica of a role went."""

    role: str = Field(description="Role name.")
    replica: int = Field(description="Replica number within the role, from 0.")
    pods: list[PodPlacement] = Field(description="The replica's pods.")
    tier: str = Field(description="Widest tier inside the replica.")


class KVTransfer(Model):
    """One peer pair of a paired traffic edge: its modeled KV-cache transfer."""

    prefill: str = Field(description="The pair's source replica (role-replica, e.g. prefill-0).")
    decode: str = Field(description="The pair's target replica (role-replica, e.g. decode-1).")
    tier: str = Field(description="Widest tier between the two replicas' GPUs.")
    modeled_ms: float = Field(
        description="kvCache.bytesPerToken x kvCache.tokens / bandwidth of the tier, in ms."
    )


class KVTraffic(Model):
    """One traffic edge: its replica pairs per widest tier, GPU pairs per tier, KV transfer time."""

    from_: str = Field(alias="from", description="The edge's source role.")
    to: str = Field(description="The edge's target role.")
    pattern: TrafficPattern = Field(description="all-to-all or paired, as in spec.traffic.")
    replica_pairs: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Replica pairs per widest tier between their GPUs: every (from, to) pair for "
            "all-to-all, the peer pairs for paired."
        ),
    )
    gpu_pairs: dict[str, int] = Field(
        default_factory=dict,
        description="GPU pairs per tier over those replica pairs (one GPU of each replica).",
    )
    mean_modeled_ms: float = Field(
        default=0, description="Modeled KV transfer time, mean over the replica pairs, in ms."
    )
    worst_modeled_ms: float = Field(
        default=0, description="Modeled KV transfer time of the slowest replica pair, in ms."
    )


class Cost(Model):
    """The placement's cost in hop-distance units (lower is closer)."""

    intra_replica: int = Field(
        default=0, description="Hop distance between GPUs inside replicas, summed."
    )
    traffic: float = Field(
        default=0, description="Weighted hop distance between replicas that exchange traffic."
    )
    fragmentation: float = Field(
        default=0, description="How much free capacity the placement splits (not in total)."
    )
    total: float = Field(default=0, description="intraReplica + traffic (hop-distance units).")


class NodeExclusion(Model):
    """A node left out for a role after its kubelet rejected a pod of it (``reason`` is the pod's
    ``status.reason``, e.g. ``NodeAffinity`` or ``OutOfnvidia.com/gpu``). Kept while the role's
    template is the one rejected and the node exists; remove an entry to let shorthop try the
    node again."""

    role: str = Field(description="Role whose pod was rejected.")
    node: str = Field(description="Node left out for the role.")
    reason: str = Field(description="The rejected pod's status.reason.")
    template_hash: str = Field(description="Hash of the role's pod template that was rejected.")


class PlacementScore(Model):
    """How far churn has left the deployment from what the cluster allows now. Recomputed
    while the deployment is fully placed, at most once per interval (60 s) and only when free
    GPUs changed somewhere in the cluster since the last time."""

    current: float = Field(
        default=0, description="intraReplica + traffic of the pods where they run now."
    )
    achievable: float = Field(
        default=0,
        description=(
            "intraReplica + traffic of a fresh plan of the whole deployment on the current "
            "cluster, its own GPUs counted free."
        ),
    )
    ratio: float = Field(
        default=1.0,
        description="current / achievable: 1.0 is as good as a fresh plan, higher is worse.",
    )
    computed_at: str = Field(
        default="", description="When the score was computed with these values (RFC 3339)."
    )


class InferenceDeploymentStatus(Model):
    phase: Phase = Field(
        default=Phase.PENDING,
        description="Pending, Placing, Running, Degraded, Unschedulable or Invalid.",
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Placed, Ready, Degraded and Valid."
    )
    replicas: list[ReplicaPlacement] = Field(
        default_factory=list, description="Where every replica's pods went."
    )
    ready: str = Field(default="0/0", description="Ready pods / total pods.")
    ready_pods: int = Field(default=0, description="Pods that are Ready.")
    total_pods: int = Field(default=0, description="Pods the spec asks for.")
    worst_tier: str | None = Field(
        default=None,
        description="Widest tier any replica or prefill-decode pair uses (kubectl get column).",
    )
    cost: Cost = Field(default_factory=Cost, description="The placement's cost.")
    tiers: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Traffic GPU pairs per tier: for an all-to-all edge every pair of a source GPU and "
            "a target GPU, for a paired edge the GPU pairs of its peer pairs; summed over edges."
        ),
    )
    kv_transfers: list[KVTransfer] = Field(
        default_factory=list, description="Per peer pair of paired traffic edges."
    )
    kv_traffic: list[KVTraffic] = Field(default_factory=list, description="Per traffic edge.")
    excluded_nodes: list[NodeExclusion] = Field(
        default_factory=list,
        description="Nodes left out for a role after their kubelet rejected a pod of it.",
    )
    placement_score: PlacementScore | None = None
    placed_away: str = Field(
        default="",
        description=(
            "Why the replicas added last (scale-out, a replica replaced whole) were placed "
            "outside the domain where the deployment runs: the replicas, the domain, the GPUs "
            "free there for the role and those needed; empty when they were placed there."
        ),
    )
    message: str = Field(
        default="", description="Why the phase is what it is, naming the field to fix."
    )

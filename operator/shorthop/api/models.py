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


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]
    }


class PodTemplate(Model):
    """The pod template of a role: any PodTemplateSpec; at least one container."""

    metadata: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    spec: dict[str, Any] = Field(
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
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

    required: str | None = Field(default=None, pattern=TIER_NAME, max_length=63)
    preferred: str | None = Field(default=None, pattern=TIER_NAME, max_length=63)


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
        description="Hard scope for each replica: all its pods inside one domain of this tier (e.g. nvlink-domain).",
    )
    template: PodTemplate

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


class Traffic(Model):
    """KV-cache traffic between two roles; ``weight`` scales its cost."""

    from_: str = Field(alias="from", pattern=DNS_LABEL, max_length=40)
    to: str = Field(pattern=DNS_LABEL, max_length=40)
    weight: float = Field(default=1.0, ge=0, le=1000, strict=True)


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
    )
    traffic: list[Traffic] | None = Field(
        default=None,
        max_length=64,
        description="Traffic between roles. Default: prefill -> decode with weight 1 when both exist.",
    )
    placement: Scope = Field(default_factory=Scope, description="Scope for the whole deployment.")
    kv_cache: KVCache = Field(default_factory=KVCache)

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra=_cel(
            (
                "!has(self.traffic) || self.traffic.all(t, self.roles.exists(r, r.name == t.from) && self.roles.exists(r, r.name == t.to))",
                "traffic must name roles defined in spec.roles",
            ),
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> InferenceDeploymentSpec:
        names = [r.name for r in self.roles]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"role names must be unique; {duplicates[0]!r} appears twice")
        for i, t in enumerate(self.traffic or []):
            for end, role in (("from", t.from_), ("to", t.to)):
                if role not in names:
                    raise ValueError(
                        f"traffic[{i}].{end}: unknown role {role!r}; roles are {', '.join(names)}"
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
    type: Literal["Placed", "Ready", "Degraded", "Valid"]
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str | None = None
    observed_generation: int | None = None


class PodPlacement(Model):
    name: str
    node: str
    gpus: list[int]
    devices: list[str] | None = Field(
        default=None,
        description="On a node whose GPUs are allocated through Dynamic Resource Allocation: the devices of the pod's ResourceClaim, in the order of gpus.",
    )
    tier: str = Field(description="Widest tier among this pod's GPU pairs with its replica peers.")
    ready: bool = False


class ReplicaPlacement(Model):
    role: str
    replica: int
    pods: list[PodPlacement]
    tier: str = Field(description="Widest tier inside the replica.")


class KVTransfer(Model):
    prefill: str = Field(description="role-replica, e.g. prefill-0")
    decode: str
    tier: str
    modeled_ms: float


class Cost(Model):
    intra_replica: int = 0
    traffic: float = 0
    fragmentation: float = 0
    total: float = Field(default=0, description="intraReplica + traffic (hop-distance units).")


class NodeExclusion(Model):
    """A node left out for a role after its kubelet rejected a pod of it (``reason`` is the pod's
    ``status.reason``, e.g. ``NodeAffinity`` or ``OutOfnvidia.com/gpu``). Kept while the role's
    template is the one rejected and the node exists; remove an entry to let shorthop try the
    node again."""

    role: str
    node: str
    reason: str
    template_hash: str


class InferenceDeploymentStatus(Model):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    replicas: list[ReplicaPlacement] = Field(default_factory=list)
    ready: str = Field(default="0/0", description="Ready pods / total pods.")
    ready_pods: int = 0
    total_pods: int = 0
    worst_tier: str | None = None
    cost: Cost = Field(default_factory=Cost)
    tiers: dict[str, int] = Field(
        default_factory=dict, description="prefill<->decode GPU pairs per tier."
    )
    kv_transfers: list[KVTransfer] = Field(default_factory=list)
    excluded_nodes: list[NodeExclusion] = Field(
        default_factory=list,
        description="Nodes left out for a role after their kubelet rejected a pod of it.",
    )
    message: str = ""

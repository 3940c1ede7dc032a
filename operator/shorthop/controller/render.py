"""Pods and Services the operator creates for an InferenceDeployment (pure functions).

Names: pod ``<deployment>-<role>-<replica>-<pod>``, headless Service ``<deployment>-<role>``.
Every pod is owned by the deployment (``ownerReferences``, controller), labelled with deployment,
role, replica, pod index and a hash of its role's template, carries its planned GPU indices in the
``shorthop.io/gpus`` annotation (advisory where the device plugin picks GPUs), uses shorthop's
``schedulerName`` so kube-scheduler leaves it alone, requests its role's GPUs per pod (as
:mod:`~shorthop.placement.request` resolves them), and gets
environment variables telling it its role, replica, pod index, the pods of its replica, the
leading pods of its ``paired`` peer replicas (``SHORTHOP_PEERS``, also kept in the
``shorthop.io/peers`` annotation so a restarted operator keeps the pairs) and the Services of the
roles it exchanges ``all-to-all`` traffic with (``SHORTHOP_PEER_SERVICES``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shorthop import quantity
from shorthop.api import models
from shorthop.controller import live
from shorthop.errors import SpecError
from shorthop.placement.occupancy import GPU_ANNOTATION
from shorthop.placement.plan import Plan, PodKey
from shorthop.placement.request import Pattern, Request, RoleRequest, replica_peers
from shorthop.topology.labels import GPU_RESOURCE

MANAGED_BY = {"app.kubernetes.io/managed-by": "shorthop"}
TIER_ANNOTATION = "shorthop.io/tier"
DNS_LABEL_MAX = 63
SERVICE_PORT = (
    8000  # of the headless Service per role, unless the settings or the role say otherwise
)


def template_hash(role: models.Role) -> str:
    canonical = json.dumps(role.template.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def pod_name(deployment: str, role: str, replica: int, pod: int) -> str:
    return f"{deployment}-{role}-{replica}-{pod}"


def service_name(deployment: str, role: str) -> str:
    return f"{deployment}-{role}"


def owner_reference(infd: models.InferenceDeployment, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "name": infd.metadata.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _check_shapes(role: models.Role, index: int) -> None:
    """The parts of a template that shorthop reads, or copies into every pod, must have the shape
    a Pod needs. The CRD schema leaves the pod spec free-form, so without this a string where a
    mapping belongs crashed the reconcile (found by chaos/test_fuzz.py)."""
    where = f"spec.roles[{index}].template"
    for part in ("labels", "annotations"):
        value = role.template.metadata.get(part)
        if value is not None and not (
            isinstance(value, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise SpecError(f"{where}.metadata.{part}", "must map names to string values")
    spec = role.template.spec
    tolerations = spec.get("tolerations")
    if tolerations is not None and not (
        isinstance(tolerations, list) and all(isinstance(t, Mapping) for t in tolerations)
    ):
        raise SpecError(f"{where}.spec.tolerations", "must be a list of tolerations (mappings)")
    for c, container in enumerate(spec.get("containers") or []):
        at = f"{where}.spec.containers[{c}]"
        if not isinstance(container, Mapping):
            raise SpecError(at, f"must be a container (a mapping), not {type(container).__name__}")
        env = container.get("env")
        if env is not None and not (
            isinstance(env, list) and all(isinstance(e, Mapping) for e in env)
        ):
            raise SpecError(f"{at}.env", "must be a list of name/value mappings")
        resources = container.get("resources")
        if resources is None:
            continue
        if not isinstance(resources, Mapping):
            raise SpecError(f"{at}.resources", "must be a mapping with limits and/or requests")
        for kind in ("limits", "requests"):
            value = resources.get(kind)
            if value is not None and not isinstance(value, Mapping):
                raise SpecError(f"{at}.resources.{kind}", "must map resource names to quantities")


def check_template(role: models.Role, index: int, shape: RoleRequest) -> None:
    """The template has the shape of a pod template where shorthop reads it, and its GPU requests,
    if any, add up to the pod's share (``shape``, the role resolved)."""
    _check_shapes(role, index)
    declared = 0
    for c, container in enumerate(role.template.spec.get("containers") or []):
        resources = (container or {}).get("resources") or {}
        for kind in ("limits", "requests"):
            value = (resources.get(kind) or {}).get(GPU_RESOURCE)
            if value is not None:
                amount = quantity.parse(value)
                if amount is None:
                    raise SpecError(
                        f"spec.roles[{index}].template.spec.containers[{c}].resources.{kind}[{GPU_RESOURCE}]",
                        f"{value!r} is not a whole number",
                    )
                declared += amount if kind == "limits" else 0
    if declared and declared != shape.pod_gpus:
        raise SpecError(
            f"spec.roles[{index}].template.spec.containers",
            f"request {declared} nvidia.com/gpu in total but each pod gets {shape.pod_gpus} "
            "(gpusPerPod); drop the GPU limits from the template and shorthop sets them",
        )


def render_pod(
    infd: models.InferenceDeployment,
    uid: str,
    role: models.Role,
    shape: RoleRequest,
    replica: int,
    pod: int,
    *,
    node: str,
    gpus: Sequence[int],
    tier: str,
    scheduler_name: str,
    replica_pods: Sequence[str],
    peers: Sequence[str],
    peer_replicas: Sequence[str] = (),
    peer_services: Sequence[str] = (),
) -> dict[str, Any]:
    name = pod_name(infd.metadata.name, role.name, replica, pod)
    service = service_name(infd.metadata.name, role.name)
    template_meta = role.template.metadata or {}
    spec = copy.deepcopy(role.template.spec)
    spec["schedulerName"] = scheduler_name
    spec.pop("nodeName", None)  # honoured as a filter; the bind sets it
    spec.pop("schedulingGates", None)  # the API server refuses to bind a gated pod
    if len(name) <= DNS_LABEL_MAX and len(service) <= DNS_LABEL_MAX:
        spec["hostname"] = name
        spec["subdomain"] = service
    containers = spec["containers"]
    if not any(
        GPU_RESOURCE in ((c.get("resources") or {}).get("limits") or {}) for c in containers
    ):
        resources = containers[0].setdefault("resources", {})
        resources.setdefault("limits", {})[GPU_RESOURCE] = str(shape.pod_gpus)
        resources.setdefault("requests", {})[GPU_RESOURCE] = str(shape.pod_gpus)
    env = [
        {"name": "SHORTHOP_DEPLOYMENT", "value": infd.metadata.name},
        {"name": "SHORTHOP_ROLE", "value": role.name},
        {"name": "SHORTHOP_REPLICA", "value": str(replica)},
        {"name": "SHORTHOP_POD", "value": str(pod)},
        {"name": "SHORTHOP_PODS_PER_REPLICA", "value": str(shape.pods_per_replica)},
        {"name": "SHORTHOP_REPLICA_PODS", "value": ",".join(replica_pods)},
        {"name": "SHORTHOP_PEERS", "value": ",".join(peers)},
        {"name": "SHORTHOP_PEER_SERVICES", "value": ",".join(peer_services)},
        {"name": "SHORTHOP_GPUS", "value": ",".join(map(str, gpus))},
        {"name": "SHORTHOP_TIER", "value": tier},
    ]
    for container in containers:
        names = {e.get("name") for e in container.get("env") or []}
        container["env"] = [
            *(container.get("env") or []),
            *(e for e in env if e["name"] not in names),
        ]
    pod_labels = {
        **(template_meta.get("labels") or {}),
        **MANAGED_BY,
        live.DEPLOYMENT_LABEL: infd.metadata.name,
        live.ROLE_LABEL: role.name,
        live.REPLICA_LABEL: str(replica),
        live.POD_LABEL: str(pod),
        live.TEMPLATE_LABEL: template_hash(role),
    }
    annotations = {
        **(template_meta.get("annotations") or {}),
        GPU_ANNOTATION: ",".join(map(str, gpus)),
        TIER_ANNOTATION: tier,
        live.PLANNED_NODE_ANNOTATION: node,
    }
    if peer_replicas:
        annotations[live.PEERS_ANNOTATION] = ",".join(peer_replicas)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": infd.metadata.namespace,
            "labels": pod_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(infd, uid)],
        },
        "spec": spec,
    }


def render_plan_pods(
    infd: models.InferenceDeployment,
    uid: str,
    req: Request,
    plan: Plan,
    keys: Iterable[PodKey],
    *,
    scheduler_name: str,
) -> dict[PodKey, dict[str, Any]]:
    """The pods to create for ``keys`` of a feasible plan: each where the plan puts it, told the
    pods of its replica, the leading pods of its ``paired`` peer replicas
    (``request.replica_peers``, which keeps the pairs existing replicas were told) and the
    Services of the roles it exchanges ``all-to-all`` traffic with."""
    roles = {r.name: r for r in infd.spec.roles}
    shapes = {r.name: r for r in req.roles}
    by_key = {a.key: a for a in plan.assignments}
    members: dict[tuple[str, int], list[PodKey]] = defaultdict(list)
    for a in plan.assignments:
        members[(a.key.role, a.key.replica)].append(a.key)
    peers = replica_peers(req, members)
    names = [r.name for r in req.roles]
    services: dict[str, list[str]] = defaultdict(list)
    for edge in req.traffic:
        if edge.pattern is Pattern.ALL_TO_ALL:
            source, target = names[edge.source], names[edge.target]
            services[source].append(service_dns(infd, target))
            services[target].append(service_dns(infd, source))
    pods: dict[PodKey, dict[str, Any]] = {}
    for key in keys:
        a, replica = by_key[key], (key.role, key.replica)
        names = [dns_name(infd, k.role, k.replica, k.pod) for k in sorted(members[replica])]
        pods[key] = render_pod(
            infd, uid, roles[key.role], shapes[key.role], key.replica, key.pod,
            node=a.node, gpus=a.gpus, tier=plan.replica_tiers[replica],
            scheduler_name=scheduler_name,
            replica_pods=names,
            peers=[dns_name(infd, r, rid, 0) for r, rid in peers.get(replica, [])],
            peer_replicas=[f"{r}-{rid}" for r, rid in peers.get(replica, [])],
            peer_services=sorted(set(services.get(key.role, []))),
        )  # fmt: skip
    return pods


def render_service(
    infd: models.InferenceDeployment, uid: str, role: models.Role, port: int = 0
) -> dict[str, Any]:
    """The role's headless Service (its pods' DNS names). Its port: the role's ``servicePort``,
    else ``port`` (the operator's ``servicePort`` setting), else :data:`SERVICE_PORT`."""
    port = role.service_port or port or SERVICE_PORT
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(infd.metadata.name, role.name),
            "namespace": infd.metadata.namespace,
            "labels": {
                **MANAGED_BY,
                live.DEPLOYMENT_LABEL: infd.metadata.name,
                live.ROLE_LABEL: role.name,
            },
            "ownerReferences": [owner_reference(infd, uid)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {live.DEPLOYMENT_LABEL: infd.metadata.name, live.ROLE_LABEL: role.name},
            "ports": [{"name": "engine", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def service_dns(infd: models.InferenceDeployment, role: str) -> str:
    return f"{service_name(infd.metadata.name, role)}.{infd.metadata.namespace}.svc"


def dns_name(infd: models.InferenceDeployment, role: str, replica: int, pod: int) -> str:
    name = pod_name(infd.metadata.name, role, replica, pod)
    return f"{name}.{service_name(infd.metadata.name, role)}.{infd.metadata.namespace}.svc"

"""What shorthop reads of the objects its informers watch, and decoders that parse only that.

A Pod, Node or ResourceClaim as the API server sends it carries much that shorthop never reads —
``managedFields`` (often half of the object), container commands, environment, volumes, probes,
container statuses, a node's image list and system info. The informers decode only the fields
below (:class:`Codec`: msgspec skips the rest of the JSON without building it, about ten times
faster than ``json.loads`` on real pods) before handing an object to ``controller.live``, so
nothing downstream can come to depend on the rest by accident, and what a 100,000-pod cluster
costs the operator is bounded by what it reads (docs/benchmarks.md, footprint). A value of an
unexpected shape, which the typed decoder refuses, falls back to ``json.loads`` and
:func:`project`, so readers see exactly what they would have seen whole.

Each projection lists the fields of the readers named beside it. **A reader of a new field
adds it here**: ``tests/unit/test_fields.py`` fills every field of the API's Pod and Node models
and fails when a projected object reads differently from the full one.

Pure; no I/O. Callers: ``controller.operator`` (gives each informer its :class:`Codec`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Optional, TypedDict, Union, cast

import msgspec

# A projection: for each kept key, True (keep the value whole), a nested projection (keep
# those keys of a mapping), or a one-element list holding the projection of each list item.
Projection = Mapping[str, Union[bool, "Projection", list["Projection"]]]

_CONTAINER: Projection = {
    "resources": True,  # occupancy.requests
    "ports": True,  # constraints.host_ports_of: hostPort, protocol, hostIP
    "restartPolicy": True,  # constraints.host_ports_of: an init container that is a sidecar
}

POD: Projection = {
    "metadata": {
        "name": True,
        "namespace": True,
        "uid": True,
        "resourceVersion": True,  # the informer resumes its watch from it
        "labels": True,  # live.pod_record: deployment, role, replica, pod, template hash
        "annotations": True,  # occupancy: shorthop.io/gpus; live: shorthop.io/planned-node
        "ownerReferences": True,  # live.pod_record: the owning InferenceDeployment
        "deletionTimestamp": True,
    },
    "spec": {
        "nodeName": True,
        "hostNetwork": True,  # constraints.host_ports_of: container ports are host ports
        "resourceClaims": True,  # occupancy.claim_names: the claims a DRA pod references
        "containers": [_CONTAINER],
        "initContainers": [_CONTAINER],
        "resources": True,  # occupancy.requests: pod-level requests of CPU and memory
        "overhead": True,  # occupancy.requests: the RuntimeClass's overhead, set on the pod
    },
    "status": {
        "phase": True,
        "reason": True,  # live.pod_record: why a pod failed (kubelet admission)
        "conditions": True,  # live.pod_record: Ready; occupancy: PodScheduled Unschedulable
        "nominatedNodeName": True,  # occupancy.pod_usage: where a scheduler is binding it
        "resourceClaimStatuses": True,  # occupancy.claim_names: claims made from templates
    },
}

NODE: Projection = {
    "metadata": {
        "name": True,
        "resourceVersion": True,
        "labels": True,  # topology.labels: GFD, network levels, NVLink domain
        "annotations": True,  # topology.labels: nvidia-smi matrix, GPU topology, NUMA
    },
    "spec": {"taints": True, "unschedulable": True},  # topology.labels.parse_state
    "status": {
        "allocatable": True,  # occupancy.node_offer, topology.labels
        "conditions": True,  # topology.labels.parse_state: Ready
    },
}


CLAIM: Projection = {
    "metadata": {
        "name": True,  # devices.read_claim: the claim's key
        "namespace": True,
        "uid": True,
        "resourceVersion": True,  # the informer resumes its watch from it
        "ownerReferences": True,  # devices.read_claim: the pod that holds it
        "deletionTimestamp": True,
    },
    "spec": {"devices": {"requests": True}},  # devices.read_claim: how many devices it wants
    "status": {
        "allocation": True,  # devices.read_claim: the devices and the node
        "reservedFor": True,
    },
}


def project(obj: Mapping[str, Any], projection: Projection) -> dict[str, Any]:
    """The fields of ``obj`` that ``projection`` names. A value of an unexpected shape (a string
    where a mapping belongs) is kept as it is, so readers see it exactly as before and reject it
    the same way.

    >>> project({"metadata": {"name": "p", "managedFields": [{}]}, "kind": "Pod"},
    ...         {"metadata": {"name": True}})
    {'metadata': {'name': 'p'}}
    >>> project({"spec": {"containers": [{"resources": {}, "env": []}, "x"]}},
    ...         {"spec": {"containers": [{"resources": True}]}})
    {'spec': {'containers': [{'resources': {}}, 'x']}}
    """
    out: dict[str, Any] = {}
    for key, keep in projection.items():
        if key not in obj:
            continue
        value = obj[key]
        if keep is True:
            out[key] = value
        elif isinstance(keep, list):
            item = keep[0]
            out[key] = (
                [project(v, item) if isinstance(v, Mapping) else v for v in value]
                if isinstance(value, list)
                else value
            )
        elif isinstance(keep, Mapping) and isinstance(value, Mapping):
            out[key] = project(value, keep)
        else:
            out[key] = value
    return out


def pods(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Pod that shorthop reads."""
    return project(obj, POD)


def nodes(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Node that shorthop reads."""
    return project(obj, NODE)


def claims(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a ResourceClaim that shorthop reads."""
    return project(obj, CLAIM)


# Types built at run time from a projection (mypy sees them as values).
_TYPED_DICT, _OPTIONAL, _LIST = cast(Any, TypedDict), cast(Any, Optional), cast(Any, list)


def _typed(name: str, projection: Projection) -> Any:
    """A TypedDict of the projection's keys (nested ones too); msgspec decodes into it and
    skips every other key unparsed."""
    annotations: dict[str, Any] = {}
    for key, keep in projection.items():
        if keep is True:
            annotations[key] = Any
        elif isinstance(keep, list):
            item = _typed(f"{name}_{key}", keep[0])
            annotations[key] = _OPTIONAL[_LIST[_OPTIONAL[item]]]
        elif isinstance(keep, Mapping):
            annotations[key] = _OPTIONAL[_typed(f"{name}_{key}", keep)]
    return _TYPED_DICT(name, annotations, total=False)


class Codec:
    """Decodes list pages and watch events of one kind, keeping only ``projection``'s fields.

    ``page`` returns the items and the list's metadata; ``event`` returns a watch event's type
    and object (an ``ERROR`` event's Status whole, for its code and reason)."""

    def __init__(self, name: str, projection: Projection) -> None:
        self.projection = projection
        obj = _typed(name, projection)
        page = _TYPED_DICT(f"{name}List", {"metadata": Any, "items": _OPTIONAL[_LIST[obj]]})
        event = _TYPED_DICT(f"{name}Event", {"type": str, "object": _OPTIONAL[obj]}, total=False)
        self._page = msgspec.json.Decoder(page)
        self._event = msgspec.json.Decoder(event)

    def page(self, data: bytes) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
        try:
            found = self._page.decode(data)
        except msgspec.ValidationError:
            found = json.loads(data)
            found["items"] = [project(i, self.projection) for i in found.get("items") or []]
        return found.get("items") or [], found.get("metadata") or {}

    def event(self, line: bytes) -> tuple[str, Mapping[str, Any]]:
        try:
            found = self._event.decode(line)
        except msgspec.ValidationError:
            found = json.loads(line)
            if found.get("type") != "ERROR" and isinstance(found.get("object"), Mapping):
                found["object"] = project(found["object"], self.projection)
        if found.get("type") == "ERROR":
            found = json.loads(line)  # a Status, whole
        return str(found.get("type")), found.get("object") or {}


POD_CODEC = Codec("Pod", POD)
NODE_CODEC = Codec("Node", NODE)
CLAIM_CODEC = Codec("ResourceClaim", CLAIM)

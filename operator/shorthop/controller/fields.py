"""What shorthop reads of the objects its informers watch: the projections applied before an
object is handed on.

A Pod or Node as the API server sends it carries much that shorthop never reads —
``managedFields`` (often half of the object), container commands, environment, volumes, probes,
container statuses, a node's image list and system info. The informers keep only the fields
below (:func:`project`) before handing an object to ``controller.live``, so nothing downstream
can come to depend on the rest by accident, and what a 100,000-pod cluster costs the operator
is bounded by what it reads (docs/benchmarks.md, footprint).

Each projection lists the fields of the readers named beside it. **A reader of a new field
adds it here**: ``tests/unit/test_fields.py`` fills every field of the API's Pod and Node models
and fails when a projected object reads differently from the full one.

Pure; no I/O. Callers: ``controller.operator`` (passes them to its informers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

# A projection: for each kept key, True (keep the value whole), a nested projection (keep
# those keys of a mapping), or a one-element list holding the projection of each list item.
Projection = Mapping[str, Union[bool, "Projection", list["Projection"]]]

_CONTAINER: Projection = {"resources": True}  # occupancy.requests

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
        "containers": [_CONTAINER],
        "initContainers": [_CONTAINER],
    },
    "status": {
        "phase": True,
        "reason": True,  # live.pod_record: why a pod failed (kubelet admission)
        "conditions": True,  # live.pod_record: Ready
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

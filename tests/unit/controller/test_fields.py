"""The informers' projections keep every field shorthop reads: a Pod or Node with every field of
the API's model filled reads the same through ``live.pod_record`` and ``occupancy.node_offer``
whole and projected. A reader of a field the projection drops makes these fail (add the field to
``controller/fields.py``)."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client
from shorthop import errors
from shorthop.controller import fields, live
from shorthop.placement import devices, occupancy
from shorthop.topology import fake, labels

_LIST = re.compile(r"[Ll]ist\[(.+)\]")
_RESOURCES = ({labels.GPU_RESOURCE: "4", "cpu": "8", "memory": "64Gi", "pods": "110"}, {})
_LABELS = (
    {
        live.DEPLOYMENT_LABEL: "d",
        live.ROLE_LABEL: "prefill",
        live.REPLICA_LABEL: "1",
        live.POD_LABEL: "0",
        live.TEMPLATE_LABEL: "h1",
        labels.PRODUCT: "NVIDIA-H100-80GB-HBM3",
        labels.COUNT: "8",
        "nvidia.com/gpu.clique": "c.1",
        "topology.kubernetes.io/zone": "z1",
        "topology.shorthop.io/rack": "r1",
    },
    {labels.PRODUCT: "NVIDIA-GB200", labels.COUNT: "4", "app": "x"},
)
_ANNOTATIONS = (
    {occupancy.GPU_ANNOTATION: "0,1,2,3", live.PLANNED_NODE_ANNOTATION: "n1"},
    {labels.NUMA_KEY: "0,0,1,1", "other": "x"},
)
_WORDS = {
    "phase": ("Running", "Pending", "Failed", "Succeeded"),
    "type": ("Ready", "PodScheduled"),
    "status": ("True", "False"),
    "kind": ("InferenceDeployment", "ReplicaSet", "Pod"),
    "allocation_mode": ("ExactCount", "All"),
    "effect": ("NoSchedule", "NoExecute", "PreferNoSchedule"),
    "operator": ("Exists", "Equal"),
    "reason": ("OutOfnvidia.com/gpu", "Evicted"),
}


def _value(type_name: str, attr: str, rng: random.Random, depth: int) -> Any:
    """A value of ``type_name`` (the client's openapi_types notation) for attribute ``attr``."""
    found = _LIST.fullmatch(type_name)
    if found:
        return [_value(found.group(1), attr, rng, depth + 1) for _ in range(rng.randint(1, 2))]
    if type_name.lower().startswith(("dict(", "dict[")):
        if attr in ("labels", "node_selector"):
            return dict(rng.choice(_LABELS))
        if attr == "annotations":
            return dict(rng.choice(_ANNOTATIONS))
        return dict(rng.choice(_RESOURCES))
    if type_name == "str":
        return rng.choice(_WORDS.get(attr, ("n1", "0", "1", "x", "ns/a")))
    if type_name == "int":
        return rng.randint(1, 65535)
    if type_name == "bool":
        return rng.random() < 0.3
    if type_name == "float":
        return rng.random()
    if type_name == "datetime":
        return "2026-01-01T00:00:00Z"
    if type_name == "date":
        return "2026-01-01"
    if type_name == "object":
        return {"x": rng.choice(("1", "a"))}
    if depth > 12:
        return None
    model = getattr(client.models, type_name)
    return {
        model.attribute_map[name]: _value(kind, name, rng, depth + 1)
        for name, kind in model.openapi_types.items()
    }


def full(kind: str, rng: random.Random) -> dict[str, Any]:
    """A Pod, Node or ResourceClaim with every field of the client's model filled (camelCase,
    as served)."""
    model = "ResourceV1ResourceClaim" if kind == "ResourceClaim" else f"V1{kind}"
    body: dict[str, Any] = _value(model, "", rng, 0)
    return body


def _read_claim(obj: dict[str, Any]) -> object:
    try:
        return devices.read_claim(obj)
    except errors.DeviceError as exc:  # read the same way whole and projected
        return str(exc)


@settings(max_examples=60)
@given(st.randoms(use_true_random=False))
def test_a_projected_claim_reads_as_the_whole_one(rng: random.Random) -> None:
    claim = full("ResourceClaim", rng)
    assert _read_claim(fields.claims(claim)) == _read_claim(claim)
    assert "managedFields" not in fields.claims(claim)["metadata"]


@settings(max_examples=60)
@given(st.randoms(use_true_random=False))
def test_a_projected_pod_reads_as_the_whole_one(rng: random.Random) -> None:
    pod = full("Pod", rng)
    projected = fields.pods(pod)
    assert live.pod_record(projected) == live.pod_record(pod)
    assert occupancy.pod_usage(projected) == occupancy.pod_usage(pod)
    # The same pod before a scheduler bound it (what DRA reads of pods other schedulers place).
    pod["spec"].pop("nodeName", None)
    assert occupancy.pod_usage(fields.pods(pod)) == occupancy.pod_usage(pod)


@settings(max_examples=60)
@given(st.randoms(use_true_random=False))
def test_a_projected_node_reads_as_the_whole_one(rng: random.Random) -> None:
    node = full("Node", rng)
    projected = fields.nodes(node)
    assert occupancy.node_offer(projected, fake.CONFIG) == occupancy.node_offer(node, fake.CONFIG)


def test_what_shorthop_does_not_read_is_left_out() -> None:
    pod = full("Pod", random.Random(1))
    projected = fields.pods(pod)
    assert "managedFields" in pod["metadata"]
    assert "managedFields" not in projected["metadata"]
    assert set(projected["spec"]) <= {
        "nodeName",
        "hostNetwork",
        "resourceClaims",
        "containers",
        "initContainers",
        "resources",
        "overhead",
    }
    assert all(
        set(c) <= {"resources", "ports", "restartPolicy"} for c in projected["spec"]["containers"]
    )
    assert len(json.dumps(projected)) < len(json.dumps(pod)) / 5
    node = full("Node", random.Random(1))
    assert "images" in node["status"]
    assert "images" not in fields.nodes(node)["status"]


def test_a_field_of_the_wrong_shape_is_kept_for_the_reader_to_reject() -> None:
    pod = {"metadata": {"name": "p"}, "spec": "not a mapping", "status": {"phase": "Running"}}
    assert fields.pods(pod)["spec"] == "not a mapping"
    containers = {"spec": {"containers": "nope", "nodeName": "n"}}
    assert fields.pods(containers)["spec"]["containers"] == "nope"


@settings(max_examples=40)
@given(st.randoms(use_true_random=False), st.sampled_from(["Pod", "Node", "ResourceClaim"]))
def test_the_codec_decodes_exactly_what_the_projection_keeps(rng: random.Random, kind: str) -> None:
    obj = full(kind, rng)
    codec, projected = {
        "Pod": (fields.POD_CODEC, fields.pods(obj)),
        "Node": (fields.NODE_CODEC, fields.nodes(obj)),
        "ResourceClaim": (fields.CLAIM_CODEC, fields.claims(obj)),
    }[kind]
    page = {"metadata": {"resourceVersion": "5", "continue": "t"}, "items": [obj, obj]}
    items, meta = codec.page(json.dumps(page).encode())
    assert items == [projected, projected]
    assert meta == {"resourceVersion": "5", "continue": "t"}
    assert codec.event(json.dumps({"type": "MODIFIED", "object": obj}).encode()) == (
        "MODIFIED",
        projected,
    )


def test_the_codec_keeps_a_wrong_shape_and_an_error_whole() -> None:
    odd = {"metadata": {"name": "p", "managedFields": []}, "spec": "not a mapping"}
    items, _ = fields.POD_CODEC.page(json.dumps({"metadata": {}, "items": [odd]}).encode())
    assert items == [{"metadata": {"name": "p"}, "spec": "not a mapping"}]
    status = {"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired"}
    line = json.dumps({"type": "ERROR", "object": status}).encode()
    assert fields.POD_CODEC.event(line) == ("ERROR", status)

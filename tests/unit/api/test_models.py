"""The API models accept the contract manifest exactly and reject bad specs naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from shorthop.api import crd, models
from shorthop.placement import request
from shorthop.topology import levels

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = yaml.safe_load((ROOT / "docs" / "examples" / "minimal.yaml").read_text())


def test_minimal_contract_manifest_is_accepted_with_defaults() -> None:
    infd = models.InferenceDeployment.model_validate(MINIMAL)
    # gpusPerPod is resolved (defaulting to gpusPerReplica) where the request is built.
    prefill, decode = request.from_spec(infd.spec, levels.preset("plain").tiers).roles
    assert (prefill.name, prefill.replicas, prefill.pod_gpus, prefill.pods_per_replica) == (
        "prefill",
        2,
        4,
        1,
    )
    assert (decode.pod_gpus, decode.pods_per_replica) == (4, 2)
    traffic = infd.spec.effective_traffic()
    assert [(t.from_, t.to, t.weight) for t in traffic] == [("prefill", "decode", 1.0)]
    assert infd.spec.kv_cache.bytes_per_token == 327_680


def spec_with(**role_changes: Any) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(MINIMAL))
    doc["spec"]["roles"][1].update(role_changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (spec_with(gpusPerPod=3), "multiple of gpusPerPod"),
        (spec_with(gpusPerReplica=0), "gpusPerReplica"),
        (spec_with(replicas=-1), "replicas"),
        (spec_with(name="Decode!"), "name"),
        (spec_with(template={"spec": {"containers": []}}), "containers"),
        (spec_with(gpusPerRplica=8), "gpusPerRplica"),
        (
            {
                **MINIMAL,
                "spec": {**MINIMAL["spec"], "traffic": [{"from": "prefill", "to": "nope"}]},
            },
            "unknown role 'nope'",
        ),
        ({**MINIMAL, "spec": {"roles": MINIMAL["spec"]["roles"] * 2}}, "unique"),
    ],
    ids=[
        "indivisible",
        "zero-gpus",
        "negative-replicas",
        "bad-name",
        "no-containers",
        "typo-field",
        "unknown-traffic-role",
        "duplicate-roles",
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        models.InferenceDeployment.model_validate(doc)
    assert words in str(info.value)


def _with_traffic(weight: Any) -> dict[str, Any]:
    return {
        **MINIMAL,
        "spec": {
            **MINIMAL["spec"],
            "traffic": [{"from": "prefill", "to": "decode", "weight": weight}],
        },
    }


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (spec_with(replicas="2"), "replicas"),
        (spec_with(replicas=True), "replicas"),
        (spec_with(gpusPerReplica="8"), "gpusPerReplica"),
        (spec_with(gpusPerPod=True), "gpusPerPod"),
        (_with_traffic(True), "weight"),
        (spec_with(template={"spec": {"containers": ["engine"]}}), "template"),
    ],
    ids=[
        "quoted-replicas",
        "bool-replicas",
        "quoted-gpus",
        "bool-gpus-per-pod",
        "bool-weight",
        "container-string",
    ],
)
def test_what_the_api_server_refuses_the_models_refuse(doc: dict[str, Any], path: str) -> None:
    """Found by chaos/test_fuzz.py: the models coerced "2" and true to numbers and took a string
    for a container, which the API server refuses; `shorthop plan` then planned manifests that
    `kubectl apply` rejects."""
    with pytest.raises(ValidationError) as info:
        models.InferenceDeployment.model_validate(doc)
    assert path in str(info.value)


def test_checked_in_crd_matches_the_models() -> None:
    generated = crd.render()
    for directory in ("crds", "charts/shorthop/crds"):
        path = ROOT / directory / crd.FILE_NAME
        assert path.read_text() == generated, f"{path} drifted from the models: run `make crds`"


def test_crd_schema_is_structural() -> None:
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def walk(node: dict[str, Any], where: str) -> None:
        assert not {"$ref", "anyOf", "title"} & set(node), where
        assert "type" in node, where
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{where}.{name}")
        if "items" in node:
            walk(node["items"], f"{where}[]")

    walk(schema, "")

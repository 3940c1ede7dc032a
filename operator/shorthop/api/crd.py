"""Generate the CustomResourceDefinition from the pydantic models (``make crds``).

Pydantic's JSON Schema is turned into a structural OpenAPI v3 schema: ``$ref`` inlined,
optional fields (``anyOf`` with null) unwrapped, titles dropped, free-form objects marked with
``x-kubernetes-preserve-unknown-fields``, ``const`` turned into a one-value ``enum``. A test fails
when the checked-in YAML under ``crds/`` drifts from this output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from shorthop.api import models

FILE_NAME = f"{models.PLURAL}.{models.GROUP}.yaml"
_DROP = {"title", "$defs"}


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        target = defs[schema["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if len(options) == 1:
            return _structural({**options[0], **rest}, defs)
        raise ValueError(f"cannot express a union in a structural schema: {schema}")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict) and value:
                out[key] = _structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("additionalProperties", None)
    elif (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def schema_of(model: type[models.Model]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    return _structural(raw, raw.get("$defs", {}))


def crd() -> dict[str, Any]:
    """The CRD manifest as a dict."""
    spec = schema_of(models.InferenceDeploymentSpec)
    spec["description"] = "Prefill/decode roles and how to place them."
    status = schema_of(models.InferenceDeploymentStatus)
    status["description"] = "Placement, readiness, cost and tiers, written by shorthop."
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": ".status.ready",
            "description": "ready pods / total pods",
        },
        {
            "name": "Tier",
            "type": "string",
            "jsonPath": ".status.worstTier",
            "description": "widest tier any replica or prefill-decode pair uses",
        },
        {"name": "Cost", "type": "number", "jsonPath": ".status.cost.total", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{models.PLURAL}.{models.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "shorthop"},
        },
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.KIND.lower(),
                "shortNames": [models.SHORT_NAME],
                "categories": ["all", "shorthop"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A disaggregated LLM inference deployment placed topology-aware by shorthop.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    header = "# Generated by `make crds` from operator/shorthop/api/models.py; do not edit.\n"
    return header + yaml.dump(crd(), Dumper=_NoAliases, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the CRD YAML generated from the API models."
    )
    parser.add_argument("directories", nargs="+", type=Path, help="where to write " + FILE_NAME)
    args = parser.parse_args(argv)
    text = render()
    for directory in args.directories:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / FILE_NAME).write_text(text)
        print(f"wrote {directory / FILE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

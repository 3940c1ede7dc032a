"""What ``kubectl explain`` and error messages show: every CRD field has a description, scopes
list the tier names, and a rule over a whole spec names the field it is about, the way the API
server writes paths (``spec.traffic[0].to``, list items by index)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from shorthop import manifest
from shorthop.api import crd
from shorthop.errors import SpecError
from shorthop.topology import levels

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = yaml.safe_load((ROOT / "docs" / "examples" / "minimal.yaml").read_text())


def _fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from _fields(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _fields(schema["items"], f"{path}[]")


def test_every_crd_field_has_a_description() -> None:
    root = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = dict(_fields(root["properties"]["spec"], "spec"))
    fields |= dict(_fields(root["properties"]["status"], "status"))
    assert "spec.roles[].template" in fields
    assert "status.replicas[].pods[].gpus" in fields
    missing = [path for path, sub in fields.items() if not sub.get("description")]
    assert not missing, f"fields without a description (kubectl explain): {missing}"


def test_scopes_list_every_tier_name_of_every_preset() -> None:
    root = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    scopes = {
        "replicaScope": root["properties"]["roles"]["items"]["properties"]["replicaScope"],
        "required": root["properties"]["placement"]["properties"]["required"],
        "preferred": root["properties"]["placement"]["properties"]["preferred"],
    }
    for name, preset in levels.PRESETS.items():
        for field, schema in scopes.items():
            text = schema["description"]
            unnamed = [t for t in preset.tiers if t not in text]
            assert not unnamed, f"{field} does not name tiers {unnamed} of preset {name}"
            # Listed fine to coarse, as the preset orders them.
            listed = text[text.index(f"{name}:") :]
            positions = [listed.index(level) for level in reversed(preset.level_names)]
            assert positions == sorted(positions), f"{field}: {name}'s levels out of order"


def _spec(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(MINIMAL))
    doc["spec"].update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (
            _spec(traffic=[{"from": "prefill", "to": "decode"}, {"from": "ghost", "to": "decode"}]),
            "spec.traffic[1].from",
            ["'ghost'", "prefill, decode"],
        ),
        (
            _spec(traffic=[{"from": "prefill", "to": "decoder"}]),
            "spec.traffic[0].to",
            ["'decoder'"],
        ),
        (
            _spec(roles=[*MINIMAL["spec"]["roles"], MINIMAL["spec"]["roles"][0]]),
            "spec.roles[2]",
            ["unique", "'prefill'"],
        ),
    ],
    ids=["unknown-from", "unknown-to", "duplicate-role"],
)
def test_a_rule_over_the_spec_names_the_field_by_index(
    doc: dict[str, Any], field: str, words: list[str]
) -> None:
    with pytest.raises(SpecError) as info:
        manifest.parse_deployment(doc)
    assert info.value.field == field
    for word in words:
        assert word in info.value.problem

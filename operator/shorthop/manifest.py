"""Read InferenceDeployment manifests (files or API bodies) into validated models.

Pydantic's errors become one :class:`~shorthop.errors.SpecError` naming the field as a path
(``spec.roles[1].gpusPerPod``), the way ``kubectl`` users read them. Used by the CLI and the
controller (for what the API server's schema cannot check).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shorthop.api import models
from shorthop.errors import SpecError


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('spec', 'roles', 1, 'gpusPerPod')`` -> ``spec.roles[1].gpusPerPod``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(exc: ValidationError) -> SpecError:
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = str(first["msg"]).removeprefix("Value error, ")
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, models.FieldError):
        # A rule over a whole model about one field below it: name that field.
        loc, msg = (*loc, *cause.loc), str(cause)
    if first["type"] == "extra_forbidden":
        msg = "is not a known field (check the spelling; see crds/ for the schema)"
    elif first["type"] == "missing":
        msg = "is required"
    extra = len(exc.errors()) - 1
    if extra:
        msg += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return SpecError(field_path(loc) or "spec", msg)


def parse_deployment(doc: Mapping[str, Any]) -> models.InferenceDeployment:
    """Validate one manifest (as applied, or as the API returns it: status/extra metadata are
    ignored)."""
    if not isinstance(doc, Mapping):
        raise SpecError(
            "manifest", "must be a YAML mapping with apiVersion, kind, metadata and spec"
        )
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if kind != models.KIND or api_version != models.API_VERSION:
        raise SpecError(
            "kind", f"expected {models.KIND} ({models.API_VERSION}), got {kind} ({api_version})"
        )
    meta = doc.get("metadata") or {}
    body = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace") or "default"},
        "spec": doc.get("spec"),
    }
    try:
        return models.InferenceDeployment.model_validate(body)
    except ValidationError as exc:
        raise _message(exc) from None


def load_deployment(path: str) -> models.InferenceDeployment:
    """Read a file holding exactly one InferenceDeployment."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError("--deployment", f"cannot read {path}: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError("--deployment", f"{path} is not valid YAML{where}") from None
    except (ValueError, RecursionError) as exc:
        # Raised while building values: an integer of more than 4300 digits, deep nesting.
        problem = (
            "nested too deeply" if isinstance(exc, RecursionError) else "a value cannot be read"
        )
        raise SpecError("--deployment", f"{path} is not usable YAML ({problem})") from None
    if len(docs) != 1:
        raise SpecError(
            "--deployment",
            f"{path} must hold exactly one InferenceDeployment, found {len(docs)} documents",
        )
    return parse_deployment(docs[0])

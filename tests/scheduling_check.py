"""The tests' own reading of a template's required scheduling rules, for checks made at every
pod state (``tests.watching``): independent of shorthop's code, so that a bug there cannot hide
itself. It reads ``nodeName``, ``nodeSelector`` and required node affinity with every operator,
as the Kubernetes API reference documents them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Pods = Mapping[str, Mapping[str, Any]]


def _requirement(e: Mapping[str, Any], labels: Mapping[str, str], name: str, field: bool) -> bool:
    value = name if field else labels.get(e["key"])
    values = e.get("values") or []
    op = e["operator"]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    try:
        a, b = int(str(value)), int(values[0])
    except ValueError:
        return False
    return a > b if op == "Gt" else a < b


def admits(spec: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    """Does the node (its labels and name) meet the pod spec's required rules?"""
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    node = ((spec.get("affinity") or {}).get("nodeAffinity")) or {}
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    for term in required.get("nodeSelectorTerms") or []:
        expressions = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if (
            (expressions or fields)
            and all(_requirement(e, labels, name, False) for e in expressions)
            and all(_requirement(e, labels, name, True) for e in fields)
        ):
            return True
    return False


def bound_by_the_rules(
    templates: Mapping[tuple[str, str], Mapping[str, Any]],
    labels: Callable[[str], Mapping[str, str] | None],
) -> Callable[[Pods], list[str]]:
    """A check: every bound pod of a (deployment, role) in ``templates`` sits on a node its
    template admits. ``labels(node)``: the node's labels (None: unknown, not checked)."""

    def check(pods: Pods) -> list[str]:
        found = []
        for p in pods.values():
            meta = p.get("metadata") or {}
            pod_labels = meta.get("labels") or {}
            key = (pod_labels.get("shorthop.io/deployment"), pod_labels.get("shorthop.io/role"))
            node = (p.get("spec") or {}).get("nodeName")
            spec = templates.get(key)  # type: ignore[arg-type]
            node_labels = labels(node) if node else None
            if spec is not None and node_labels is not None and not admits(spec, node_labels, node):
                found.append(f"{meta.get('namespace')}/{meta.get('name')} bound to {node}")
        return found

    return check

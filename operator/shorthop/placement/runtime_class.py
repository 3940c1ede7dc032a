"""A role's RuntimeClass, applied to its pod template as the API server applies it to the pods.

When a pod names ``runtimeClassName``, the API server's RuntimeClass admission (on by default)
changes it before it is stored: ``spec.overhead`` becomes the class's ``overhead.podFixed`` (the
scheduler and the kubelet add it to the pod's requests), the class's ``scheduling.nodeSelector``
joins the pod's ``nodeSelector`` and its ``scheduling.tolerations`` join the pod's tolerations.
It refuses the pod when the class does not exist, when a node selector key has another value in
the pod, or when the pod carries an ``overhead`` other than the class's. A class that does not
exist is a ``MissingObject`` (the operator comes back: the class may be made later).

shorthop plans a role with its template as the pods will be admitted (:func:`applied`), so a pod
is never bound to a node the kubelet then refuses (out of CPU or memory once the overhead
counts, or a node without the class's labels); the same refusals are spec errors that name the
field and the fix, before any pod is made.

Callers: ``placement.request.from_spec`` (the classes read by the controller, or found in
``shorthop plan``'s snapshot). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shorthop.errors import MissingObject, SpecError

API_VERSION = "node.k8s.io/v1"


def named(pod_spec: Mapping[str, Any]) -> str | None:
    """The ``runtimeClassName`` of a template's pod spec, or None (absent or empty)."""
    name = pod_spec.get("runtimeClassName") if isinstance(pod_spec, Mapping) else None
    return name if isinstance(name, str) and name else None


def applied(
    pod_spec: Mapping[str, Any], found: Mapping[str, Any] | None, path: str
) -> dict[str, Any]:
    """``pod_spec`` (at field path ``path``) as the API server admits a pod of it, with the
    RuntimeClass it names ``found`` (None: the class does not exist). Raises ``SpecError`` where
    the API server would refuse the pod.

    >>> spec = {"runtimeClassName": "kata", "nodeSelector": {"zone": "a"}}
    >>> rc = {"metadata": {"name": "kata"}, "overhead": {"podFixed": {"cpu": "250m"}},
    ...       "scheduling": {"nodeSelector": {"kata": "yes"},
    ...                      "tolerations": [{"key": "kata", "operator": "Exists"}]}}
    >>> out = applied(spec, rc, "spec")
    >>> out["overhead"], out["nodeSelector"], out["tolerations"]
    ({'cpu': '250m'}, {'zone': 'a', 'kata': 'yes'}, [{'key': 'kata', 'operator': 'Exists'}])
    """
    name = named(pod_spec)
    if name is None:
        return dict(pod_spec)
    field = f"{path}.runtimeClassName"
    if found is None:
        raise MissingObject(
            field,
            f'RuntimeClass "{name}" does not exist, and the API server refuses pods that name '
            "it; create the RuntimeClass or remove the field",
        )
    out = dict(pod_spec)
    overhead = _map(found.get("overhead"), field, name, "overhead")
    pod_fixed = _map(overhead.get("podFixed"), field, name, "overhead.podFixed")
    if pod_fixed:
        own = pod_spec.get("overhead")
        if own not in (None, {}) and own != pod_fixed:
            raise SpecError(
                f"{path}.overhead",
                f'differs from RuntimeClass "{name}"\'s overhead.podFixed {dict(pod_fixed)}, and '
                "the API server refuses such pods; remove the field (the class sets it)",
            )
        out["overhead"] = dict(pod_fixed)
    scheduling = _map(found.get("scheduling"), field, name, "scheduling")
    selector = _map(scheduling.get("nodeSelector"), field, name, "scheduling.nodeSelector")
    if selector:
        own_selector = pod_spec.get("nodeSelector")
        merged = dict(own_selector) if isinstance(own_selector, Mapping) else {}
        for key, value in selector.items():
            if key in merged and merged[key] != value:
                raise SpecError(
                    f"{path}.nodeSelector.{key}",
                    f'is "{merged[key]}" but RuntimeClass "{name}" selects {key}={value}, and '
                    "the API server refuses such pods; drop the key or use the class's value",
                )
            merged[key] = value
        out["nodeSelector"] = merged
    tolerations = scheduling.get("tolerations")
    if tolerations not in (None, []):
        if not isinstance(tolerations, list):
            raise SpecError(
                field,
                f'RuntimeClass "{name}": scheduling.tolerations is not a list; fix the class',
            )
        own_tolerations = pod_spec.get("tolerations")
        base = list(own_tolerations) if isinstance(own_tolerations, list) else []
        out["tolerations"] = base + [t for t in tolerations if t not in base]
    return out


def _map(value: Any, field: str, name: str, what: str) -> Mapping[str, Any]:
    """A mapping field of the class (absent: empty); another shape is the class's error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(
            field,
            f'RuntimeClass "{name}": {what} is not a mapping; fix the class',
        )
    return value

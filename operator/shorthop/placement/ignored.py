"""The scheduling fields of a pod template that shorthop does not apply, each with the reason.

shorthop is the scheduler of its pods, so every scheduling field of a role's template is either
honoured (``constraints``: ``nodeSelector``, node affinity, ``nodeName``, host ports; tolerations;
``runtimeClassName``, whose class is applied as the API server applies it: ``runtime_class``)
or named here, never dropped silently: the controller posts the list as one Warning event per
deployment generation, and the user guide's table says the same.

- ``affinity.podAffinity`` / ``podAntiAffinity`` and ``topologySpreadConstraints``: between
  shorthop's own pods, where its pods go (replicas together, peers close) is its topology
  objective's decision; against other workloads they are not evaluated;
- ``schedulingGates``: removed from the pods (shorthop binds a whole gang at once, and the API
  server refuses to bind a gated pod);
- ``schedulerName`` (another scheduler's): replaced by shorthop's;
- ``priorityClassName``/``priority``/``preemptionPolicy``: they reach the pods (the kubelet orders
  evictions by them), but shorthop never preempts other pods to make room;
- volumes from PersistentVolumeClaims (and ephemeral ones): their node affinity is not checked and
  WaitForFirstConsumer claims are not bound by shorthop;
- ``resourceClaims``: not allocated by shorthop;
- a required node affinity term that can never match (a ``Gt``/``Lt`` value that is no integer,
  which the API server accepts).

Caller: ``controller.reconcile``. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shorthop.placement import constraints

_WHY = {
    "affinity.podAffinity": (
        "not applied: where shorthop's own pods go is its topology objective's decision, and "
        "affinity to other workloads is not evaluated"
    ),
    "affinity.podAntiAffinity": (
        "not applied: spreading shorthop's own pods is its topology objective's decision, and "
        "anti-affinity to other workloads is not evaluated"
    ),
    "topologySpreadConstraints": (
        "not applied: how shorthop's pods spread is its topology objective's decision"
    ),
    "schedulingGates": (
        "removed from the pods: shorthop binds the whole gang at once and a gated pod cannot be "
        "bound"
    ),
    "schedulerName": "replaced by shorthop's scheduler name",
    "priorityClassName": (
        "reaches the pods (eviction order), but shorthop never preempts other pods to make room"
    ),
    "priority": "reaches the pods, but shorthop never preempts other pods to make room",
    "preemptionPolicy": "has no effect: shorthop never preempts other pods",
    "resourceClaims": "not allocated by shorthop; the pod cannot start until something does",
}


def _as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def unapplied(
    spec: Mapping[str, Any],
    path: str,
    rules: constraints.Constraints,
    *,
    scheduler_name: str = "shorthop",
) -> list[str]:
    """One sentence per scheduling field of the template ``spec`` (at field path ``path``) that
    shorthop does not apply, naming the field and why; empty when it applies them all.
    ``scheduler_name``: shorthop's own (a template naming it is not warned about).

    >>> for line in unapplied({"containers": [{}], "topologySpreadConstraints": [{}]},
    ...                       "spec", constraints.Constraints()):
    ...     print(line.replace("shorthop's pods spread", "..."))
    spec.topologySpreadConstraints: not applied: how ... is its topology objective's decision
    """
    found = []
    affinity = _as_map(spec.get("affinity"))
    for kind in ("podAffinity", "podAntiAffinity"):
        if affinity.get(kind):
            found.append(f"{path}.affinity.{kind}: {_WHY['affinity.' + kind]}")
    for name in (
        "topologySpreadConstraints",
        "schedulingGates",
        "schedulerName",
        "priorityClassName",
        "priority",
        "preemptionPolicy",
        "resourceClaims",
    ):
        if name == "schedulerName" and spec.get(name) == scheduler_name:
            continue
        if spec.get(name) not in (None, "", [], {}):
            found.append(f"{path}.{name}: {_WHY[name]}")
    volumes = spec.get("volumes")
    for i, item in enumerate(volumes if isinstance(volumes, list) else []):
        volume = _as_map(item)
        if volume.get("persistentVolumeClaim") or volume.get("ephemeral"):
            found.append(
                f"{path}.volumes[{i}]: a claimed volume; shorthop checks neither its node "
                "affinity nor binds a WaitForFirstConsumer claim"
            )
    for term in rules.required or ():
        if term.broken is not None:
            found.append(term.broken)
    return found

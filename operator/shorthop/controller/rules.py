"""The shell's part in honouring the templates' scheduling rules (``placement.filters`` decides,
this module reads and writes the API around it).

- :func:`unapplied`: the scheduling fields of each role's template that shorthop does not apply
  (``placement.ignored``), for the reconciler's Warning event (one per generation);
- :func:`runtime_classes`: the RuntimeClasses the templates name, read for the plan (their
  overhead, node selector and tolerations: ``placement.runtime_class``);
- :func:`record_rejections`: pods a kubelet refused at admission exclude their node for their
  role (``placement.admission``); new exclusions are patched into ``status.excludedNodes``
  *before* the reconciler deletes and replaces the pods, so a restarted operator never places
  them on that node again (no loop);
- :func:`recheck`: just before a bind, the node as stored now (a quorum read, once per node and
  visit, :class:`FreshNodes`) against the role's rules that read labels: a label changed since
  the plan makes the bind a conflict, and the gang is planned again.

Caller: ``controller.reconcile``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shorthop.api import models
from shorthop.controller import status
from shorthop.controller.binder import BindCode, BindResult
from shorthop.controller.kube import Kube
from shorthop.errors import KubeError
from shorthop.placement import admission, filters, ignored, occupancy, runtime_class
from shorthop.placement.admission import Exclusion
from shorthop.placement.request import Request, RoleRequest
from shorthop.placement.triage import PodState


def unapplied(
    infd: models.InferenceDeployment, req: Request, scheduler_name: str = "shorthop"
) -> list[str]:
    """Every scheduling field of the deployment's templates that shorthop does not apply."""
    return [
        line
        for i, (role, shape) in enumerate(zip(infd.spec.roles, req.roles, strict=True))
        for line in ignored.unapplied(
            role.template.spec,
            f"spec.roles[{i}].template.spec",
            shape.constraints,
            scheduler_name=scheduler_name,
        )
    ]


def runtime_classes(kube: Kube, infd: models.InferenceDeployment) -> dict[str, Any]:
    """The RuntimeClasses the deployment's templates name, as stored now (None for one that
    does not exist), for ``request.from_spec`` to apply as the API server will to the pods."""
    names = {runtime_class.named(role.template.spec) for role in infd.spec.roles}
    return {name: kube.runtime_class(name) for name in sorted(n for n in names if n)}


def record_rejections(
    kube: Kube,
    body: Mapping[str, Any],
    pods: Sequence[PodState],
    uid: str,
    hashes: Mapping[str, str],
    node_exists: Callable[[str], bool],
) -> tuple[tuple[Exclusion, ...], list[str]]:
    """The exclusions to plan with (the recorded ones, those of pods rejected since, less those
    of changed templates or deleted nodes), patched into the status when they changed; and one
    event message per new exclusion."""
    old = status.excluded_nodes(body.get("status") or {})
    found = admission.rejections(pods, hashes, uid)
    merged = admission.merge(old, [r.exclusion for r in found], hashes, node_exists)
    if merged == old:
        return merged, []
    meta = body["metadata"]
    kube.patch_status(
        meta["namespace"], meta["name"], {"excludedNodes": status.exclusions_json(merged)}
    )
    events = []
    for r in found:
        e = r.exclusion
        if e in merged and e not in old:
            events.append(
                f"pod {r.pod} was rejected by the kubelet of node {e.node} ({e.reason}); "
                f"placing it again once, with {e.node} excluded for role {e.role}"
            )
    return merged, events


class FreshNodes:
    """Nodes read from the API (not the cache) during one visit's binds, each at most once;
    shared by the visit's bind threads."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._found: dict[str, dict[str, Any] | None] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            if name in self._found:
                return self._found[name]
        found = self.kube.fresh_node(name)
        with self._lock:
            return self._found.setdefault(name, found)


def recheck(role: RoleRequest, node: str, nodes: FreshNodes) -> BindResult | None:
    """Just before a bind: does the node, as stored now, still pass the role's rules that read
    its labels (``nodeName``, ``nodeSelector``, required node affinity)? A conflict when it does
    not (the gang is undone and planned again), None when it does or when the role has no such
    rule. A failed read is an error (retried)."""
    if not role.constraints.selects:
        return None
    try:
        found = nodes.get(node)
    except KubeError as exc:
        return BindResult(BindCode.ERROR, f"reading node {node} before the bind: {exc}")
    if found is None:
        return BindResult(BindCode.CONFLICT, f"node {node} is gone")
    problem = filters.admits(role, occupancy.labels_of(found), node)
    return BindResult(BindCode.CONFLICT, problem) if problem is not None else None

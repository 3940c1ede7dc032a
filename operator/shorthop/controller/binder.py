"""Binding pods to their planned node: the ``Binder`` seam.

A binder gets a created pod and its planned node and GPU indices, and answers with a
:class:`BindResult` whose code says what the controller does next:

- ``BOUND``: done; the pod is counted on that node.
- ``SKIP``: nothing to do: the pod is already bound to that node (an earlier attempt whose answer
  was lost, or another binder).
- ``CONFLICT``: the node cannot take it any more (the pod is gone, replaced, being deleted or
  bound elsewhere; the node refused it): the controller deletes the pod and **re-plans** the
  replica, never retries in place.
- ``ERROR``: a transient failure (no answer, 429, 5xx): the controller retries with backoff.

Contracts: ``bind`` is idempotent (binding a pod already bound to the same node is ``SKIP``) and
never raises for an API failure. :class:`BindingSubresourceBinder` uses ``pods/binding``, where
the kubelet/device plugin picks the actual GPUs inside the node (the planned indices are
advisory). ``controller.dra.ClaimBinder`` implements the same protocol for pods on DRA nodes
(``PodRef.claim`` set): it allocates the pod's ResourceClaim to exactly the planned devices
before binding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from shorthop import errors
from shorthop.controller.kube import Kube, KubeError
from shorthop.placement import occupancy


class BindCode(Enum):
    BOUND = "bound"
    SKIP = "skip"
    CONFLICT = "conflict"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class BindResult:
    code: BindCode
    message: str = ""


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    uid: str | None = None
    claim: str | None = None  # the ResourceClaim holding its GPUs (pods on DRA nodes)


class Binder(Protocol):
    def bind(self, pod: PodRef, node: str, gpus: tuple[int, ...]) -> BindResult: ...


class BindingSubresourceBinder:
    """Binds through the ``pods/binding`` subresource, as kube-scheduler does."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def bind(self, pod: PodRef, node: str, gpus: tuple[int, ...]) -> BindResult:
        try:
            self.kube.bind(pod.namespace, pod.name, node, uid=pod.uid)
        except (errors.NotFound, errors.Invalid) as exc:
            return BindResult(BindCode.CONFLICT, str(exc))
        except errors.Conflict as exc:
            # A 409 covers "already bound" (here or elsewhere), "being deleted" and a replaced
            # pod alike, with no structured field to tell them apart: read the pod.
            return self._after_conflict(pod, node, exc)
        except KubeError as exc:
            return BindResult(BindCode.ERROR, str(exc))
        return BindResult(BindCode.BOUND)

    def _after_conflict(self, pod: PodRef, node: str, exc: KubeError) -> BindResult:
        try:
            found = self.kube.get_pod(pod.namespace, pod.name)
        except KubeError as read:
            return BindResult(BindCode.ERROR, f"{exc}; reading the pod: {read}")
        if found is None:
            return BindResult(BindCode.CONFLICT, f"{exc}; the pod is gone")
        meta = occupancy.as_map(found.get("metadata"))
        bound_to = occupancy.as_map(found.get("spec")).get("nodeName")
        if pod.uid and meta.get("uid") != pod.uid:
            return BindResult(BindCode.CONFLICT, f"{exc}; the pod was replaced")
        if meta.get("deletionTimestamp"):
            return BindResult(BindCode.CONFLICT, f"{exc}; the pod is being deleted")
        if bound_to == node:
            return BindResult(BindCode.SKIP, f"pod {pod.namespace}/{pod.name} is bound to {node}")
        if bound_to:
            return BindResult(BindCode.CONFLICT, f"{exc}; the pod is bound to {bound_to}")
        return BindResult(BindCode.CONFLICT, str(exc))

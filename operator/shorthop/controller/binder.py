"""Binding pods to their planned node: the ``Binder`` seam.

A binder gets a created pod and its planned node and GPU indices, and answers with a
:class:`BindResult` whose code says what the controller does next:

- ``BOUND``: done; the pod is counted on that node.
- ``SKIP``: not this binder's pod (or already bound to that node); nothing to do.
- ``CONFLICT``: the node cannot take it any more (bound elsewhere, node gone or full, pod being
  deleted): the controller deletes the pod and **re-plans** the replica, never retries in place.
- ``ERROR``: a transient failure (5xx, 429, timeout): the controller retries with backoff.

Contracts: ``bind`` is idempotent (binding a pod already bound to the same node is ``SKIP``).
:class:`BindingSubresourceBinder` uses ``pods/binding``, where the kubelet/device plugin picks the
actual GPUs inside the node (the planned indices are advisory). A DRA binder that pins exact GPUs
through ResourceClaims would implement the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from shorthop.controller.kube import Kube, KubeError


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


class Binder(Protocol):
    def bind(self, pod: PodRef, node: str, gpus: tuple[int, ...]) -> BindResult: ...


class BindingSubresourceBinder:
    """Binds through the ``pods/binding`` subresource, as kube-scheduler does."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def bind(self, pod: PodRef, node: str, gpus: tuple[int, ...]) -> BindResult:
        try:
            self.kube.bind(pod.namespace, pod.name, node, uid=pod.uid)
        except KubeError as exc:
            if exc.status == 409 and "already assigned" in exc.reason and node in exc.reason:
                return BindResult(BindCode.SKIP, exc.reason)
            if exc.status in (404, 409, 422) or (
                exc.status == 400 and "being deleted" in exc.reason
            ):
                return BindResult(BindCode.CONFLICT, str(exc))
            return BindResult(BindCode.ERROR, str(exc))
        return BindResult(BindCode.BOUND)

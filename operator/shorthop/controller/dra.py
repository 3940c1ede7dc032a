"""Exact GPUs through Dynamic Resource Allocation: shorthop allocates its pods' ResourceClaims.

On a *DRA node* (its GPUs published in a ResourceSlice of the configured driver) each pod shorthop
places references one ResourceClaim of its own, and shorthop, as the pod's scheduler, writes the
claim's allocation itself, so the devices are exactly the planned ones. Per pod, in order:

1. the pod is created referencing the claim (``spec.resourceClaims: [{name: gpus,
   resourceClaimName: <pod>-gpus}]``, ``resources.claims: [{name: gpus}]`` in the containers that
   asked for GPUs) and with no ``nvidia.com/gpu`` request (:func:`attach_claim`). The API server
   accepts a pod whose claim does not exist yet (the kubelet waits for it), and a pod's
   ``spec.resourceClaims`` cannot change after creation, so the reference comes first;
2. the claim is created owned by the pod (a controller owner reference: the garbage collector
   removes it with the pod, and the resourceclaim controller deletes it once the pod is done),
   asking for exactly ``gpusPerPod`` devices of the device class, with the
   ``resource.kubernetes.io/delete-protection`` finalizer kube-scheduler adds before it
   allocates (:func:`render_claim`);
3. its status is written in one update, as kube-scheduler's DynamicResources plugin does in
   PreBind: ``allocation.devices.results`` (one ``{request, driver, pool, device}`` per planned
   GPU), the class's configuration copied as ``FromClass``, ``allocation.nodeSelector`` pinning
   the node, and ``reservedFor`` the pod, which the kubelet requires before it prepares the
   devices (:func:`allocated`);
4. the pod is bound (``pods/binding``).

Crash point ``after-claim`` sits between 3 and 4. :class:`ClaimBinder` is the
:class:`~shorthop.controller.binder.Binder` for such pods and is idempotent: a claim already
allocated to the planned devices and reserved for the pod is left alone, one of an earlier pod
of the same name is deleted first, one allocated to other devices is a ``CONFLICT`` (the pod is
re-planned). Right before writing, the planned devices are checked against the live view once
more: a claim written by another scheduler since the plan, or devices its pending pods would
take first, are a ``CONFLICT`` too. Right after writing (and before every bind), a fresh,
consistent list of all claims must show no other claim naming one of our devices; if one does,
shorthop yields: it clears its own allocation and the pod is re-placed (docs/design.md, "DRA:
sharing devices with kube-scheduler", says which window remains).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from shorthop import errors
from shorthop.api import models
from shorthop.controller import render
from shorthop.controller.binder import BindCode, BindingSubresourceBinder, BindResult, PodRef
from shorthop.controller.faults import Faults
from shorthop.controller.kube import Kube, KubeError
from shorthop.errors import SpecError
from shorthop.placement import devices, occupancy
from shorthop.topology import slices
from shorthop.topology.labels import GPU_RESOURCE

log = logging.getLogger("shorthop.dra")
POD_CLAIM = "gpus"  # the pod's name for its claim (spec.resourceClaims[].name)
REQUEST = "gpus"  # the claim's one device request
DEVICES_ANNOTATION = "shorthop.io/devices"


def claim_name(pod_name: str) -> str:
    """The ResourceClaim of a pod: deterministic, so a restarted operator finds it."""
    return f"{pod_name}-gpus"


def check_template(role: models.Role, index: int) -> None:
    """A role's template may not bring ResourceClaims of its own: shorthop binds the pod itself
    and allocates only the claim it creates; a claim nobody allocates keeps the pod from
    starting (the kubelet needs every claim allocated and reserved for it)."""
    spec = role.template.spec
    where = f"spec.roles[{index}].template.spec"
    if spec.get("resourceClaims"):
        raise SpecError(
            f"{where}.resourceClaims",
            "shorthop allocates its pods' GPU ResourceClaims itself and cannot allocate other "
            "claims; remove them (GPUs come from gpusPerPod)",
        )
    for c, container in enumerate(spec.get("containers") or []):
        resources = container.get("resources") if isinstance(container, Mapping) else None
        if isinstance(resources, Mapping) and resources.get("claims"):
            raise SpecError(
                f"{where}.containers[{c}].resources.claims",
                "must be empty: shorthop adds the claim of the pod's GPUs itself",
            )


def attach_claim(pod: dict[str, Any], device_names: Sequence[str]) -> dict[str, Any]:
    """The rendered pod, for a DRA node: its GPU request replaced by a reference to its claim
    (in the containers that asked for GPUs, else the first), and the planned devices in the
    ``shorthop.io/devices`` annotation. Every referencing container sees all the pod's GPUs."""
    pod = copy.deepcopy(pod)
    name = pod["metadata"]["name"]
    containers = pod["spec"]["containers"]
    using = [
        c for c in containers if GPU_RESOURCE in ((c.get("resources") or {}).get("limits") or {})
    ] or containers[:1]
    for container in containers:
        resources = container.get("resources") or {}
        for kind in ("limits", "requests"):
            amounts = resources.get(kind)
            if isinstance(amounts, dict):
                amounts.pop(GPU_RESOURCE, None)
                if not amounts:
                    del resources[kind]
    for container in using:
        container.setdefault("resources", {}).setdefault("claims", []).append({"name": POD_CLAIM})
    pod["spec"]["resourceClaims"] = [{"name": POD_CLAIM, "resourceClaimName": claim_name(name)}]
    pod["metadata"].setdefault("annotations", {})[DEVICES_ANNOTATION] = ",".join(device_names)
    return pod


def render_claim(
    namespace: str, pod_name: str, pod_uid: str, count: int, device_class: str
) -> dict[str, Any]:
    """The claim of one pod, before its allocation is written."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": claim_name(pod_name),
            "namespace": namespace,
            "labels": dict(render.MANAGED_BY),
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid,
                 "controller": True}
            ],
            "finalizers": [devices.FINALIZER],
        },
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": REQUEST,
                        "exactly": {
                            "deviceClassName": device_class,
                            "allocationMode": "ExactCount",
                            "count": count,
                        },
                    }
                ]
            }
        },
    }  # fmt: skip


def allocated(
    claim: Mapping[str, Any],
    wanted: Sequence[devices.DeviceRef],
    node: str,
    pod_name: str,
    pod_uid: str,
    device_class: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The claim with its status written: allocated to ``wanted`` on ``node`` and reserved for
    the pod (keeping an allocation already there, adding the pod to ``reservedFor``)."""
    body = copy.deepcopy(dict(claim))
    status = body.setdefault("status", {})
    if not status.get("allocation"):
        class_spec = occupancy.as_map(occupancy.as_map(device_class).get("spec"))
        configs = [
            {"source": "FromClass", "requests": [REQUEST], **dict(config)}
            for config in occupancy.as_list(class_spec.get("config"))
            if isinstance(config, Mapping)
        ]
        status["allocation"] = {
            "devices": {
                "results": [
                    {"request": REQUEST, "driver": r.driver, "pool": r.pool, "device": r.device}
                    for r in wanted
                ],
                **({"config": configs} if configs else {}),
            },
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            },
        }
    reserved = [r for r in status.get("reservedFor") or [] if r.get("uid") != pod_uid]
    status["reservedFor"] = [*reserved, {"resource": "pods", "name": pod_name, "uid": pod_uid}]
    return body


class DeviceView(Protocol):
    """What the binder reads of the live view (``controller.live.LiveCluster``)."""

    def node_devices(self, node: str) -> slices.NodeDevices | None: ...

    def device_class(self, name: str) -> Mapping[str, Any] | None: ...

    def taken_by_others(self, pod_key: str, node: str, gpus: Sequence[int]) -> list[int]: ...


class FreshReads:
    """Consistent lists of every claim, shared by concurrent binds: a caller gets a list that
    *started* after it asked (so it includes the caller's own write and every write
    acknowledged before it), but one list serves every caller that asked before it started.
    Binding a gang of pods in parallel then costs one or two lists, not one per pod."""

    def __init__(self, read: Callable[[], list[dict[str, Any]]]) -> None:
        self._read = read
        self._cond = threading.Condition()
        self._started = 0  # lists begun
        self._done = 0  # the newest list finished, and its items
        self._items: list[dict[str, Any]] = []
        self._running = False

    def read(self) -> list[dict[str, Any]]:
        with self._cond:
            need = self._started + 1  # the next list to start
            while self._done < need:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                mine = self._started
                break
            else:
                return self._items
        try:
            items = self._read()
        except BaseException:
            with self._cond:
                self._running = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._running = False
            self._done, self._items = mine, items
            self._cond.notify_all()
        return items


class ClaimBinder:
    """Binds pods: through their ResourceClaim first on DRA nodes (``PodRef.claim`` set), with
    ``pods/binding`` alone elsewhere. See the module docstring."""

    def __init__(
        self,
        kube: Kube,
        view: DeviceView,
        *,
        device_class: str = slices.DEFAULT_DRIVER,
        faults: Faults | None = None,
    ) -> None:
        self.kube = kube
        self.view = view
        self.device_class = device_class
        self.faults = faults or Faults()
        self.plain = BindingSubresourceBinder(kube)
        self.claims = FreshReads(kube.list_claims)

    def bind(self, pod: PodRef, node: str, gpus: tuple[int, ...]) -> BindResult:
        if pod.claim is None:
            return self.plain.bind(pod, node, gpus)
        ready = self.ensure(pod, node, gpus)
        if ready.code != BindCode.BOUND:
            return ready
        self.faults.point("after-claim")
        return self.plain.bind(pod, node, gpus)

    def ensure(self, pod: PodRef, node: str, gpus: tuple[int, ...]) -> BindResult:
        """The pod's claim exists, is allocated to the devices of ``gpus`` on ``node`` and is
        reserved for the pod (``BOUND``); also repairs the claim of a pod already bound."""
        found = self.view.node_devices(node)
        if found is None or any(g >= len(found.names) for g in gpus):
            return BindResult(
                BindCode.CONFLICT, f"node {node} no longer publishes these GPUs in a ResourceSlice"
            )
        if not pod.uid or pod.claim is None:
            return BindResult(BindCode.ERROR, f"pod {pod.namespace}/{pod.name} has no uid yet")
        wanted = devices.refs(found, gpus)
        try:
            return self._ensure(pod, pod.uid, pod.claim, node, gpus, wanted)
        except errors.NotFound as exc:
            return BindResult(BindCode.ERROR, f"{exc}; retrying")
        except KubeError as exc:
            return BindResult(BindCode.ERROR, str(exc))

    def _ensure(
        self,
        pod: PodRef,
        uid: str,
        name: str,
        node: str,
        gpus: tuple[int, ...],
        wanted: tuple[devices.DeviceRef, ...],
    ) -> BindResult:
        ns = pod.namespace
        try:
            claim = self.kube.create_claim(
                ns, render_claim(ns, pod.name, uid, len(gpus), self.device_class)
            )
        except errors.AlreadyExists:
            found = self.kube.get_claim(ns, name)
            if found is None:
                return BindResult(BindCode.ERROR, f"ResourceClaim {ns}/{name} vanished; retrying")
            claim = found
        for attempt in range(2):
            record = devices.read_claim(claim)
            if record.owner_uid != uid:
                if not record.deleting:
                    self.kube.delete_claim(ns, name, uid=record.uid)
                return BindResult(
                    BindCode.ERROR,
                    f"ResourceClaim {ns}/{name} belongs to an earlier pod of that name and is "
                    "being removed; retrying",
                )
            if record.deleting:
                return BindResult(BindCode.CONFLICT, f"ResourceClaim {ns}/{name} is being deleted")
            if record.allocated:
                if sorted(record.devices) != sorted(wanted):
                    held = ", ".join(r.device for r in record.devices)
                    return BindResult(
                        BindCode.CONFLICT,
                        f"ResourceClaim {ns}/{name} is allocated to {held}, not the planned "
                        f"{', '.join(r.device for r in wanted)}",
                    )
                if uid in record.reserved:
                    return self._verify(ns, claim, wanted, node)
            else:
                taken = self.view.taken_by_others(f"{ns}/{pod.name}", node, gpus)
                if taken:
                    return BindResult(
                        BindCode.CONFLICT,
                        f"GPUs {taken} of {node} were allocated to another claim since the plan",
                    )
            body = allocated(
                claim, wanted, node, pod.name, uid, self.view.device_class(self.device_class)
            )
            try:
                written = self.kube.update_claim_status(ns, body)
            except errors.Conflict:
                if attempt:
                    raise
                found = self.kube.get_claim(ns, name)
                if found is None:
                    return BindResult(BindCode.ERROR, f"ResourceClaim {ns}/{name} vanished")
                claim = found
                continue
            log.debug("allocated %s/%s to %s on %s", ns, name, [r.device for r in wanted], node)
            return self._verify(ns, written, wanted, node)
        return BindResult(BindCode.ERROR, f"ResourceClaim {ns}/{name} kept changing")

    def _verify(
        self, ns: str, claim: Mapping[str, Any], wanted: Sequence[devices.DeviceRef], node: str
    ) -> BindResult:
        """The last word before a bind: in a fresh, consistent read of every ResourceClaim
        (after our allocation was stored), no other claim names one of our devices. Another
        scheduler that allocated one meanwhile, from a cache that had not seen ours, wins: our
        allocation is taken back before the pod is bound (``CONFLICT``: the pod is re-placed)."""
        mine = str(occupancy.as_map(claim.get("metadata")).get("uid") or "")
        ours = set(wanted)
        clash: dict[str, list[str]] = {}
        for other in self.claims.read():
            try:
                record = devices.read_claim(other)
            except errors.DeviceError:
                continue  # not a shape we read; the API server validated what it allocates
            if record.uid == mine:
                continue
            for ref in record.devices:
                if ref in ours:
                    clash.setdefault(record.key, []).append(ref.device)
        if not clash:
            return BindResult(BindCode.BOUND)
        self._take_back(ns, claim)
        held = "; ".join(f"{', '.join(d)} by ResourceClaim {k}" for k, d in sorted(clash.items()))
        return BindResult(
            BindCode.CONFLICT, f"devices of {node} are allocated to another claim too ({held})"
        )

    def _take_back(self, ns: str, claim: Mapping[str, Any]) -> None:
        """Clear our claim's allocation and reservation (as the resourceclaim controller does
        for a claim nobody uses), so no device stays in two claims while the pod is re-placed.
        On failure the pod's deletion releases it: the claim goes with its owner."""
        body = copy.deepcopy(dict(claim))
        status = body.setdefault("status", {})
        status.pop("allocation", None)
        status["reservedFor"] = []
        name = occupancy.as_map(body.get("metadata")).get("name")
        try:
            self.kube.update_claim_status(ns, body)
        except KubeError as exc:
            log.warning("taking back the allocation of ResourceClaim %s/%s: %s", ns, name, exc)

"""Devices held through ResourceClaims: which GPUs of a DRA node are busy, and for whom.

A ResourceClaim's ``status.allocation.devices.results`` names devices as (driver, pool, device);
kube-scheduler counts every device named in any claim's allocation as in use, whoever allocated
it (its DynamicResources plugin gathers them from all claims; results with ``adminAccess`` are
not counted), and so does shorthop: :func:`read_claim` reads one claim into a
:class:`ClaimRecord`, :class:`ClaimBook` keeps them by pool, and :func:`holders` folds a node's
claims and pods into *holders* per GPU index.

A holder is who keeps a GPU: a pod (its ``namespace/name``; a claim owned by a pod holds for that
pod, so a pod and its own claim are one holder), a claim without an owning pod
(``claim:namespace/name``), or a pod shorthop is binding (assumed, keyed like the pod). Two
holders on one GPU is a double allocation: a bind raced with another scheduler.

Pure; no I/O. Callers: :mod:`~shorthop.placement.snapshot`, ``shorthop plan`` (the
``devices`` of an assignment), the controller (its own claims).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shorthop.errors import DeviceError
from shorthop.placement.occupancy import PodUsage
from shorthop.topology.slices import NodeDevices, field_list, field_map

MAX_DEVICES_PER_NODE = 64  # what a request in All mode may take on one node (see labels)
# Set by whoever allocates a claim; the resourceclaim controller in kube-controller-manager
# clears the allocation of a claim no longer reserved for anyone, then removes it.
FINALIZER = "resource.kubernetes.io/delete-protection"


@dataclass(frozen=True, slots=True, order=True)
class DeviceRef:
    """One device as a claim's allocation names it."""

    driver: str
    pool: str
    device: str

    def to_json(self) -> dict[str, str]:
        return {"driver": self.driver, "pool": self.pool, "device": self.device}


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """One ResourceClaim as placement reads it."""

    key: str  # namespace/name
    uid: str
    holder: str  # the owning pod's namespace/name, else "claim:namespace/name"
    owner_uid: str | None  # uid of the owning pod
    devices: tuple[DeviceRef, ...]  # allocated (admin-access results left out)
    node: str | None  # the one node the allocation's node selector names
    reserved: tuple[str, ...]  # uids of the consumers it is reserved for
    deleting: bool = False
    wanted: int = 0  # devices its requests ask for (what an allocation will take)

    @property
    def allocated(self) -> bool:
        return bool(self.devices)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DeviceError(f"{where} is {value!r}; expected a name")
    return value


def selected_node(selector: Any, where: str = "status.allocation.nodeSelector") -> str | None:
    """The node an allocation's node selector pins, when it names exactly one by
    ``metadata.name`` (what kube-scheduler writes for node-local devices)."""
    terms = field_list(
        field_map(selector, where).get("nodeSelectorTerms"), f"{where}.nodeSelectorTerms"
    )
    names: set[str] = set()
    for t, term in enumerate(terms):
        at = f"{where}.nodeSelectorTerms[{t}].matchFields"
        for r, raw in enumerate(field_list(field_map(term, at).get("matchFields"), at)):
            req = field_map(raw, f"{at}[{r}]")
            values = req.get("values")
            if (
                req.get("key") == "metadata.name"
                and req.get("operator") == "In"
                and isinstance(values, list)
            ):
                names.update(str(v) for v in values)
    return names.pop() if len(names) == 1 else None


def read_claim(obj: Mapping[str, Any]) -> ClaimRecord:
    """Read one ResourceClaim (any served version: the allocation has one shape in all).

    Raises
    ------
    DeviceError
        A field shorthop reads has the wrong shape; the message names the field.

    Examples
    --------
    >>> result = {"request": "gpus", "driver": "gpu.nvidia.com", "pool": "n1", "device": "gpu-3"}
    >>> c = read_claim({"metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
    ...     "status": {"allocation": {"devices": {"results": [result]}}}})
    >>> c.holder, [r.device for r in c.devices]
    ('claim:ns/c', ['gpu-3'])
    """
    meta = field_map(obj.get("metadata"), "metadata")
    name = _text(meta.get("name"), "metadata.name")
    namespace = str(meta.get("namespace") or "default")
    key = f"{namespace}/{name}"
    owner, owner_uid = None, None
    for i, raw in enumerate(field_list(meta.get("ownerReferences"), "metadata.ownerReferences")):
        ref = field_map(raw, f"metadata.ownerReferences[{i}]")
        if ref.get("kind") == "Pod" and ref.get("controller") is True:
            owner, owner_uid = str(ref.get("name")), str(ref.get("uid") or "") or None
    status = field_map(obj.get("status"), "status")
    allocation = field_map(status.get("allocation"), "status.allocation")
    where = "status.allocation.devices.results"
    found = field_map(allocation.get("devices"), "status.allocation.devices")
    results = field_list(found.get("results"), where)
    devices = []
    for i, raw in enumerate(results):
        result = field_map(raw, f"{where}[{i}]")
        if result.get("adminAccess") is True:
            continue  # not counted as allocated by the scheduler either
        devices.append(
            DeviceRef(
                _text(result.get("driver"), f"{where}[{i}].driver"),
                _text(result.get("pool"), f"{where}[{i}].pool"),
                _text(result.get("device"), f"{where}[{i}].device"),
            )
        )
    reserved = tuple(
        str(field_map(r, f"status.reservedFor[{i}]").get("uid") or "")
        for i, r in enumerate(field_list(status.get("reservedFor"), "status.reservedFor"))
    )
    requests = field_list(
        field_map(field_map(obj.get("spec"), "spec").get("devices"), "spec.devices").get(
            "requests"
        ),
        "spec.devices.requests",
    )
    return ClaimRecord(
        key=key,
        uid=str(meta.get("uid") or ""),
        holder=f"{namespace}/{owner}" if owner else f"claim:{key}",
        owner_uid=owner_uid,
        devices=tuple(devices),
        node=selected_node(allocation.get("nodeSelector")) if allocation else None,
        reserved=reserved,
        deleting=bool(meta.get("deletionTimestamp")),
        wanted=sum(_wanted(r, f"spec.devices.requests[{i}]") for i, r in enumerate(requests)),
    )


def _count(request: Mapping[str, Any], where: str) -> int:
    """Devices one request (or subrequest) asks for: ``count`` in ExactCount mode (default 1),
    every device of a node (as many as a node can have) in All mode."""
    if request.get("allocationMode") == "All":
        return MAX_DEVICES_PER_NODE
    count = request.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise DeviceError(f"{where}.count is {count!r}, not a whole number")
    return count


def _wanted(raw: Any, where: str) -> int:
    """Devices one request asks for, in any served version: ``exactly`` (v1, v1beta2),
    the request itself (v1beta1), or the largest of its ``firstAvailable`` alternatives."""
    request = field_map(raw, where)
    if "exactly" in request:
        return _count(field_map(request["exactly"], f"{where}.exactly"), f"{where}.exactly")
    alternatives = field_list(request.get("firstAvailable"), f"{where}.firstAvailable")
    if alternatives:
        return max(
            _count(field_map(a, f"{where}.firstAvailable[{i}]"), f"{where}.firstAvailable[{i}]")
            for i, a in enumerate(alternatives)
        )
    return _count(request, where)


class ClaimBook:
    """Allocated claims by key, indexed by the pools of one driver their devices come from.
    Updates return the pools (and the nodes named by node selectors) they touch. Not
    thread-safe (its owner locks)."""

    def __init__(self, driver: str) -> None:
        self.driver = driver
        self._claims: dict[str, ClaimRecord] = {}
        self._by_pool: dict[str, set[str]] = defaultdict(set)
        self._by_holder: dict[str, set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._claims)

    def get(self, key: str) -> ClaimRecord | None:
        return self._claims.get(key)

    def put(self, record: ClaimRecord) -> tuple[set[str], set[str]]:
        """Add or replace a claim: (pools touched, nodes its selectors name)."""
        pools, nodes = self.remove(record.key)
        self._claims[record.key] = record
        self._by_holder[record.holder].add(record.key)
        for pool in self._pools(record):
            self._by_pool[pool].add(record.key)
            pools.add(pool)
        if record.node:
            nodes.add(record.node)
        return pools, nodes

    def remove(self, key: str) -> tuple[set[str], set[str]]:
        old = self._claims.pop(key, None)
        if old is None:
            return set(), set()
        pools = self._pools(old)
        for pool in pools:
            self._by_pool[pool].discard(key)
            if not self._by_pool[pool]:
                del self._by_pool[pool]
        self._by_holder[old.holder].discard(key)
        if not self._by_holder[old.holder]:
            del self._by_holder[old.holder]
        return pools, {old.node} if old.node else set()

    def _pools(self, record: ClaimRecord) -> set[str]:
        return {d.pool for d in record.devices if d.driver == self.driver}

    def in_pool(self, pool: str) -> list[ClaimRecord]:
        """The claims holding devices of the pool, by key."""
        return [self._claims[k] for k in sorted(self._by_pool.get(pool, ()))]

    def of_holder(self, holder: str) -> list[ClaimRecord]:
        """The claims a pod (``namespace/name``) owns, by key."""
        return [self._claims[k] for k in sorted(self._by_holder.get(holder, ()))]


@dataclass(frozen=True, slots=True)
class Held:
    """GPUs held on one DRA node through claims: holders per GPU index, and the holders whose
    claims name devices the node's slice no longer lists."""

    by_gpu: Mapping[int, frozenset[str]]
    unknown: frozenset[str]


def held_by_claims(devices: NodeDevices, claims: Iterable[ClaimRecord]) -> Held:
    """Fold the claims holding devices of a node's pool into holders per GPU index."""
    by_gpu: dict[int, set[str]] = defaultdict(set)
    unknown: set[str] = set()
    for claim in claims:
        for ref in claim.devices:
            if ref.driver != devices.driver or ref.pool != devices.pool:
                continue
            index = devices.index_of(ref.device)
            if index is None:
                unknown.add(claim.holder)
            else:
                by_gpu[index].add(claim.holder)
    return Held({g: frozenset(h) for g, h in by_gpu.items()}, frozenset(unknown))


Flags = tuple[frozenset[str], frozenset[str], frozenset[str]]  # contested, mismatched, unclaimed


def fold(
    node_devices: NodeDevices,
    book: ClaimBook,
    mask: int,
    held: dict[int, set[str]],
    claimed: Iterable[PodUsage],
) -> tuple[int, Flags]:
    """One DRA node's free mask once its claims (and tainted devices) are marked busy, and the
    pods in trouble there: ``contested`` (a GPU another holder has too), ``mismatched`` (shorthop's
    pod whose claim holds other GPUs than its annotation says, or a device the slice lost) and
    ``unclaimed`` (shorthop's pod whose claim is not allocated). ``held`` (GPU -> holders, from
    the pods and assumptions) is extended in place; ``claimed`` are shorthop's pods there."""
    found = held_by_claims(node_devices, book.in_pool(node_devices.pool))
    for g, holders in found.by_gpu.items():
        mask &= ~(1 << g)
        held[g] |= holders
    for g in node_devices.tainted:
        mask &= ~(1 << g)
    contested = {h for holders in held.values() if len(holders) > 1 for h in holders}
    mismatched: set[str] = set()
    unclaimed: set[str] = set()
    for pod in claimed:
        own = [
            c
            for c in book.of_holder(pod.key)
            if c.allocated and (not c.owner_uid or not pod.uid or c.owner_uid == pod.uid)
        ]
        if not own:
            unclaimed.add(pod.key)
            continue
        gpus = claim_gpus(node_devices, own)
        if gpus is None or gpus != tuple(sorted(pod.exact or ())):
            mismatched.add(pod.key)
    return mask, (
        frozenset(h for h in contested if not h.startswith("claim:")),
        frozenset(mismatched),
        frozenset(unclaimed),
    )


def claim_gpus(devices: NodeDevices, claims: Iterable[ClaimRecord]) -> tuple[int, ...] | None:
    """The GPU indices a pod's claims hold on a node (sorted); None when one names a device of
    the node's pool the slice no longer lists."""
    found: set[int] = set()
    for claim in claims:
        for ref in claim.devices:
            if ref.driver != devices.driver or ref.pool != devices.pool:
                continue
            index = devices.index_of(ref.device)
            if index is None:
                return None
            found.add(index)
    return tuple(sorted(found))


def refs(devices: NodeDevices, gpus: Iterable[int]) -> tuple[DeviceRef, ...]:
    """The devices of GPU indices, in the order given (an assignment's ``devices``)."""
    return tuple(DeviceRef(devices.driver, devices.pool, name) for name in devices.devices_of(gpus))

"""The Dynamic Resource Allocation part of the snapshot builder's state, per DRA node.

:class:`DraState` keeps the ResourceSlices (:class:`~shorthop.topology.slices.SliceIndex`, the
nodes' inventories), the ResourceClaims (:class:`~shorthop.placement.devices.ClaimBook`), the pods
another scheduler has nominated to a node, and per DRA node what the last recomputation found:
who holds each GPU and which of shorthop's pods are in trouble. Every update returns the nodes it
touches; :class:`~shorthop.placement.snapshot.SnapshotBuilder` recomputes those (calling
:meth:`DraState.fold`) and freezes the result. Pure; not thread-safe (the builder's owner locks).

A ResourceSlice or ResourceClaim event is parsed into a pure record
(:mod:`~shorthop.topology.slices`, :mod:`~shorthop.placement.devices`), stored by name, and marks
the nodes it touches. A slice of the configured driver makes its node a *DRA node* (modelled again
from the slice); on a DRA node every device named in any claim's allocation is a busy GPU, whoever
allocated it, and so are devices the driver tainted; nothing is free while its pool is incomplete. A
pod another scheduler is binding there (unbound, its ``status.nominatedNodeName`` the node, its
claims not allocated yet: kube-scheduler nominates before it writes the allocation) holds as many of
the lowest free GPUs as its claims ask for, which is where kube-scheduler's allocator, taking
devices in order, will put it. Per DRA node the builder also names the pods involved in a double
allocation (``contested``: a GPU with two holders), shorthop's pods whose claim disagrees with their
GPUs or names a device the slice lost (``mismatched``), and shorthop's bound pods whose claim is not
allocated (``unclaimed``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from shorthop.errors import DeviceError
from shorthop.placement import devices, occupancy
from shorthop.topology import slices


def _pending(pod: occupancy.PodUsage) -> bool:
    """A pod another scheduler has yet to place (shorthop's own carry the GPU annotation)."""
    return (
        bool(pod.claims)
        and pod.active
        and not pod.node
        and not pod.nominated
        and not pod.unschedulable
        and pod.exact is None
    )


class DraState:
    """See the module docstring."""

    def __init__(self, driver: str) -> None:
        self.slices = slices.SliceIndex(driver)
        self.claims = devices.ClaimBook(driver)
        self._flags: dict[str, devices.Flags] = {}
        self._held: dict[str, dict[int, frozenset[str]]] = {}  # node -> GPU -> holders
        self._nominated: dict[str, set[str]] = defaultdict(set)  # node -> pods
        self._nominated_by_claim: dict[str, set[str]] = defaultdict(set)  # claim -> pods
        self._pods: dict[str, occupancy.PodUsage] = {}  # the nominated pods
        # Pods another scheduler has not placed yet (unbound, claims, not nominated, not found
        # unschedulable): it may put them on any node, taking the first free devices there.
        self._pending: dict[str, occupancy.PodUsage] = {}
        self._unseen: dict[str, list[int]] = {}  # node -> GPUs free as another scheduler sees

    # -- updates ---------------------------------------------------------------------------

    def put_slice(self, event: str | None, obj: Mapping[str, Any]) -> set[str]:
        """A ResourceSlice event: the nodes whose inventory may have changed. One that cannot be
        read makes its pool unusable (the node's issue says why)."""
        name = str(occupancy.as_map(obj.get("metadata")).get("name") or "")
        if event == "DELETED":
            return self.slices.remove(name)
        try:
            return self.slices.put(slices.read_slice(obj))
        except DeviceError as exc:
            spec = occupancy.as_map(obj.get("spec"))
            pool = occupancy.as_map(spec.get("pool")).get("name")
            return self.slices.put_broken(
                name,
                spec.get("driver") if isinstance(spec.get("driver"), str) else None,
                pool if isinstance(pool, str) else None,
                spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None,
                str(exc),
            )

    def put_claim(self, event: str | None, obj: Mapping[str, Any]) -> set[str] | None:
        """A ResourceClaim event: the nodes it touches (None: nothing changed). One that cannot
        be read holds nothing."""
        meta = occupancy.as_map(obj.get("metadata"))
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        if event == "DELETED":
            pools, nodes = self.claims.remove(key)
        else:
            try:
                record = devices.read_claim(obj)
            except DeviceError:
                pools, nodes = self.claims.remove(key)
            else:
                if record == self.claims.get(key):
                    return None
                pools, nodes = self.claims.put(record)
        for pool in pools:
            node = self.slices.node_of(pool)
            if node:
                nodes.add(node)
        for pod in self._nominated_by_claim.get(key, ()):
            nodes.add(str(self._pods[pod].nominated))
        return nodes

    def nominate(self, old: occupancy.PodUsage | None, new: occupancy.PodUsage | None) -> set[str]:
        """A pod changed (``new`` None: deleted): the nodes it was or is nominated to."""
        touched = set()
        if old is not None:
            self._pending.pop(old.key, None)
        if new is not None and _pending(new):
            self._pending[new.key] = new
        if old is not None and old.nominated:
            touched.add(old.nominated)
            self._nominated[old.nominated].discard(old.key)
            self._pods.pop(old.key, None)
            for claim in self._claim_keys(old):
                self._nominated_by_claim[claim].discard(old.key)
                if not self._nominated_by_claim[claim]:
                    del self._nominated_by_claim[claim]
        if new is not None and new.nominated:
            touched.add(new.nominated)
            self._nominated[new.nominated].add(new.key)
            self._pods[new.key] = new
            for claim in self._claim_keys(new):
                self._nominated_by_claim[claim].add(new.key)
        return touched

    @staticmethod
    def _claim_keys(pod: occupancy.PodUsage) -> list[str]:
        namespace = pod.key.partition("/")[0]
        return [f"{namespace}/{c}" for c in pod.claims]

    def forget_node(self, name: str) -> None:
        self._flags.pop(name, None)
        self._unseen.pop(name, None)
        self._held.pop(name, None)

    # -- the per-node fold -----------------------------------------------------------------

    def fold(
        self,
        name: str,
        node_devices: slices.NodeDevices,
        mask: int,
        held: dict[int, set[str]],
        claimed: list[occupancy.PodUsage],
    ) -> int:
        """The node's free mask once claims, tainted devices and nominated pods are counted
        (see ``devices.fold``); records its holders and flags."""
        mask, flags = devices.fold(node_devices, self.claims, mask, held, claimed)
        mask = self._expected(name, node_devices, mask, held)
        if any(flags):
            self._flags[name] = flags
        else:
            self._flags.pop(name, None)
        self._held[name] = {g: frozenset(h) for g, h in held.items()}
        return mask

    def _expected(
        self, name: str, node_devices: slices.NodeDevices, mask: int, held: dict[int, set[str]]
    ) -> int:
        """The GPUs that pods nominated to the node will take, held by those pods: kube-scheduler
        nominates before it writes the allocation, and its allocator takes the first free devices
        in order. Free as *it* sees them: not in any claim's allocation, not tainted; GPUs
        shorthop has only planned or annotated are not known to it, so a prediction may land on
        them, and the binder's last check then refuses to write its own claim there."""
        nominated = sorted(self._nominated.get(name, ()))
        claimed = {
            g
            for claim in self.claims.in_pool(node_devices.pool)
            for g in (node_devices.index_of(r.device) for r in claim.devices)
            if g is not None
        }
        unseen = [
            g
            for g in range(len(node_devices.names))
            if g not in claimed and g not in node_devices.tainted
        ]
        for key in nominated:
            pod = self._pods[key]
            if pod.node or not pod.active:
                continue
            found = (self.claims.get(c) for c in self._claim_keys(pod))
            need = sum(c.wanted for c in found if c is not None and not c.allocated)
            taken, unseen = unseen[:need], unseen[need:]
            for g in taken:
                mask &= ~(1 << g)
                held[g].add(key)
        self._unseen[name] = unseen
        return mask

    # -- reads -----------------------------------------------------------------------------

    def holders(self, name: str) -> Mapping[int, frozenset[str]]:
        return self._held.get(name, {})

    def next_taken(self, name: str) -> list[int]:
        """The GPUs of a DRA node that the pods another scheduler has not placed yet would take
        if it put them all there: the first ones free as it sees them (no claim, no taint, no
        nominated pod), as many as their claims ask for. Not part of the snapshot (they may go
        anywhere); the binder's last check before writing a claim refuses them."""
        need = 0
        for pod in self._pending.values():
            found = (self.claims.get(c) for c in self._claim_keys(pod))
            need += sum(c.wanted for c in found if c is not None and not c.allocated)
        return self._unseen.get(name, [])[:need]

    def flagged(self, which: int) -> frozenset[str]:
        """Pods flagged on any node: 0 contested, 1 mismatched, 2 unclaimed."""
        return frozenset(k for flags in self._flags.values() for k in flags[which])

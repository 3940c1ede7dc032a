"""What must hold for shorthop's pods on DRA nodes, read straight from the API server: each bound
pod's own ResourceClaim is allocated to exactly the devices it was planned on and reserved for
it, no device is in two claims, and no claim of shorthop's outlives its pod."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chaos import checks
from tests import claim_watch

MANAGED = ("app.kubernetes.io/managed-by", "shorthop")


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def claim_violations(
    pods: Iterable[Mapping[str, Any]], claims: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Devices in two claims; shorthop's bound pods whose claim is missing, holds other devices
    than their ``shorthop.io/devices`` annotation, or is not reserved for them."""
    by_key = {_key(c): c for c in claims}
    out = [
        f"{device} is in claims {holders}"
        for device, holders in claim_watch.double_allocations(by_key).items()
    ]
    for pod in pods:
        meta = pod["metadata"]
        planned = (meta.get("annotations") or {}).get("shorthop.io/devices")
        if not planned or not checks.active(pod) or meta.get("deletionTimestamp"):
            continue
        claim = by_key.get(f"{meta['namespace']}/{meta['name']}-gpus")
        name = f"{meta['namespace']}/{meta['name']}"
        if claim is None:
            out.append(f"{name}: no ResourceClaim")
            continue
        node = pod["spec"]["nodeName"]
        held = [(pool, device) for _, pool, device in claim_watch.allocated(claim)]
        if sorted(held) != sorted((node, d) for d in planned.split(",")):
            out.append(f"{name}: claim holds {held}, planned {planned} on {node}")
        reserved = [r.get("uid") for r in (claim.get("status") or {}).get("reservedFor") or []]
        if meta["uid"] not in reserved:
            out.append(f"{name}: claim reserved for {reserved}, not the pod")
    return out


def leaked_claims(
    pods: Iterable[Mapping[str, Any]], claims: Iterable[Mapping[str, Any]]
) -> list[str]:
    """shorthop's claims whose owning pod does not exist (run after garbage collection)."""
    uids = {p["metadata"]["uid"] for p in pods}
    out = []
    for claim in claims:
        meta = claim["metadata"]
        if (meta.get("labels") or {}).get(MANAGED[0]) != MANAGED[1]:
            continue
        owners = [o.get("uid") for o in meta.get("ownerReferences") or []]
        if not owners or owners[0] not in uids:
            out.append(f"{_key(claim)}: its pod is gone (owners {owners})")
    return out

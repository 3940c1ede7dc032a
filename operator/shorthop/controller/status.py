"""The status an InferenceDeployment reports (pure).

Built from what exists (the deployment's pods as the cluster sees them) and what was decided
(the plan's reasons when it could not place). Cost and tiers come from ``objective`` (the same
definitions as the plan's: for an ``all-to-all`` edge every pair of a source GPU and a target
GPU, for a ``paired`` edge the GPUs of its peer pairs). Per traffic edge (``kvTraffic``), and
per peer pair of ``paired`` edges (``kvTransfers``), the modeled KV-cache transfer time of a
replica pair:

    time = bytesPerToken x tokens / (bandwidth per GPU of the pair's tier x min(|P|, |D|))

where |P| and |D| are the GPUs of the two replicas (each GPU of the smaller side moves its shard
over its own link) and the tier is the widest tier among the pair's GPU pairs. Bandwidth per GPU
by tier (GB/s, from TOPOLOGY.md): same-node-nvlink 900 (HGX H100/H200), nvlink-domain 1800
(GB200 NVL72), same-node-pcie 32 (PCIe Gen4/5 x16, one direction), the finest network level 50
(400 Gb/s InfiniBand NDR per GPU rail), coarser levels and cluster 25 (2:1 oversubscription).
"""

from __future__ import annotations

import datetime
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from shorthop.api import models
from shorthop.placement import objective
from shorthop.placement.admission import Exclusion
from shorthop.placement.plan import EdgeTraffic, Reason
from shorthop.placement.request import Request
from shorthop.placement.triage import PlacedPod, PlacedReplica, PodState
from shorthop.topology import levels
from shorthop.topology.index import TopologyIndex

GB = 1e9
BANDWIDTH_GBPS = {
    levels.SAME_NODE_NVLINK: 900.0,
    levels.NVLINK_DOMAIN: 1800.0,
    levels.SAME_NODE_PCIE: 32.0,
}
FINEST_NETWORK_GBPS = 50.0
COARSE_NETWORK_GBPS = 25.0


def bandwidth(tier: str, tiers: Sequence[str]) -> float:
    if tier in BANDWIDTH_GBPS:
        return BANDWIDTH_GBPS[tier]
    finest = tiers[3] if len(tiers) > 4 else None
    return FINEST_NETWORK_GBPS if tier == finest else COARSE_NETWORK_GBPS


def kv_transfer_ms(
    bytes_per_token: int, tokens: int, tier: str, tiers: Sequence[str], gpus_a: int, gpus_b: int
) -> float:
    """Modeled time to move one prompt's KV cache between two replicas (see module docstring).

    >>> round(kv_transfer_ms(327_680, 4096, "nvlink-domain", ("same-node-nvlink",), 4, 8), 3)
    0.186
    """
    links = max(1, min(gpus_a, gpus_b))
    return bytes_per_token * tokens / (bandwidth(tier, tiers) * GB * links) * 1000


def _ms(
    spec: models.InferenceDeploymentSpec, tier: str, tiers: Sequence[str], edge: EdgeTraffic
) -> float:
    return kv_transfer_ms(
        spec.kv_cache.bytes_per_token,
        spec.kv_cache.tokens,
        tier,
        tiers,
        edge.source_gpus,
        edge.target_gpus,
    )


def _edge_json(
    spec: models.InferenceDeploymentSpec, tiers: Sequence[str], edge: EdgeTraffic
) -> dict[str, Any]:
    """One traffic edge in the status: replica pairs per widest tier (every pair for
    all-to-all, the peer pairs for paired), GPU pairs per tier, and the modeled KV transfer
    time over those replica pairs (mean and worst)."""
    pairs = sum(edge.replica_pairs.values())
    times = {tier: _ms(spec, tier, tiers, edge) for tier in edge.replica_pairs}
    mean = sum(n * times[t] for t, n in edge.replica_pairs.items()) / pairs if pairs else 0.0
    return {
        "from": edge.source,
        "to": edge.target,
        "pattern": edge.pattern,
        "replicaPairs": dict(edge.replica_pairs),
        "gpuPairs": dict(edge.gpu_pairs),
        "meanModeledMs": round(mean, 4),
        "worstModeledMs": round(max(times.values(), default=0.0), 4),
    }


Placement = tuple[tuple[str, int, tuple[tuple[int, tuple[int, ...]], ...]], ...]


class Evaluations:
    """The objective's evaluation of a deployment's bound replicas, remembered for the current
    topology index: the status is computed on every visit (each pod event wakes one) while the
    placement it evaluates changes only when pods are bound or go. Entries of an older index
    are dropped with it (a new index may have other distances); the memo is bounded."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._index: TopologyIndex | None = None
        self._memo: dict[tuple[Request, Placement], objective.Evaluation] = {}
        self._lock = threading.Lock()

    def evaluate(
        self, index: TopologyIndex, request: Request, placed: Placement
    ) -> objective.Evaluation:
        key = (request, placed)
        with self._lock:
            if index is not self._index:
                self._index, self._memo = index, {}
            found = self._memo.get(key)
        if found is None:
            found = _evaluate(index, request, placed)
            with self._lock:
                if index is self._index:
                    if len(self._memo) >= self.LIMIT:
                        self._memo.clear()
                    self._memo[key] = found
        return found


def _evaluate(index: TopologyIndex, request: Request, placed: Placement) -> objective.Evaluation:
    sets = {(role, rid): objective.gpu_set(members) for role, rid, members in placed}
    return objective.evaluate_sets(index, request, sets)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    kind: str, ok: bool, reason: str, message: str, old: Mapping[str, Any], generation: int | None
) -> dict[str, Any]:
    status = "True" if ok else "False"
    previous = {c.get("type"): c for c in old.get("conditions") or []}.get(kind) or {}
    changed = previous.get("status") != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _now()
        if changed or not previous.get("lastTransitionTime")
        else previous["lastTransitionTime"],
        "observedGeneration": generation,
    }


def compute(
    infd: models.InferenceDeployment,
    generation: int | None,
    pods: Sequence[PodState],
    index: TopologyIndex,
    request: Request,
    *,
    old: Mapping[str, Any],
    reasons: Sequence[Reason] = (),
    pending: str = "",
    excluded: Sequence[Exclusion] = (),
    placed_away: str | None = None,
    evaluations: Evaluations | None = None,
) -> dict[str, Any]:
    """The status for the current state; ``reasons`` non-empty means the last plan failed;
    ``excluded``: the nodes left out per role after kubelet rejections (kept as they are);
    ``placed_away``: why the last new replicas are outside the deployment's domain ("": they
    are not; None: no new placement, the old value stays); ``evaluations``: the memo of the
    objective's evaluations to use (none: evaluate afresh)."""
    spec = infd.spec
    # Counted, not enumerated: up to 1024 x 4096 pods per role pass the schema.
    total = sum(r.replicas * r.pods_per_replica for r in request.roles)
    live = [
        p
        for p in pods
        if p.role is not None
        and p.replica is not None
        and p.pod is not None
        and p.active
        and not p.deleting
    ]
    bound = [p for p in live if p.node and index.row_of.get(p.node) is not None and p.exact]
    ready = sum(1 for p in bound if p.ready)
    per_replica: dict[tuple[str, int], list[PodState]] = defaultdict(list)
    for p in bound:
        per_replica[(str(p.role), int(p.replica))].append(p)  # type: ignore[arg-type]
    placed: Placement = tuple(
        (
            role,
            rid,
            tuple(sorted((index.row_of[str(p.node)], tuple(p.exact or ())) for p in members)),
        )
        for (role, rid), members in sorted(per_replica.items())
    )
    ev = (evaluations or Evaluations()).evaluate(index, request, placed)
    replicas_json = []
    for (role, rid), members in sorted(per_replica.items()):
        tier = ev.replica_tiers[(role, rid)]
        replicas_json.append(
            {
                "role": role,
                "replica": rid,
                "tier": tier,
                "pods": [
                    _pod_entry(index, p, tier) for p in sorted(members, key=lambda p: p.pod or 0)
                ],
            }
        )
    # A replica that is being replaced (rolling update, repair) keeps its last placement in the
    # status until it is placed again: that is where it returns when its GPUs are still free.
    wanted = {r.name: r.replicas for r in spec.roles}
    for entry in old.get("replicas") or []:
        key = (str(entry.get("role")), entry.get("replica"))
        if (
            key[0] in wanted
            and isinstance(key[1], int)
            and key[1] < wanted[key[0]]
            and key not in per_replica
        ):
            replicas_json.append(
                {**entry, "pods": [{**p, "ready": False} for p in entry.get("pods") or []]}
            )
    replicas_json.sort(key=lambda r: (str(r.get("role")), str(r.get("replica", 0)).zfill(6)))
    widest = max((index.tiers.index(t) for t in ev.replica_tiers.values()), default=None)
    transfers, traffic_json = [], []
    for edge in ev.edges:
        used = [index.tiers.index(t) for t in edge.gpu_pairs]
        if used:
            widest = max(used) if widest is None else max(widest, *used)
        for s_id, t_id, tier in edge.peers:
            transfers.append(
                {
                    "prefill": f"{edge.source}-{s_id}",
                    "decode": f"{edge.target}-{t_id}",
                    "tier": tier,
                    "modeledMs": round(_ms(spec, tier, index.tiers, edge), 4),
                }
            )
        traffic_json.append(_edge_json(spec, index.tiers, edge))
    complete = {
        key
        for key, members in per_replica.items()
        if len(members) == request.roles[request.role_index(key[0])].pods_per_replica
    }
    complete_ready = {key for key in complete if all(p.ready for p in per_replica[key])}
    replicas_wanted = sum(r.replicas for r in spec.roles)
    message = "; ".join(r.message() for r in reasons)
    if reasons and not complete_ready:
        phase = models.Phase.UNSCHEDULABLE
    elif reasons or (
        complete_ready
        and len(complete_ready) < replicas_wanted
        and old.get("phase") in ("Running", "Degraded")
    ):
        phase = models.Phase.DEGRADED
    elif ready == total and len(bound) == total and len(live) == total:
        phase = models.Phase.RUNNING
    else:
        phase = models.Phase.PLACING
    if phase == models.Phase.RUNNING:
        message = ""
    elif not message:
        message = pending or f"{len(bound)}/{total} pods placed, {ready} ready"
    placed_ok = len(bound) == total and not reasons
    conditions = [
        _condition(
            "Placed",
            placed_ok,
            "Placed" if placed_ok else ("Unschedulable" if reasons else "Placing"),
            "" if placed_ok else message,
            old,
            generation,
        ),
        _condition(
            "Ready",
            ready == total,
            "AllPodsReady" if ready == total else "PodsNotReady",
            f"{ready}/{total} pods ready",
            old,
            generation,
        ),
        _condition(
            "Degraded",
            phase == models.Phase.DEGRADED,
            "ReplicasMissing" if phase == models.Phase.DEGRADED else "AsPlanned",
            message if phase == models.Phase.DEGRADED else "",
            old,
            generation,
        ),
    ]
    return {
        "phase": phase.value,
        "observedGeneration": generation,
        "conditions": conditions,
        "replicas": replicas_json,
        "ready": f"{ready}/{total}",
        "readyPods": ready,
        "totalPods": total,
        "worstTier": index.tiers[widest] if widest is not None else None,
        "cost": {
            "intraReplica": ev.cost.intra,
            "traffic": round(ev.cost.traffic, 3),
            "fragmentation": 0.0,
            "total": round(ev.cost.intra + ev.cost.traffic, 3),
        },
        "tiers": dict(ev.tiers),
        "kvTransfers": transfers,
        "kvTraffic": traffic_json,
        "excludedNodes": exclusions_json(excluded),
        "placedAway": old.get("placedAway", "") if placed_away is None else placed_away,
        "message": message,
    }


def _pod_entry(index: TopologyIndex, pod: PodState, tier: str) -> dict[str, Any]:
    """One pod of ``status.replicas[].pods``; on a DRA node with the names of its devices."""
    entry: dict[str, Any] = {
        "name": pod.name,
        "node": pod.node,
        "gpus": list(pod.exact or ()),
        "tier": tier,
        "ready": pod.ready,
    }
    topology = index.topologies[index.row_of[str(pod.node)]]
    found = topology.devices if topology is not None else None
    if found is not None and all(g < len(found.names) for g in pod.exact or ()):
        entry["devices"] = list(found.devices_of(pod.exact or ()))
    return entry


def placed_replicas(old: Mapping[str, Any]) -> tuple[PlacedReplica, ...]:
    """The replica placements a previous status recorded (``replicas[]``), skipping entries
    that do not have the shape this module writes."""
    out = []
    for entry in old.get("replicas") or []:
        if not isinstance(entry, Mapping):
            continue
        rid = entry.get("replica")
        pods = entry.get("pods") or []
        if not isinstance(rid, int) or isinstance(rid, bool) or not isinstance(pods, list):
            continue
        placed = []
        for pod in pods:
            gpus = pod.get("gpus") if isinstance(pod, Mapping) else None
            if not isinstance(gpus, list) or not all(
                isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus
            ):
                break
            placed.append(PlacedPod(str(pod.get("node")), tuple(gpus)))
        else:
            out.append(PlacedReplica(str(entry.get("role")), rid, tuple(placed)))
    return tuple(out)


def invalid(
    generation: int | None, field_and_problem: str, old: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "phase": models.Phase.INVALID.value,
        "observedGeneration": generation,
        "conditions": [
            _condition("Valid", False, "InvalidSpec", field_and_problem, old, generation)
        ],
        "excludedNodes": exclusions_json(excluded_nodes(old)),
        "message": field_and_problem,
    }


def exclusions_json(excluded: Sequence[Exclusion]) -> list[dict[str, str]]:
    """``status.excludedNodes``."""
    return [
        {"role": e.role, "node": e.node, "reason": e.reason, "templateHash": e.template_hash}
        for e in excluded
    ]


def excluded_nodes(old: Mapping[str, Any]) -> tuple[Exclusion, ...]:
    """The exclusions a previous status recorded, skipping entries of another shape."""
    entries = old.get("excludedNodes")
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        fields = [entry.get(k) for k in ("role", "node", "reason", "templateHash")]
        if all(isinstance(f, str) and f for f in fields):
            out.append(Exclusion(*(str(f) for f in fields)))
    return tuple(sorted(out))


def _normal(value: Any) -> Any:
    """Drop what the API server drops (nulls) and condition timestamps."""
    if isinstance(value, Mapping):
        return {
            k: _normal(v) for k, v in value.items() if v is not None and k != "lastTransitionTime"
        }
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal as stored (so an unchanged state writes nothing)."""
    return bool(_normal(a) == _normal(b))


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning ``old`` into ``new``: a merge patch only adds and
    overwrites, so keys that ``new`` drops are sent as null (a map such as ``tiers`` must lose
    the tiers a scale-down no longer uses)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch

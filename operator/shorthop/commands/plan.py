"""``shorthop plan``: place a deployment on a cluster snapshot, offline (**contract**).

``shorthop plan --cluster SNAPSHOT.yaml --deployment INFD.yaml [--format json|table]`` prints a
plan; exit status 0 when placed, 2 when infeasible (the JSON is still printed), 1 on bad input.

The snapshot may hold ResourceSlices and ResourceClaims too (``kubectl get
nodes,pods,resourceslices,resourceclaims -A -o yaml``): a node whose GPUs are in a slice of the
DRA driver (``--dra-driver``, default ``gpu.nvidia.com``) is modelled from it, every device named
in a claim's allocation is busy, and an assignment on such a node also lists its ``devices``
(``{driver, pool, device}``, one per GPU, in the order of ``gpus``). RuntimeClasses in it
(``kubectl get ...,runtimeclasses``) are applied to the templates naming them as the API server
applies them to pods (overhead, node selector, tolerations); a class the snapshot lacks is
named in a warning on standard error and not applied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from shorthop import manifest, snapshotfile
from shorthop.placement import placers, request, runtime_class, snapshot
from shorthop.placement.plan import Plan
from shorthop.topology import levels, slices

STRATEGIES = {p.name: p for p in placers.all_placers()}


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="place an InferenceDeployment on a cluster snapshot (offline)")
    p.add_argument(
        "--cluster",
        required=True,
        metavar="SNAPSHOT.yaml",
        help="`kubectl get nodes,pods,resourceslices,resourceclaims,runtimeclasses -A -o yaml` "
        "output",
    )
    p.add_argument(
        "--deployment", required=True, metavar="INFD.yaml", help="one InferenceDeployment manifest"
    )
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.add_argument(
        "--dra-driver",
        default=slices.DEFAULT_DRIVER,
        metavar="DRIVER",
        help=f"the DRA driver whose ResourceSlices publish GPUs (default {slices.DEFAULT_DRIVER})",
    )
    p.add_argument(
        "--preset",
        choices=sorted(levels.PRESETS),
        default=levels.DEFAULT_PRESET,
        help="node label scheme for the network levels",
    )
    p.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        default="shorthop",
        help="placer to use (baselines for comparison)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    found = snapshotfile.load_cluster(args.cluster)
    infd = manifest.load_deployment(args.deployment)
    config = levels.preset(args.preset)
    snap = snapshot.build(
        found.nodes,
        found.pods,
        config,
        resource_slices=found.resource_slices,
        claims=found.claims,
        driver=args.dra_driver,
    )
    classes = {str(rc["metadata"]["name"]): rc for rc in found.runtime_classes}
    for i, role in enumerate(infd.spec.roles):
        name = runtime_class.named(role.template.spec)
        if name is not None and name not in classes:
            print(
                f"warning: spec.roles[{i}].template.spec.runtimeClassName: RuntimeClass "
                f'"{name}" is not in the snapshot; planned without its overhead, node selector '
                "and tolerations (add runtimeclasses to the kubectl get)",
                file=sys.stderr,
            )
    req = request.from_spec(
        infd.spec, snap.index.tiers, name=infd.metadata.name, runtime_classes=classes
    )
    started = time.perf_counter()
    plan = STRATEGIES[args.strategy].place(snap, req)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if args.format == "json":
        doc = plan.to_json(snap.node_devices)
        doc["deployment"] = f"{infd.metadata.namespace}/{infd.metadata.name}"
        doc["planningMs"] = round(elapsed_ms, 2)
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(plan, infd.metadata.name, elapsed_ms, snap))
    return 0 if plan.feasible else 2


def _left_out(plan: Plan) -> list[str]:
    """One line per role whose scheduling rules left nodes out, counted by rule."""
    return [
        f"  {role}: " + ", ".join(f"{n} by {cause}" for cause, n in causes.items())
        for role, causes in sorted(plan.exclusions.items())
    ]


def render_table(
    plan: Plan, name: str, elapsed_ms: float, snap: snapshot.ClusterSnapshot | None = None
) -> str:
    left_out = _left_out(plan)
    if not plan.feasible:
        lines = [f"{name}: cannot be placed"]
        lines += [f"  - {r.message()}" for r in plan.reasons]
        if left_out:
            lines += ["nodes left out by the roles' scheduling rules:", *left_out]
        return "\n".join(lines)
    dra = snap is not None and any(snap.node_devices(a.node) for a in plan.assignments)
    rows = [("ROLE", "REPLICA", "POD", "NODE", "GPUS", "REPLICA TIER", *(("DEVICES",) * dra))]
    for a in sorted(plan.assignments, key=lambda a: a.key):
        tier = plan.replica_tiers.get((a.key.role, a.key.replica), "")
        found = snap.node_devices(a.node) if snap is not None and dra else None
        rows.append(
            (
                a.key.role,
                str(a.key.replica),
                a.key.name(name),
                a.node,
                ",".join(map(str, a.gpus)),
                tier,
                *((",".join(found.devices_of(a.gpus)) if found else "-",) * dra),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.append("")
    total = sum(plan.tiers.values()) or 1
    lines.append("prefill<->decode GPU pairs by tier:")
    for tier, n in plan.tiers.items():
        lines.append(f"  {tier:18} {n:6}  ({100 * n / total:.0f}%)")
    c = plan.cost.to_json()
    liked = f", preferred node affinity {c['preference']}" if c["preference"] else ""
    lines.append(
        f"cost: intra-replica {c['intraReplica']}, traffic {c['traffic']}{liked}, "
        f"fragmentation {c['fragmentation']}"
    )
    if left_out:
        lines += ["nodes left out by the roles' scheduling rules:", *left_out]
    lines.append(f"planned in {elapsed_ms:.1f} ms by {plan.strategy}")
    return "\n".join(lines)

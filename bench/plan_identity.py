"""Plan identity: the solver's plans on a fixed corpus, to check that a speed change left every
plan byte-identical (same assignments, same GPUs, same costs).

Not a test with recorded results: run it on two commits and compare the dumps::

    python -m bench.plan_identity dump before.json     # on the commit before
    python -m bench.plan_identity dump after.json      # on the commit after
    python -m bench.plan_identity compare before.json after.json

The corpus: ``quality.exact_instance`` of every family and both traffic patterns (40 seeds
each), and ``common.cluster`` snapshots at 100, 200, 1,000 and 10,000 nodes (both patterns)
with the benchmark deployment and smaller ones, three roles, a replica scope, a required and
a preferred deployment scope. ``compare`` prints the plans that differ with their costs and
exits 1 when any does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shorthop.placement import snapshot as snapshots
from shorthop.placement import solver
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge

from bench import common
from bench.quality import exact_instance
from tests import families

SIZES = ((100, range(3)), (200, range(2)), (1_000, range(3)), (10_000, range(1, 4)))


def _requests(tiers: tuple[str, ...], pattern: Pattern) -> dict[str, Request]:
    def edge(a: int, b: int, weight: float = 1.0) -> TrafficEdge:
        return TrafficEdge(a, b, weight, pattern)

    out = {}
    for p, d in ((16, 16), (4, 9), (1, 3), (8, 8)):
        base = common.deployment(p, d)
        out[f"{p}x{d}"] = Request(roles=base.roles, traffic=(edge(0, 1),), name=base.name)
    roles = (RoleRequest("prefill", 4, 1, 4), RoleRequest("decode", 6, 1, 2))
    out["three"] = Request(
        roles=(*roles, RoleRequest("embed", 3, 1, 1)),
        traffic=(edge(0, 1), edge(1, 2, 0.5), edge(0, 2, 0.25)),
        name="three",
    )
    scoped = RoleRequest("decode", 4, 2, 4, replica_scope=tiers.index("nvlink-domain"))
    out["rscope"] = Request(
        roles=(RoleRequest("prefill", 3, 1, 4), scoped), traffic=(edge(0, 1),), name="rscope"
    )
    out["dscope"] = Request(
        roles=(RoleRequest("prefill", 2, 1, 4), RoleRequest("decode", 3, 1, 8)),
        traffic=(edge(0, 1),),
        name="dscope",
        required_scope=tiers.index("rack"),
    )
    out["pscope"] = Request(
        roles=(RoleRequest("prefill", 4, 1, 2), RoleRequest("decode", 4, 1, 4)),
        traffic=(edge(0, 1),),
        name="pscope",
        preferred_scope=tiers.index("nvlink-domain"),
    )
    return out


def dump() -> dict[str, Any]:
    """Every plan of the corpus as ``Plan.to_json()``, by a name that says what it is."""
    out: dict[str, Any] = {}
    for pattern in (Pattern.ALL_TO_ALL, Pattern.PAIRED):
        for family in families.FAMILIES:
            for seed in range(40):
                nodes, pods, request = exact_instance(family, pattern, seed)
                snap = snapshots.build(nodes, pods, common.CONFIG)
                out[f"exact/{family}/{pattern}/{seed}"] = solver.solve(snap, request).to_json()
    for size, seeds in SIZES:
        for seed in seeds:
            c = common.cluster(size, seed)
            for pattern in (Pattern.ALL_TO_ALL, Pattern.PAIRED):
                for name, request in _requests(c.snapshot.index.tiers, pattern).items():
                    plan = solver.solve(c.snapshot, request)
                    out[f"cluster/{size}/{seed}/{pattern}/{name}"] = plan.to_json()
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names of the plans that differ (or are in one dump only)."""
    names = sorted(set(before) | set(after))
    return [
        n
        for n in names
        if json.dumps(before.get(n), sort_keys=True) != json.dumps(after.get(n), sort_keys=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_identity")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="write every plan of the corpus to a JSON file")
    d.add_argument("out", type=Path)
    c = sub.add_parser("compare", help="list the plans that differ between two dumps")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "dump":
        plans = dump()
        args.out.write_text(json.dumps(plans, sort_keys=True))
        print(f"{len(plans)} plans written to {args.out}")
        return 0
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    differ = compare(before, after)
    for name in differ:
        old, new = before.get(name) or {}, after.get(name) or {}
        print(f"{name}: cost {old.get('cost')} -> {new.get('cost')}")
    print(f"{len(set(before) | set(after))} plans, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

"""The words of the reconciler's events and log lines about placements and scale-downs (one
place, so the event, the log and docs/operations.md say the same)."""

from __future__ import annotations

from collections import Counter

from shorthop.api import models
from shorthop.placement import triage
from shorthop.placement.plan import Plan
from shorthop.placement.solver.explain import count


def tiers(plan: Plan) -> str:
    """``4 same-node-nvlink, 2 nvlink-domain``: the plan's prefill-decode GPU pairs per tier."""
    return ", ".join(f"{n} {t}" for t, n in plan.tiers.items()) or "no traffic pairs"


def placed(created: int, plan: Plan) -> str:
    """The ``Placed`` event: ``placed 1 pod (...); domains: ...`` (at most 1000 characters)."""
    return f"placed {count(created, 'pod')} ({tiers(plan)}); domains: {'; '.join(plan.domains)}"[
        :1000
    ]


def placed_log(created: int, plan: Plan, seconds: float, plan_seconds: float) -> str:
    """The log line of a placement: pods, tiers, cost and how long planning and binding took."""
    cost = plan.cost
    return (
        f"placed {count(created, 'pod')} (tiers: {tiers(plan)}; "
        f"cost {cost.intra + cost.traffic:g} = intra {cost.intra:g} + traffic {cost.traffic:g}) "
        f"in {seconds * 1000:.0f} ms (plan {plan_seconds * 1000:.0f} ms)"
    )


def scaled_down(infd: models.InferenceDeployment, decision: triage.Decision) -> str:
    """``scaled decode down to 1 replica (removed replica 2: 2 pods)``, one clause per role."""
    removed: dict[str, list[int]] = {}
    for role, replica in decision.scaled_away:
        removed.setdefault(role, []).append(replica)
    pods = Counter(r.pod.role for r in decision.removals if r.why.startswith("scaled "))
    clauses = []
    for role, replicas in sorted(removed.items()):
        numbers = ", ".join(str(r) for r in sorted(replicas))
        clauses.append(
            f"scaled {role} down to {count(infd.spec.role(role).replicas, 'replica')} "
            f"(removed {'replica' if len(replicas) == 1 else 'replicas'} {numbers}: "
            f"{count(pods[role], 'pod')})"
        )
    return "; ".join(clauses)

"""The placement score (controller/score.py): a fresh plan with the deployment's own GPUs
released, rate-limited to when free GPUs changed and the interval passed, within a CPU budget."""

from __future__ import annotations

from prometheus_client import generate_latest
from shorthop import metrics as metrics_module
from shorthop.controller import score
from shorthop.metrics import Metrics
from shorthop.placement import objective, snapshot
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.topology import fake

from tests import builders

CONFIG = fake.CONFIG
REQUEST = Request(
    roles=(RoleRequest("prefill", 1, 1, 2), RoleRequest("decode", 1, 1, 2)),
    traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
)


def _cluster(extra: list[dict] | None = None) -> snapshot.ClusterSnapshot:
    nodes = [builders.node_object("a", "hgx", 8, rack="r1"), builders.node_object("b", "hgx", 8)]
    # The deployment as churn left it: prefill on a, decode on b (traffic over the network).
    pods = [builders.gpu_pod("p0", "a", [0, 1]), builders.gpu_pod("d0", "b", [0, 1])]
    return snapshot.build(nodes, pods + (extra or []), CONFIG)


def test_a_split_deployment_scores_worse_than_its_fresh_plan() -> None:
    snap = _cluster()
    own = {"p0": ("a", (0, 1), "prefill"), "d0": ("b", (0, 1), "decode")}
    fresh = score.achievable(snap, REQUEST, own)
    assert fresh is not None
    # Fresh: both replicas on one NVSwitch node; the split one pays the network for 4 pairs.
    together = snapshot.build(
        [builders.node_object("a", "hgx", 8, rack="r1"), builders.node_object("b", "hgx", 8)],
        [builders.gpu_pod("p0", "a", [0, 1]), builders.gpu_pod("d0", "a", [2, 3])],
        CONFIG,
    )
    sets = {
        ("prefill", 0): objective.gpu_set([(together.index.row_of["a"], [0, 1])]),
        ("decode", 0): objective.gpu_set([(together.index.row_of["a"], [2, 3])]),
    }
    best = objective.evaluate_sets(together.index, REQUEST, sets).cost
    assert fresh == best.intra + best.traffic
    split = {
        ("prefill", 0): objective.gpu_set([(snap.index.row_of["a"], [0, 1])]),
        ("decode", 0): objective.gpu_set([(snap.index.row_of["b"], [0, 1])]),
    }
    now = objective.evaluate_sets(snap.index, REQUEST, split).cost
    result = score.Score(now.intra + now.traffic, fresh, score.now())
    assert result.ratio > 1.0
    assert result.to_json()["ratio"] == round(result.ratio, 4)


def test_no_room_for_a_fresh_plan_gives_none() -> None:
    big = Request(roles=(RoleRequest("decode", 3, 1, 8),))
    assert score.achievable(_cluster(), big, {}) is None


def test_recomputed_only_after_the_interval_and_a_change_of_free_gpus() -> None:
    clock = [0.0]
    scores = score.Scores(interval_s=60.0, clock=lambda: clock[0])
    snap = _cluster()
    assert scores.due("ns/x", snap)
    scores.record("ns/x", snap)
    assert not scores.due("ns/x", snap)  # nothing changed, interval not passed
    busier = _cluster([builders.gpu_pod("other", "b", [5])])
    assert not scores.due("ns/x", busier)  # changed, but too soon
    clock[0] = 61.0
    assert not scores.due("ns/x", snap)  # due by time, but the same free GPUs
    assert scores.due("ns/x", busier)
    scores.forget("ns/x")
    assert scores.due("ns/x", snap)


def test_recomputed_at_once_when_the_deployment_itself_changed() -> None:
    clock = [0.0]
    scores = score.Scores(interval_s=60.0, clock=lambda: clock[0])
    snap = _cluster()
    scores.record("ns/x", snap, "gen 1: pods on a")
    assert not scores.due("ns/x", snap, "gen 1: pods on a")
    # A scale (or a repair) moved its pods: due before the interval, on the same free GPUs.
    assert scores.due("ns/x", snap, "gen 2: pods on a and b")
    scores.record("ns/x", snap, "gen 2: pods on a and b")
    assert not scores.due("ns/x", snap, "gen 2: pods on a and b")


def test_ratio_when_nothing_costs() -> None:
    assert score.Score(0.0, 0.0, "").ratio == 1.0
    assert score.Score(5.0, 0.0, "").ratio == 6.0


def test_a_plan_of_the_whole_deployment_is_its_first_score() -> None:
    clock = [0.0]
    scores = score.Scores(interval_s=60.0, clock=lambda: clock[0])
    snap = _cluster()
    assert scores.take_planned("ns/x") is None
    scores.planned("ns/x", snap, 42.0)
    assert not scores.due("ns/x", snap)  # the plan started the interval: no second solve
    assert scores.take_planned("ns/x") == 42.0
    assert scores.take_planned("ns/x") is None  # used once; later scores are recomputed
    scores.planned("ns/x", snap, 7.0)
    scores.forget("ns/x")  # a repair before the score was written drops it
    assert scores.take_planned("ns/x") is None
    assert scores.due("ns/x", snap)


def test_the_planned_score_is_of_the_placement_it_was_taken_for() -> None:
    clock = [0.0]
    scores = score.Scores(interval_s=60.0, clock=lambda: clock[0])
    snap = _cluster()
    scores.planned("ns/x", snap, 42.0)
    assert scores.take_planned("ns/x", "gen 1: pods on a") == 42.0
    # The next visit sees the same deployment: no second solve ...
    assert not scores.due("ns/x", snap, "gen 1: pods on a")
    # ... until it is scaled or repaired.
    assert scores.due("ns/x", snap, "gen 2: pods on a and b")


def test_every_score_solve_shares_one_cpu_budget() -> None:
    clock = [0.0]
    cpu = iter([0.0, 1.5, 1.5, 3.0])  # thread CPU read around each solve: 1.5 s each
    scores = score.Scores(
        interval_s=60.0, clock=lambda: clock[0], share=0.02, burst_s=2.0, cpu=lambda: next(cpu)
    )
    snap = _cluster()
    own = {"p0": ("a", (0, 1), "prefill"), "d0": ("b", (0, 1), "decode")}
    assert scores.due("ns/x", snap)
    assert scores.compute("ns/x", snap, "", REQUEST, own) is not None
    assert scores.due("ns/y", snap)  # 1.5 s spent of the 2 s burst
    assert scores.compute("ns/y", snap, "", REQUEST, own) is not None
    # 3 s spent; 2% of 61 s plus 2 s is 3.22 s ...
    clock[0] = 61.0
    assert scores.within_budget()
    clock[0] = 40.0  # ... but at 40 s only 2.8 s: nothing is due, not even ...
    busier = _cluster([builders.gpu_pod("other", "b", [5])])
    assert not scores.within_budget()
    assert not scores.due("ns/z", snap)  # ... a deployment never scored ...
    assert not scores.due("ns/x", busier, "gen 2")  # ... nor one that changed
    clock[0] = 61.0  # the budget grew: the interval passed and the free GPUs changed
    assert scores.due("ns/x", busier)
    assert scores.due("ns/x", busier, "gen 2")


def _entry(
    scores: score.Scores, metrics: Metrics, snap: snapshot.ClusterSnapshot, new: dict, old: dict
) -> dict:
    own = {"p0": ("a", (0, 1), "prefill"), "d0": ("b", (0, 1), "decode")}
    score.status_entry(scores, metrics, snap, "ns/x", REQUEST, own, new, old, idle=True)
    return new


def test_a_refused_recompute_keeps_a_score_only_while_it_is_of_the_placement_reported() -> None:
    clock = [0.0]
    cpu = iter([0.0, 5.0])  # the one solve takes the whole budget
    scores = score.Scores(clock=lambda: clock[0], share=0.01, burst_s=1.0, cpu=lambda: next(cpu))
    metrics = metrics_module.create()
    snap = _cluster()
    status = {"phase": "Running", "observedGeneration": 1, "cost": {"total": 3240.0}}
    first = _entry(scores, metrics, snap, dict(status), {})["placementScore"]
    assert first["current"] == 3240.0
    assert first["achievable"] < first["current"]
    assert metrics.score.labels("ns", "x")._value.get() == first["ratio"]
    # Over budget: the same placement keeps its score ...
    again = _entry(scores, metrics, snap, dict(status), {"placementScore": first})
    assert again["placementScore"] == first
    # ... a changed one (a scale: another generation, another cost) shows none, nor the metric.
    scaled = {"phase": "Running", "observedGeneration": 2, "cost": {"total": 5000.0}}
    dropped = _entry(scores, metrics, snap, dict(scaled), {"placementScore": first})
    assert "placementScore" not in dropped
    assert "shorthop_placement_score{" not in generate_latest(metrics.registry).decode()


def test_a_due_recompute_waits_for_the_cluster_to_settle_but_never_past_the_interval() -> None:
    clock = [100.0]
    scores = score.Scores(interval_s=60.0, clock=lambda: clock[0], settle_s=5.0)
    assert scores.wait_s("ns/x") == 0.0  # nothing placed yet: settled
    scores.placing()  # a placement (of any deployment) just now
    clock[0] = 102.0
    assert scores.wait_s("ns/x") == 3.0  # come back when 5 s passed without one
    clock[0] = 105.0
    assert scores.wait_s("ns/x") == 0.0
    # A cluster never quiet: placements every second; the wait ends at the interval.
    for t in range(106, 170):
        clock[0] = float(t)
        scores.placing()
        waited = scores.wait_s("ns/y")
        assert waited == (0.0 if t - 106 >= 60 else 5.0)
    clock[0] = 175.0
    scores.placing()
    assert scores.wait_s("ns/y") == 0.0  # still overdue until a score is computed


def test_a_visit_that_must_wait_comes_back_and_shows_no_stale_score() -> None:
    clock = [0.0]
    scores = score.Scores(clock=lambda: clock[0], settle_s=5.0)
    metrics = metrics_module.create()
    snap = _cluster()
    status = {"phase": "Running", "observedGeneration": 1, "cost": {"total": 3240.0}}
    new = dict(status)
    own = {"p0": ("a", (0, 1), "prefill"), "d0": ("b", (0, 1), "decode")}
    assert (
        score.status_entry(scores, metrics, snap, "ns/x", REQUEST, own, new, {}, idle=True) is None
    )
    first = new["placementScore"]
    clock[0] = 10.0
    scores.placing()  # a scale was just placed
    scaled = {"phase": "Running", "observedGeneration": 2, "cost": {"total": 5000.0}}
    new = dict(scaled)
    again = score.status_entry(
        scores, metrics, snap, "ns/x", REQUEST, own, new, {"placementScore": first}, idle=True
    )
    assert again == 5.0
    assert "placementScore" not in new
    clock[0] = 15.0
    new = dict(scaled)
    assert (
        score.status_entry(scores, metrics, snap, "ns/x", REQUEST, own, new, {}, idle=True) is None
    )
    assert new["placementScore"]["current"] == 5000.0

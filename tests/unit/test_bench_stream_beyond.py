"""The streams' account of what shorthop's whole NVLink domains bought (``bench.stream.Beyond``)
and the summary row it feeds: a count that agrees with the stream's own measure, a reason per
extra domain, a MISS while shorthop keeps fewer whole domains free than a rival."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.placement import placers
from shorthop.placement import snapshot as snapshots
from shorthop.placement.plan import Cost
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.topology import fake

from bench import common, report_quality, stream
from bench.quality import ExactResult, QualityResult
from bench.stream import Beyond, Measure, StrategyRun, StreamResult


def _builder(nodes: list[dict[str, Any]]) -> snapshots.SnapshotBuilder:
    builder = snapshots.SnapshotBuilder(common.CONFIG)
    for node in nodes:
        builder.apply_node(None, node)
    return builder


def _request(name: str, prefill: tuple[int, int, int], decode: tuple[int, int, int]) -> Request:
    return Request(
        roles=(RoleRequest("prefill", *prefill), RoleRequest("decode", *decode)),
        traffic=(TrafficEdge(0, 1, 1.0),),
        name=name,
    )


REQUESTS = (
    _request("a", (2, 1, 1), (3, 1, 1)),
    _request("b", (1, 1, 4), (1, 2, 4)),
    _request("c", (1, 2, 4), (1, 4, 4)),
    _request("d", (3, 1, 4), (2, 1, 4)),
)


@pytest.mark.parametrize("strategy", ["shorthop", "first-fit", "best-fit", "tas"])
def test_domains_taken_is_what_the_stream_measures_the_plan_to_take(strategy: str) -> None:
    # One NVL72 rack (one clique) and two HGX units of 3 nodes; arrivals pile up so that later
    # plans meet partly used domains as well as whole ones.
    nodes = fake.nodes(
        fake.ClusterShape(nvl72_racks=1, hgx_units=2, nodes_per_unit=3), common.CONFIG, seed=3
    )
    builder = _builder(nodes)
    placer = next(p for p in placers.all_placers() if p.name == strategy)
    taken = []
    for request in REQUESTS:
        snap = builder.freeze()
        before = stream.measure(snap, {4: 1.0}).whole_domains
        plan = placer.place(snap, request)
        assert plan.feasible, plan.reasons
        counted = stream.domains_taken(snap, plan)
        for pod in stream._pods(plan, f"{strategy}-{request.name}"):
            builder.apply_pod("ADDED", pod)
        after = stream.measure(builder.freeze(), {4: 1.0}).whole_domains
        assert counted == before - after
        taken.append(counted)
    assert sum(taken) > 0  # the case is not vacuous: some plan broke a whole domain


def test_bought_names_what_the_cheaper_plan_has() -> None:
    assert stream.bought(Cost(10, 500.0), Cost(20, 100.0)) == "intra"
    assert stream.bought(Cost(10, 100.0), Cost(10, 500.0)) == "traffic"
    assert stream.bought(Cost(10, 100.0), Cost(10, 100.0)) == "nothing"
    assert stream.bought(Cost(20, 100.0), Cost(10, 500.0)) == "nothing"


def test_beyond_adds_extra_domains_by_reason_and_the_rivals_savings() -> None:
    b = Beyond()
    b.add(3, 1, "intra")
    b.add(2, 1, "traffic")
    b.add(1, 1, "nothing")
    b.add(0, 2, "nothing", cheaper=True)
    assert (b.arrivals, b.more, b.fewer, b.saved, b.cheaper) == (4, 2, 1, 2, 1)
    assert b.extra == {"intra": 2, "traffic": 1, "nothing": 0}


def _stream(seed: int, whole: dict[str, int], beyond: Beyond | None = None) -> StreamResult:
    runs = []
    for name, domains in whole.items():
        run = StrategyRun(name, placed=5, gpu_events=100)
        run.series = [Measure(0, domains, domains, 0.0, 0)]
        if name == "shorthop" and beyond is not None:
            run.beyond = {"first-fit": beyond}
        runs.append(run)
    return StreamResult("mix", seed, 10, 80, 100, (20, 70), {}, runs)


def _quality(*streams: StreamResult) -> QualityResult:
    exact = ExactResult(target=0, time_limit_s=1.0, shapes=[])
    return QualityResult(exact=exact, baselines=[], streams=list(streams), nvlink=[])


def _whole_row(q: QualityResult) -> tuple[str, str, str]:
    return next(r for r in report_quality.summary_rows(q) if "whole NVLink domains" in r[0])


def test_a_stream_where_a_rival_keeps_as_many_whole_domains_misses() -> None:
    b = Beyond()
    b.add(4, 1, "intra")
    b.add(2, 1, "traffic")
    q = _quality(
        _stream(1, {"shorthop": 9, "first-fit": 8, "best-fit": 8, "tas": 7}, b),
        _stream(2, {"shorthop": 9, "first-fit": 8, "best-fit": 8, "tas": 9}),
    )
    _, measured, verdict = _whole_row(q)
    assert measured.startswith("in 1 of 2 streams")
    assert "of the 4 whole domains" in measured
    assert "75% bought a lower intra-replica cost, 25% a lower KV traffic cost, 0% nothing" in (
        measured
    )
    assert verdict == "**MISS**"
    table = report_quality._beyond_table(q.streams)
    assert "| first-fit | 2 | 2 | 3 | 1 | 0 | 0 / 0 | 0 |" in table


def test_streams_where_shorthop_keeps_the_most_whole_domains_pass() -> None:
    q = _quality(_stream(1, {"shorthop": 9, "first-fit": 8, "best-fit": 8, "tas": 7}))
    _, measured, verdict = _whole_row(q)
    assert verdict == "**PASS**"
    assert "never took more whole domains than first-fit's" in measured


def test_set_against_counts_a_rival_plan_that_costs_less() -> None:
    # First-fit's plan stands in for "shorthop's": shorthop's own solver, as the rival, finds
    # a cheaper one (on a cluster first-fit has partly filled), which must be counted as a plan
    # the solver missed; the other way round nothing is.
    nodes = fake.nodes(
        fake.ClusterShape(nvl72_racks=1, hgx_units=2, nodes_per_unit=3), common.CONFIG, seed=3
    )
    builder = _builder(nodes)
    for request in [e.request for e in stream.events(10, 1, (20, 70))]:
        snap = builder.freeze()
        worse = placers.FirstFit().place(snap, request)
        better = placers.ShorthopPlacer().place(snap, request)
        if not worse.feasible:
            continue
        if better.cost.key() < worse.cost.key():
            break
        for pod in stream._pods(worse, f"ff-{request.name}"):
            builder.apply_pod("ADDED", pod)
    assert better.cost.key() < worse.cost.key(), "no request where shorthop beats first-fit"
    run = StrategyRun("shorthop")
    stream._set_against(run, [placers.ShorthopPlacer()], snap, request, worse)
    stream._set_against(run, [placers.FirstFit()], snap, request, better)
    assert run.beyond["shorthop"].cheaper == 1
    assert run.beyond["first-fit"].cheaper == 0
    assert run.beyond["first-fit"].arrivals == 1

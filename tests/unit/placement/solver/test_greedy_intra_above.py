"""``greedy(state, intra_above=c)``: first-fit's start in ``run`` stops as soon as the replicas
it placed cost more inside than the COST start; it must agree with placing everything and
comparing after, and otherwise place exactly what an unbounded run places."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import snapshot as snapshots
from shorthop.placement.request import Pattern
from shorthop.placement.solver.greedy import greedy
from shorthop.placement.solver.state import Failure, State, Strategy

from tests import families
from tests.hypothesis_profiles import examples


def _state(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], request: Any) -> State:
    from shorthop.topology import fake

    return State(snapshots.build(nodes, pods, fake.CONFIG), request, None, {}, Strategy.FIRST_FIT)


@settings(max_examples=examples(60))
@given(
    st.integers(0, 10_000),
    st.sampled_from(families.FAMILIES),
    st.sampled_from([Pattern.ALL_TO_ALL, Pattern.PAIRED]),
    st.integers(0, 400),
)
def test_stopping_above_a_ceiling_agrees_with_finishing_first(
    seed: int, family: str, pattern: Pattern, ceiling: int
) -> None:
    nodes, pods, request = families.quality_instance(random.Random(seed), family, pattern)
    whole = _state(nodes, pods, request)
    try:
        greedy(whole)
    except Failure:
        return  # no first-fit start either way
    bounded = _state(nodes, pods, request)
    finished = greedy(bounded, intra_above=ceiling)
    assert finished == (whole.total_intra() <= ceiling)
    placed = {k: r.placed for k, r in bounded.replicas.items() if r.placed}
    assert all(whole.replicas[k].placed == gpus for k, gpus in placed.items())
    if finished:
        assert bounded.total_cost() == whole.total_cost()
    else:
        assert sum(bounded.replica_intra(k) for k in placed) > ceiling


def test_a_ceiling_below_the_first_replica_stops_after_it() -> None:
    from shorthop.placement.request import Request, RoleRequest, TrafficEdge
    from shorthop.topology import fake

    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=4))
    request = Request(
        roles=(RoleRequest("prefill", 2, 1, 4), RoleRequest("decode", 2, 2, 4)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
        name="f",
    )
    state = _state(nodes, [], request)
    assert greedy(state, intra_above=0) is False
    assert sum(1 for r in state.replicas.values() if r.placed) == 1
    whole = _state(nodes, [], request)
    assert greedy(whole, intra_above=whole.total_intra() + 10**9) is True
    assert all(not r.missing() for r in whole.replicas.values())

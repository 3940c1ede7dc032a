"""Solver states and checks shared by the tests of the solver's phases."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from shorthop.placement import snapshot, solver
from shorthop.placement.plan import Plan
from shorthop.placement.request import Request
from shorthop.placement.solver import greedy, medium
from shorthop.placement.solver.state import Failure, State
from shorthop.topology import fake

from bench import common, count_optimum
from tests import builders


@st.composite
def greedy_states(draw: Any, *, read_summaries: bool = False) -> State:
    """A state of ``builders.small_pd_cases`` with its greedy plan committed (as far as it
    fits); with ``read_summaries``, every role's summary is read between commits (brought up
    to date, not rebuilt)."""
    nodes, pods, request = draw(builders.small_pd_cases())
    state = State(snapshot.build(nodes, pods, fake.CONFIG), request, None, {})
    for key in greedy.order(state):
        try:
            state.commit(key, greedy.place(state, key))
        except Failure:
            break
        if read_summaries:
            state.role_summary(key[0])
    return state


def assert_books(state: State) -> None:
    """Every GPU a replica holds is held once, was free in the snapshot and is marked used;
    the per-node counts match the free GPUs."""
    held: set[tuple[int, int]] = set()
    for r in state.replicas.values():
        for _, row, mask in r.parts():
            for g in range(64):
                if mask >> g & 1:
                    assert (row, g) not in held
                    held.add((row, g))
                    assert not int(state.free[row]) >> g & 1
                    assert int(state.snapshot.free[row]) >> g & 1
    assert [int(c) for c in state.count] == [int(f).bit_count() for f in state.free]


def plan_at_count_optimum(snap: snapshot.ClusterSnapshot, request: Request) -> Plan:
    """The solver's plan of a medium instance of alike-GPU nodes and one-pod replicas: valid,
    and as cheap as ``bench.count_optimum``'s brute force."""
    plan = solver.solve(snap, request)
    assert plan.feasible
    assert not common.plan_problems(snap, request, plan)
    assert medium.medium(State(snap, request, None, {}))
    assert (plan.cost.intra, round(plan.cost.traffic, 6)) == count_optimum.optimum(snap, request)
    return plan

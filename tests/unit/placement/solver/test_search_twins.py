"""A plan the exhaustive search finds gives, of each class of twin GPUs on a node, its highest
free GPUs (as greedy does), not the lowest ones the search enumerates: kube-scheduler's DRA
allocator takes the lowest free devices first."""

from __future__ import annotations

from shorthop.placement import snapshot as snapshots
from shorthop.placement import solver
from shorthop.placement.request import Pattern
from shorthop.placement.solver import universe
from shorthop.placement.solver.state import State

from bench import quality
from tests.unit.placement.test_solver import CONFIG, assert_valid

# Instances of bench.quality where the search's plan replaces the heuristics' (it is cheaper).
SEARCHED = (("greedy-trap", Pattern.PAIRED, 19), ("multi-pod", Pattern.ALL_TO_ALL, 4))


def test_searched_plans_take_the_highest_free_twins() -> None:
    for family, pattern, seed in SEARCHED:
        nodes, pods, request = quality.exact_instance(family, pattern, seed)
        snap = snapshots.build(nodes, pods, CONFIG)
        plan = solver.solve(snap, request)
        assert_valid(snap, request, plan)
        state = State(snap, request, None, {})
        used: dict[int, list[int]] = {}
        for a in plan.assignments:
            used.setdefault(a.row, []).extend(a.gpus)
        for row, gpus in used.items():
            twins = universe.twin_classes(state.index, row)
            free = int(snap.free[row])
            for cls in {twins[g] for g in gpus}:
                mine = sorted(g for g in gpus if twins[g] == cls)
                pool = [g for g in range(len(twins)) if twins[g] == cls and free >> g & 1]
                assert mine == pool[len(pool) - len(mine) :], (family, seed, row, mine, pool)

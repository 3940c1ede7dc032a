"""First-fit's jump over full rows (``greedy._next_with_room``) finds the same row as a scan
row by row would, wherever the rows with room are (property, numpy windows that double)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from shorthop.placement.solver.greedy import _next_with_room


def _scan(fit: list[int], start: int) -> int:
    for row in range(start, len(fit)):
        if fit[row] > 0:
            return row
    return len(fit)


@given(
    st.lists(st.integers(min_value=0, max_value=2), max_size=600).map(
        # mostly full rows, so that long runs of them (several windows) are drawn
        lambda xs: [x if x == 2 else 0 for x in xs]
    ),
    st.integers(min_value=0, max_value=650),
)
def test_the_next_row_with_room_is_the_first_one_a_scan_finds(fit: list[int], start: int) -> None:
    assert _next_with_room(np.array(fit, dtype=np.int64), start) == _scan(fit, start)


def test_a_row_with_room_far_behind_a_long_run_of_full_rows_is_found() -> None:
    fit = np.zeros(10_000, dtype=np.int64)
    fit[9_999] = 1
    assert _next_with_room(fit, 3) == 9_999
    assert _next_with_room(fit, 10_000) == 10_000

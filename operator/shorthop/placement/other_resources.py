"""Resources besides CPU, memory, pod slots and GPUs: extended resources (``rdma/ib``,
``nvidia.com/hostdev``), hugepages, ephemeral storage. The kubelet refuses a pod on a node without
enough of any it requests, as kube-scheduler's NodeResourcesFit does, so shorthop counts them too.

- :class:`Columns` keeps, per resource name seen (in a node's allocatable or a pod's requests),
  the amount left on every row of the snapshot builder: allocatable minus what its pods and
  assumed pods request (a node without the resource has none: a pod requesting it there leaves
  a negative amount). A name seen for the first time starts at 0 on every other row, which is
  right: no node offered it and no pod asked for it before.
- :func:`left` works out one node's amounts; :func:`released` puts pods' amounts back.
- :func:`headroom` widens a snapshot's headroom (CPU, memory, pod slots) with the columns a
  request names, and gives each role its demand per pod over all columns: what the solver, the
  exact solver and the baselines subtract per pod and divide by to count pods that fit.

Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from shorthop.placement.occupancy import Amounts

if TYPE_CHECKING:
    from shorthop.placement.request import RoleRequest

_INT64 = 2**63 - 1


class Columns:
    """Per other resource, per row: the amount left (see the module docstring)."""

    def __init__(self) -> None:
        self._arrays: dict[str, NDArray[np.int64]] = {}
        self._size = 0

    def grow(self, size: int) -> None:
        """Make room for ``size`` rows (new rows hold 0)."""
        if size <= self._size:
            return
        for name, array in self._arrays.items():
            self._arrays[name] = np.concatenate([array, np.zeros(size - self._size, np.int64)])
        self._size = size

    def clear(self, row: int) -> None:
        """A row that offers nothing (its node left the index)."""
        for array in self._arrays.values():
            array[row] = 0

    def set_row(self, row: int, amounts: Mapping[str, int]) -> None:
        """The amounts left on ``row`` (a name not in ``amounts``: 0)."""
        for name in amounts:
            if name not in self._arrays:
                self._arrays[name] = np.zeros(self._size, dtype=np.int64)
        for name, array in self._arrays.items():
            array[row] = max(-_INT64, min(_INT64, amounts.get(name, 0)))

    def frozen(self, rows: int) -> dict[str, NDArray[np.int64]]:
        """Read-only copies of the first ``rows`` rows, by name."""
        out = {}
        for name, array in sorted(self._arrays.items()):
            copy = array[:rows].copy()
            copy.setflags(write=False)
            out[name] = copy
        return out


def left(offered: Amounts, taken: Iterable[Amounts]) -> dict[str, int]:
    """What a node offering ``offered`` has left once the requests in ``taken`` are counted."""
    out = dict(offered)
    for amounts in taken:
        for name, amount in amounts:
            out[name] = out.get(name, 0) - amount
    return out


def released(
    other: Mapping[str, NDArray[np.int64]], back: Mapping[int, Amounts], rows: int
) -> dict[str, NDArray[np.int64]]:
    """``other`` (``rows`` rows) with pods' amounts put back (row -> their summed amounts)."""
    out = {name: array.copy() for name, array in other.items()}
    size = rows
    for row, amounts in back.items():
        for name, amount in amounts:
            if name not in out:
                out[name] = np.zeros(size, dtype=np.int64)
            out[name][row] += amount
    for array in out.values():
        array.setflags(write=False)
    return out


def headroom(
    base: NDArray[np.int64],
    other: Mapping[str, NDArray[np.int64]],
    roles: Sequence[RoleRequest],
) -> tuple[NDArray[np.int64], list[NDArray[np.int64]]]:
    """``base`` (a snapshot's rows x (CPU, memory, pod slots)) widened by a column per other
    resource (the snapshot's ``other``) the roles request, and per role its demand per pod over
    the columns (1 pod slot included). A resource no node has is a column of 0: no pod fits."""
    names = sorted({name for r in roles for name, _ in r.other})
    if not names:
        demands = [np.array((r.cpu_millis, r.memory_bytes, 1), dtype=np.int64) for r in roles]
        return base.copy(), demands
    zeros = np.zeros(len(base), dtype=np.int64)
    extra = [other.get(name, zeros)[: len(base)] for name in names]
    out = np.column_stack([base, *extra]).astype(np.int64)
    demands = []
    for r in roles:
        wanted = dict(r.other)
        demands.append(
            np.array(
                (r.cpu_millis, r.memory_bytes, 1, *(wanted.get(n, 0) for n in names)),
                dtype=np.int64,
            )
        )
    return out, demands


def pods_room(head: Sequence[int], demand: Sequence[int]) -> int:
    """Pods of ``demand`` that the headroom ``head`` (one row, every column) holds."""
    return min(int(h) // int(d) for h, d in zip(head, demand, strict=True) if d > 0)

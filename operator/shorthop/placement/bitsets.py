"""GPU sets as bitsets (bit g set: GPU g), one integer per node: the snapshot's and the
solver's currency. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from shorthop.topology.labels import MAX_GPUS_PER_NODE  # one uint64 bitset per node

_ALL_GPUS = (1 << MAX_GPUS_PER_NODE) - 1


def mask_of(gpus: Iterable[int]) -> int:
    m = 0
    for g in gpus:
        m |= 1 << g
    return m


def bits(mask: int) -> tuple[int, ...]:
    m = int(mask) & _ALL_GPUS
    out = []
    while m:  # ascending set bits, one step each (not one per possible GPU): solver inner loops
        low = m & -m
        out.append(low.bit_length() - 1)
        m ^= low
    return tuple(out)

"""Kubernetes resource quantities ("500m", "2", "64Gi", "1e9") as integers."""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# Kubernetes keeps quantities in an int64; anything larger is malformed. Checked on the decimal
# exponent before scaling, since expanding "1e999999" to an integer takes minutes and
# "1e999999999" overflows the decimal context.
MAX = 2**63 - 1
_MAX_DIGITS = 40


def parse(value: object, *, milli: bool = False) -> int | None:
    """The quantity as an integer (in thousandths when ``milli``), or ``None`` if malformed or
    beyond what Kubernetes can hold (±2**63-1). Strings are remembered: a cluster repeats a few
    values ("64", "512Gi", "110") on every node and pod event.

    >>> parse("500m", milli=True), parse("2", milli=True), parse("1Gi"), parse("x")
    (500, 2000, 1073741824, None)
    """
    if isinstance(value, bool):
        return None
    text = str(value)
    if len(text) <= _CACHED_LENGTH:
        return _parse_text(text, milli)
    return _parse_text.__wrapped__(text, milli)


_CACHED_LENGTH = 64  # longer ones are rare (and mostly malformed): not worth a cache slot


@functools.lru_cache(maxsize=4096)
def _parse_text(value: str, milli: bool) -> int | None:
    text = value.strip()
    match = _QUANTITY.match(text)
    if not match:
        return None
    try:
        number = Decimal(match[1])
    except InvalidOperation:
        return None
    if number.is_zero():
        return 0
    if number.adjusted() > _MAX_DIGITS:
        return None
    if number.adjusted() < -_MAX_DIGITS:
        number = Decimal(0) if number < 0 else Decimal("1e-40")  # rounds up to the smallest unit
    suffix = match[2] or ""
    scaled = number / 1000 if suffix == "m" else number * _SUFFIX[suffix]
    if milli:
        scaled *= 1000
    whole = int(scaled.to_integral_value(rounding="ROUND_CEILING"))
    return whole if -MAX <= whole <= MAX else None

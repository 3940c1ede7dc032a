"""Kubernetes resource quantities ("500m", "2", "64Gi", "1e9") as integers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse(value: object, *, milli: bool = False) -> int | None:
    """The quantity as an integer (in thousandths when ``milli``), or ``None`` if malformed.

    >>> parse("500m", milli=True), parse("2", milli=True), parse("1Gi"), parse("x")
    (500, 2000, 1073741824, None)
    """
    if isinstance(value, bool):
        return None
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        return None
    try:
        number = Decimal(match[1])
    except InvalidOperation:
        return None
    suffix = match[2] or ""
    scaled = number / 1000 if suffix == "m" else number * _SUFFIX[suffix]
    if milli:
        scaled *= 1000
    return int(scaled.to_integral_value(rounding="ROUND_CEILING"))

"""Status is written as a JSON merge patch; keys the new status drops must be removed (the property
test runs under the suite's hypothesis profile: no deadline, a fixed sample in CI, fresh ones
under ``make fuzz``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from shorthop.controller.status import merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


leaves = st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=3))
documents = st.recursive(
    leaves, lambda inner: st.dictionaries(st.sampled_from("abcd"), inner, max_size=4), max_leaves=12
).filter(lambda d: isinstance(d, dict))


def test_a_tier_dropped_by_a_scale_down_is_removed() -> None:
    old = {"phase": "Running", "tiers": {"nvlink-domain": 384, "block": 128}}
    new = {"phase": "Running", "tiers": {"nvlink-domain": 256}}
    patch = merge_patch(old, new)
    assert patch["tiers"] == {"nvlink-domain": 256, "block": None}
    assert apply_merge_patch(old, patch) == new


@given(documents, documents)
def test_applying_the_patch_to_the_old_status_gives_the_new_one(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new

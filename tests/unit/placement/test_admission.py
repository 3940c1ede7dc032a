"""Kubelet admission rejections: which failed pods count, and the exclusions they leave (one per
role and node, kept while the template and the node are the same), stored in the status."""

from __future__ import annotations

from dataclasses import replace

import pytest
from shorthop.controller import status
from shorthop.placement import admission
from shorthop.placement.admission import Exclusion
from shorthop.placement.triage import PodState

OWNER, HASH = "uid-1", "h1"


def pod(**changes: object) -> PodState:
    base = PodState(
        name="d-decode-0-0",
        uid="u1",
        node="gpu-1",
        phase="Failed",
        deleting=False,
        ready=False,
        gpus=4,
        exact=(0, 1, 2, 3),
        owner_uid=OWNER,
        role="decode",
        replica=0,
        pod=0,
        template_hash=HASH,
        failed_reason="NodeAffinity",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phase", "reason", "rejected"),
    [
        ("Failed", "NodeAffinity", True),
        ("Failed", "NodePorts", True),
        ("Failed", "NodeName", True),
        ("Failed", "TaintToleration", True),
        ("Failed", "OutOfcpu", True),
        ("Failed", "OutOfmemory", True),
        ("Failed", "OutOfpods", True),
        ("Failed", "OutOfnvidia.com/gpu", True),
        ("Failed", "UnexpectedAdmissionError", True),
        ("Failed", "TopologyAffinityError", True),
        ("Failed", "OutOf", False),
        ("Failed", "Evicted", False),
        ("Failed", None, False),
        ("Failed", "Error", False),
        ("Running", "NodeAffinity", False),
    ],
)
def test_which_failures_are_kubelet_rejections(
    phase: str, reason: str | None, rejected: bool
) -> None:
    assert admission.is_rejection(phase, reason) is rejected


def test_a_rejected_pod_of_the_current_template_asks_to_exclude_its_node() -> None:
    found = admission.rejections(
        [
            pod(),
            pod(name="old", template_hash="h0"),  # another template: its rejection may not apply
            pod(name="foreign", owner_uid="someone"),
            pod(name="leaving", deleting=True),
            pod(name="crashed", failed_reason="Error"),
            pod(name="unbound", node=None),
        ],
        {"decode": HASH},
        OWNER,
    )
    assert found == [
        admission.Rejection("d-decode-0-0", Exclusion("decode", "gpu-1", "NodeAffinity", HASH))
    ]


def test_merge_keeps_one_per_role_and_node_and_drops_stale_ones() -> None:
    old = (
        Exclusion("decode", "gpu-1", "NodeAffinity", HASH),
        Exclusion("decode", "gone", "OutOfcpu", HASH),
        Exclusion("prefill", "gpu-2", "NodePorts", "h0"),  # the template changed since
    )
    new = [
        Exclusion("decode", "gpu-1", "OutOfmemory", HASH),  # already excluded: the first stays
        Exclusion("prefill", "gpu-3", "NodeName", HASH),
    ]
    merged = admission.merge(old, new, {"decode": HASH, "prefill": HASH}, lambda n: n != "gone")
    assert merged == (
        Exclusion("decode", "gpu-1", "NodeAffinity", HASH),
        Exclusion("prefill", "gpu-3", "NodeName", HASH),
    )
    assert admission.by_role(merged) == {
        "decode": frozenset({"gpu-1"}),
        "prefill": frozenset({"gpu-3"}),
    }


def test_exclusions_round_trip_through_the_status() -> None:
    excluded = (Exclusion("decode", "gpu-1", "NodeAffinity", HASH),)
    stored = {"excludedNodes": status.exclusions_json(excluded)}
    assert stored == {
        "excludedNodes": [
            {"role": "decode", "node": "gpu-1", "reason": "NodeAffinity", "templateHash": HASH}
        ]
    }
    assert status.excluded_nodes(stored) == excluded
    mangled = {"excludedNodes": [*stored["excludedNodes"], {"role": "x"}, "junk", {"node": 3}]}
    assert status.excluded_nodes(mangled) == excluded
    assert status.excluded_nodes({"excludedNodes": "junk"}) == ()
    # An invalid spec keeps them: the next valid spec of the same template still needs them.
    assert status.invalid(2, "spec.x: bad", stored)["excludedNodes"] == stored["excludedNodes"]

"""A bind that fails transiently (5xx, 429, no answer) is retried: the reconcile backs off and
comes back, and binds the pod it already created instead of deleting it because the GPUs it
assumed for that very pod looked taken (found by chaos/test_apiserver.py: every failed bind
turned into a delete, a create and a bind, and without the delete's event nothing retried)."""

from __future__ import annotations

from tests import operator_harness as oh
from tests.recording_kube import RecordingKube, one_node_reconciler


def test_a_failed_bind_is_retried_and_binds_the_pod_already_created() -> None:
    kube = RecordingKube(fail_binds=1)
    live, reconciler, _ = one_node_reconciler(
        kube, oh.deployment("d", "ns", None, [("r", 1, 4, 4)])
    )

    first = reconciler.reconcile("ns/d")
    assert list(kube.created) == ["d-r-0-0"]
    assert not kube.bound
    assert first.retry, "a failed bind must be retried (with backoff)"

    # The watch reports the created, unbound pod; the retry binds it where it was planned.
    live.apply_pod("ADDED", kube.created["d-r-0-0"])
    reconciler.reconcile("ns/d")
    assert kube.deleted == [], "the pod was deleted although its GPUs were assumed for it"
    assert kube.bound == [("d-r-0-0", "n1")]
    assert kube.creates() == ["d-r-0-0"], "the pod was created (or tried) again"
    assert [verb for verb, _ in kube.calls if verb in ("create", "bind", "delete")] == [
        "create",
        "bind",
        "bind",
    ]

"""No GPU stays taken by a round that failed: after a visit whose creates or binds fail part-way
(the API server or etcd restarting), GPUs are assumed only for pods that exist, and a pod whose
create failed leaves its GPUs free for the next plan at once, not after the assumption's expiry
(``live.ASSUME_SECONDS``).

The known issue behind them (chaos/test_apiserver.py, "grow + etcd restart": a deployment
Unschedulable for over 90 s) had two suspects: GPUs of an aborted round left assumed, or the fake
nodes going NotReady while etcd was down. The round's creates and binds ran through
``pool.map``, which raises at the first failed job and cancels the jobs not started yet: their
GPUs stayed assumed until the assumption expired (120 s), and the jobs still running outlived
the round (a late ``forget`` could drop the next round's assumption of the same pod)."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.controller.kube import KubeError

from tests import operator_harness as oh
from tests.recording_kube import RecordingKube, one_node_reconciler


class FailingCreates(RecordingKube):
    """Creates succeed until ``fail_after`` pods exist, then answer ``status``."""

    def __init__(self, fail_after: int, status: int = 500) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.status = status

    def create_pod(self, namespace: str, body: Any) -> dict[str, Any]:
        if len(self.created) >= self.fail_after:
            name = body["metadata"]["name"]
            raise KubeError(f"create pod {namespace}/{name}", self.status, "etcd is restarting")
        return super().create_pod(namespace, body)


def _free(live: Any) -> int:
    return int(live.snapshot().free_counts.sum())


@pytest.mark.parametrize("status", [500, 0, 429])
def test_a_failed_create_leaves_no_gpu_assumed(status: int) -> None:
    kube = FailingCreates(fail_after=1, status=status)
    body = oh.deployment("d", "ns", None, [("r", 2, 4, 4)])
    live, reconciler, key = one_node_reconciler(kube, body)
    assert _free(live) == 8

    assert reconciler.reconcile(key).retry

    assert list(kube.created) == ["d-r-0-0"] or list(kube.created) == ["d-r-1-0"]
    created = next(iter(kube.created))
    failed = "d-r-1-0" if created == "d-r-0-0" else "d-r-0-0"
    assert live.assumed_gpus(f"ns/{failed}", "n1") == ()
    # The created pod keeps its 4 GPUs (the next visit binds it); the failed one's are free.
    assert _free(live) == 4


def test_jobs_not_started_when_one_fails_still_release_their_gpus() -> None:
    # One worker: the first create fails while the other three jobs wait for it.
    kube = FailingCreates(fail_after=0)
    body = oh.deployment("d", "ns", None, [("r", 4, 2, 2)])
    live, reconciler, key = one_node_reconciler(kube, body, workers=1)

    assert reconciler.reconcile(key).retry
    assert kube.created == {}
    assert _free(live) == 8, "GPUs of jobs the failed round never ran stayed assumed"


def test_after_the_outage_the_next_visit_places_everything() -> None:
    kube = FailingCreates(fail_after=0)
    body = oh.deployment("d", "ns", None, [("r", 2, 4, 4)])
    live, reconciler, key = one_node_reconciler(kube, body)

    for _ in range(3):  # visits during the outage: every create fails
        assert reconciler.reconcile(key).retry
        assert _free(live) == 8, "a failed round left GPUs taken"

    kube.fail_after = 99  # the API server is back
    outcome = reconciler.reconcile(key)
    assert not outcome.retry
    assert sorted(kube.created) == ["d-r-0-0", "d-r-1-0"]
    assert sorted(kube.bound) == [("d-r-0-0", "n1"), ("d-r-1-0", "n1")]

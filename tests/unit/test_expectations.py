"""A deployment's next visit waits until the watch shows the pods its last visit bound: it must
not plan and bind them again (the throughput benchmark saw one wasted bind in ten), and it writes
the status once, from the bound pods."""

from __future__ import annotations

import copy

from shorthop.controller.live import LiveCluster
from shorthop.controller.reconcile import Reconciler
from shorthop.controller.runtime.expectations import Expectations

from tests import operator_harness as oh
from tests.recording_kube import RecordingKube, one_node_reconciler


class SteppedClock:
    """Time that moves only when the test says so: no window for a busy machine to miss."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_expectation_holds_until_every_pod_is_observed() -> None:
    seen: set[str] = set()
    expectations = Expectations()
    expectations.expect("ns/d", {"ns/a": "u-a", "ns/b": "u-b"})
    observed = lambda key, uid: key in seen  # noqa: E731
    assert expectations.waiting("ns/d", observed) > 0
    seen.add("ns/a")
    assert expectations.waiting("ns/d", observed) > 0
    seen.add("ns/b")
    assert expectations.waiting("ns/d", observed) == 0
    seen.clear()
    assert expectations.waiting("ns/d", observed) == 0, "a met expectation is dropped"
    assert expectations.waiting("ns/other", observed) == 0


def test_an_expectation_expires() -> None:
    clock = SteppedClock()
    expectations = Expectations(expire_seconds=5.0, clock=clock)
    expectations.expect("ns/d", {"ns/a": "u-a"})
    assert expectations.waiting("ns/d", lambda key, uid: False) == 5.0
    clock.now += 4.9
    assert 0 < expectations.waiting("ns/d", lambda key, uid: False) < 0.11
    clock.now += 0.1
    assert expectations.waiting("ns/d", lambda key, uid: False) == 0


def _reconciler() -> tuple[RecordingKube, LiveCluster, Reconciler]:
    kube = RecordingKube()
    live, reconciler, _ = one_node_reconciler(
        kube, oh.deployment("d", "ns", None, [("r", 2, 4, 4)])
    )
    return kube, live, reconciler


def test_a_visit_before_the_watch_shows_the_binds_binds_nothing_again() -> None:
    kube, live, reconciler = _reconciler()
    reconciler.reconcile("ns/d")
    assert sorted(name for name, _ in kube.bound) == ["d-r-0-0", "d-r-1-0"]
    assert kube.statuses == [], "a status written now would show the bound pods unbound"

    # The watch has delivered the creations, not yet the bindings; the pods' events wake the key.
    for pod in kube.created.values():
        live.apply_pod("ADDED", pod)
    again = reconciler.reconcile("ns/d")
    assert len(kube.bound) == 2, "the pods were bound a second time"
    assert sorted(kube.creates()) == ["d-r-0-0", "d-r-1-0"], "a pod was created (or tried) again"
    assert not kube.deleted
    assert again.after is not None, "no fallback visit was scheduled"
    assert again.after > 0
    assert kube.statuses == []

    # The bindings arrive: the next visit writes the status once, with both pods bound.
    for pod in kube.created.values():
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = "n1"
        live.apply_pod("MODIFIED", bound)
    reconciler.reconcile("ns/d")
    assert len(kube.bound) == 2
    assert len(kube.statuses) == 1
    replicas = kube.statuses[0]["replicas"]
    assert sorted(p["node"] for r in replicas for p in r["pods"]) == ["n1", "n1"]


def test_a_pod_deleted_before_it_was_seen_is_replaced_after_the_expectation_expires() -> None:
    kube, live, reconciler = _reconciler()
    clock = SteppedClock()
    reconciler.expectations.clock = clock
    reconciler.reconcile("ns/d")
    assert sorted(kube.creates()) == ["d-r-0-0", "d-r-1-0"]
    # Someone deleted d-r-1-0 at once; the watch only ever shows d-r-0-0, bound.
    first = copy.deepcopy(kube.created["d-r-0-0"])
    first["spec"]["nodeName"] = "n1"
    live.apply_pod("ADDED", first)
    kube.remove_by_someone_else("d-r-1-0")
    assert reconciler.reconcile("ns/d").after is not None
    assert sorted(kube.creates()) == ["d-r-0-0", "d-r-1-0"], (
        "re-created before the expectation expired"
    )
    clock.now += reconciler.expectations.expire_seconds
    reconciler.reconcile("ns/d")
    assert sorted(kube.created) == ["d-r-0-0", "d-r-1-0"], "the missing pod was not re-created"
    assert sorted(kube.creates()) == ["d-r-0-0", "d-r-1-0", "d-r-1-0"], (
        "only the missing pod is created"
    )


def test_an_expired_expectation_reports_the_pods_never_seen() -> None:
    lost: list[str] = []
    clock = SteppedClock()
    expectations = Expectations(expire_seconds=5.0, on_expire=lost.append, clock=clock)
    expectations.expect("ns/d", {"ns/a": "u-a", "ns/b": "u-b"})
    observed = lambda key, uid: key == "ns/a"  # noqa: E731
    expectations.waiting("ns/d", observed)
    assert lost == []
    clock.now += 5.0
    assert expectations.waiting("ns/d", observed) == 0
    assert lost == ["ns/b"]

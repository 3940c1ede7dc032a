"""A deployment's next visit waits until the watch shows the pods its last visit bound: it must
not plan and bind them again (the throughput benchmark saw one wasted bind in ten), and it writes
the status once, from the bound pods."""

from __future__ import annotations

import copy
import time

from shorthop.controller.live import LiveCluster
from shorthop.controller.reconcile import Reconciler
from shorthop.controller.runtime.expectations import Expectations

from tests import operator_harness as oh
from tests.recording_kube import RecordingKube, one_node_reconciler


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
    expectations = Expectations(expire_seconds=0.05)
    expectations.expect("ns/d", {"ns/a": "u-a"})
    assert expectations.waiting("ns/d", lambda key, uid: False) > 0
    time.sleep(0.06)
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
    assert len(kube.created) == 2
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
    reconciler.expectations.expire_seconds = 0.05
    reconciler.reconcile("ns/d")
    assert len(kube.created) == 2
    # Someone deleted d-r-1-0 at once; the watch only ever shows d-r-0-0, bound.
    first = copy.deepcopy(kube.created["d-r-0-0"])
    first["spec"]["nodeName"] = "n1"
    live.apply_pod("ADDED", first)
    del kube.created["d-r-1-0"]
    assert reconciler.reconcile("ns/d").after is not None
    assert len(kube.created) == 1
    time.sleep(0.06)
    reconciler.reconcile("ns/d")
    assert sorted(kube.created) == ["d-r-0-0", "d-r-1-0"], "the missing pod was not re-created"


def test_an_expired_expectation_reports_the_pods_never_seen() -> None:
    lost: list[str] = []
    expectations = Expectations(expire_seconds=0.05, on_expire=lost.append)
    expectations.expect("ns/d", {"ns/a": "u-a", "ns/b": "u-b"})
    observed = lambda key, uid: key == "ns/a"  # noqa: E731
    expectations.waiting("ns/d", observed)
    assert lost == []
    time.sleep(0.06)
    assert expectations.waiting("ns/d", observed) == 0
    assert lost == ["ns/b"]

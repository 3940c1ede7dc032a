"""Lease renewal (controller/runtime/leader.py) against a stand-in for the API server's Lease
storage that fails the requests it is told to: the holder renews in one request, reads again
only when that fails, and retries a failed renewal every ``retry`` seconds until the deadline."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from shorthop.controller.runtime.leader import LeaseElector
from shorthop.errors import Conflict, KubeError, NotFound


class LeaseStore:
    """One Lease with a resourceVersion; ``fail`` says which of the next requests fail."""

    def __init__(self) -> None:
        self.lease: client.V1Lease | None = None
        self.version = 0
        self.calls: list[str] = []
        self.fail: Iterator[bool] = iter(())
        self.timeouts: list[float | None] = []

    def _request(self, verb: str, timeout: float | None) -> None:
        self.calls.append(verb)
        self.timeouts.append(timeout)
        if next(self.fail, False):
            raise KubeError(f"{verb} lease", 503, "injected")

    def _stored(self) -> client.V1Lease:
        assert self.lease is not None
        return copy.deepcopy(self.lease)

    def read_lease(
        self, namespace: str, name: str, timeout: float | None = None
    ) -> client.V1Lease | None:
        self._request("read", timeout)
        return None if self.lease is None else self._stored()

    def create_lease(
        self, namespace: str, lease: client.V1Lease, timeout: float | None = None
    ) -> None:
        self._request("create", timeout)
        self.version += 1
        lease.metadata.resource_version = str(self.version)
        self.lease = copy.deepcopy(lease)

    def replace_lease(
        self, namespace: str, lease: client.V1Lease, timeout: float | None = None
    ) -> client.V1Lease:
        self._request("replace", timeout)
        if self.lease is None:
            raise NotFound("replace lease", 404, "gone")
        if lease.metadata.resource_version != self.lease.metadata.resource_version:
            raise Conflict("replace lease", 409, "changed")
        self.version += 1
        lease.metadata.resource_version = str(self.version)
        self.lease = copy.deepcopy(lease)
        return self._stored()


def _elector(store: LeaseStore, identity: str = "a", **timing: Any) -> LeaseElector:
    return LeaseElector(store, "ns", "lease", identity, **timing)  # type: ignore[arg-type]


def test_the_holder_renews_in_one_request_and_reads_again_after_a_conflict() -> None:
    store = LeaseStore()
    a = _elector(store)
    assert a.try_acquire_or_renew()  # created
    assert a.try_acquire_or_renew()  # read + replace
    store.calls.clear()
    assert a.try_acquire_or_renew()
    assert store.calls == ["replace"]
    # Someone else wrote the Lease (here: bumped its version): the one request is refused,
    # the same attempt reads it again and renews from what it read.
    assert store.lease is not None
    store.version += 1
    store.lease.metadata.resource_version = str(store.version)
    store.calls.clear()
    assert a.try_acquire_or_renew()
    assert store.calls == ["replace", "read", "replace"]
    # Every request of a try is bounded, so a hung one cannot hold the renewal to the deadline.
    assert store.timeouts
    assert set(store.timeouts) == {a.timeout}


def test_a_failed_renewal_keeps_the_one_request_path() -> None:
    store = LeaseStore()
    a = _elector(store)
    assert a.try_acquire_or_renew()
    assert a.try_acquire_or_renew()
    store.fail = iter([True])  # the next request (the one-request renewal) fails with a 503
    store.calls.clear()
    assert a.try_acquire_or_renew()  # read and renewed in the same attempt
    assert a.try_acquire_or_renew()
    assert store.calls == ["replace", "read", "replace", "replace"]


def test_a_stale_holder_never_overwrites_a_new_holder() -> None:
    store = LeaseStore()
    a, b = _elector(store, "a"), _elector(store, "b")
    assert a.try_acquire_or_renew()
    assert a.try_acquire_or_renew()
    assert b.try_acquire_or_renew() is False  # first sight of the record
    b._observed_at -= b.duration + 1  # as if `a` had stopped renewing a lease duration ago
    assert b.try_acquire_or_renew()
    assert store.lease is not None
    assert store.lease.spec.holder_identity == "b"
    assert a.try_acquire_or_renew() is False  # its copy is stale and b's record is fresh
    assert store.lease.spec.holder_identity == "b"


def test_a_failed_renewal_is_retried_before_the_deadline() -> None:
    store = LeaseStore()
    a = _elector(store, renew=0.2, retry=0.01, deadline=0.3)
    assert a.try_acquire_or_renew()
    assert a.try_acquire_or_renew()
    # The next eight requests fail: with a retry every 0.01 s the holder gets through well
    # before the 0.3 s deadline; with one try per `renew` (0.2 s) it would not.
    store.fail = iter([True] * 8)
    before = store.version
    lost = asyncio.Event()

    async def run() -> None:
        keeper = asyncio.ensure_future(a.keep(lost))
        while store.version == before and not lost.is_set():
            await asyncio.sleep(0.01)
        keeper.cancel()

    asyncio.run(run())  # ends on a renewal or on the lost lease (the deadline)
    assert not lost.is_set()
    assert store.version > before  # renewed once the failures passed
    assert list(store.fail) == []  # all eight failed requests were retried through


def test_the_lease_is_lost_when_no_renewal_gets_through_by_the_deadline() -> None:
    store = LeaseStore()
    a = _elector(store, renew=0.02, retry=0.01, deadline=0.05)
    assert a.try_acquire_or_renew()
    store.fail = iter([True] * 1000)
    lost = asyncio.Event()

    async def run() -> None:
        await a.keep(lost)  # returns once the deadline passed without a renewal

    asyncio.run(run())
    assert lost.is_set()

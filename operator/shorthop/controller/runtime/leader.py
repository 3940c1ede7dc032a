"""One active operator among several replicas: leader election on a coordination.k8s.io Lease.

The standby keeps trying; it takes the lease only when the record it last saw has not changed
for ``duration`` seconds of its *own* clock (client-go's approach, robust to clock skew between
pods). The leader renews every ``renew`` seconds and gives up (stops the operator) when it has
not renewed for ``deadline`` seconds, which is shorter than ``duration``, so two instances are
never active together. Updates use the Lease's resourceVersion (optimistic concurrency).

The leader renews every ``renew`` seconds (2 by default: client-go's retry period), so the whole
deadline is covered by tries, not only its end; a failed renewal is retried every ``retry``
seconds until the deadline, and every request of a try is bounded by ``timeout`` so a slow or
hung answer cannot eat the window (with a 5 s interval and unbounded requests, an API server that
failed a fifth of its requests still made the leader step down: chaos/test_apiserver.py). The
holder renews the Lease as it last wrote it (one request; its resourceVersion proves nobody
changed it since) and reads it again only when that fails.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kubernetes import client

from shorthop.controller.kube import Kube
from shorthop.errors import AlreadyExists, Conflict, KubeError

log = logging.getLogger("shorthop.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class LeaseElector:
    kube: Kube
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew: float = 2.0
    deadline: float = 10.0
    retry: float = 1.0
    timeout: float = 3.0  # per request: a try that hangs ends in time for the next ones

    def __post_init__(self) -> None:
        self._observed: tuple[str | None, str | None] = (None, None)
        self._observed_at = time.monotonic()
        self._last_renew = 0.0
        self._held: client.V1Lease | None = None  # the Lease as this holder last wrote it
        # A thread of its own: renewing must not wait behind reconciles for a shared executor.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shorthop-lease")

    async def _renew_in_thread(self) -> bool:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._thread, self.try_acquire_or_renew
            )
        except OSError as exc:  # the API server is unreachable
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this instance holds the lease afterwards."""
        if self._held is not None and self._renew_held():
            return True
        now = _now()
        try:
            lease = self.kube.read_lease(self.namespace, self.name, self.timeout)
        except KubeError as exc:
            log.warning("reading lease %s/%s failed: %s", self.namespace, self.name, exc)
            return False
        if lease is None:
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=int(self.duration),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                self.kube.create_lease(self.namespace, body, self.timeout)
            except KubeError as exc:
                if not isinstance(exc, AlreadyExists):  # another instance was first: normal
                    log.warning(
                        "there is no lease %s/%s and creating it failed (%s); the Helm chart "
                        "creates it: `helm upgrade` the release to restore it",
                        self.namespace,
                        self.name,
                        exc,
                    )
                return False
            self._last_renew = time.monotonic()
            log.info(
                "%s took the lease %s/%s (created it)", self.identity, self.namespace, self.name
            )
            return True
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        record = (holder, str(spec.renew_time))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        mine = holder == self.identity
        expired = not holder or time.monotonic() - self._observed_at > self.duration
        if not mine:
            self._held = None
        if not mine and not expired:
            return False
        if not mine:
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.acquire_time = now
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.duration)
        lease.spec = spec
        try:
            self._held = self.kube.replace_lease(self.namespace, lease, self.timeout)
        except KubeError as exc:
            log.info("lease update lost a race (%s)", exc.status)
            return False
        self._last_renew = time.monotonic()
        if not mine:
            log.info(
                "%s took the lease %s/%s (%s)",
                self.identity,
                self.namespace,
                self.name,
                f"{holder} stopped renewing it" if holder else "it was free",
            )
        return True

    def _renew_held(self) -> bool:
        """Renew the Lease as last written, in one request. A conflict (it changed since)
        forgets the copy; any other failure keeps it: the Lease changed only if that write went
        through unanswered, and then the next write is refused as a conflict."""
        held = self._held
        if held is None or held.spec is None:
            return False
        held.spec.renew_time = _now()
        try:
            self._held = self.kube.replace_lease(self.namespace, held, self.timeout)
        except Conflict:
            self._held = None
            return False
        except KubeError:
            return False
        self._last_renew = time.monotonic()
        return True

    async def acquire(self) -> None:
        """Wait until this instance leads."""
        while not await self._renew_in_thread():
            await asyncio.sleep(self.renew)

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew until renewing fails for ``deadline`` seconds; then set ``lost``."""
        wait = self.renew
        while not lost.is_set():
            await asyncio.sleep(wait)
            if await self._renew_in_thread():
                wait = self.renew
                continue
            wait = min(self.retry, self.renew)
            if time.monotonic() - self._last_renew > self.deadline:
                log.warning(
                    "%s lost the lease %s/%s: could not renew it for %.0fs; stepping down",
                    self.identity,
                    self.namespace,
                    self.name,
                    self.deadline,
                )
                lost.set()

    def release(self) -> None:
        """Hand the lease back on a clean shutdown so a standby takes over at once."""
        try:
            lease = self.kube.read_lease(self.namespace, self.name)
            if lease is not None and lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self._held = None
                self.kube.replace_lease(self.namespace, lease)
                log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release the lease: %s", exc)

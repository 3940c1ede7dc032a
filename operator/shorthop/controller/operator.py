"""The running operator: the runtime's informers and work queue, the reconciler and kopf, wired.

kopf watches InferenceDeployments (in the configured namespaces, or all) and hands every event to
the work queue (:mod:`~shorthop.controller.runtime` says why the rest of the runtime is written
beside kopf). Nodes and pods are list-watched cluster-wide by two informer threads (foreign GPU
pods in any namespace take capacity) that feed :class:`~shorthop.controller.live.LiveCluster` and
wake the deployments an event concerns. Where the server serves ``resource.k8s.io/v1`` (asked of
its discovery at start) and the ``dra`` setting allows it, ResourceSlices, ResourceClaims and
DeviceClasses are list-watched too, and pods on DRA nodes are bound through
:class:`~shorthop.controller.dra.ClaimBinder`. A few workers drain the queue (a key is never
reconciled twice at once); planning is serialised by a lock and the plan's GPUs are assumed
before it is released, so placements never race one another, while API calls run in parallel.
Handlers are registered on the :class:`kopf.OperatorRegistry` that :meth:`Runtime.registry`
returns (tests build their own).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client

from shorthop import errors
from shorthop.api import models
from shorthop.controller import dra, fields
from shorthop.controller.faults import Faults
from shorthop.controller.kube import Kube
from shorthop.controller.live import LiveCluster, PodRecord
from shorthop.controller.reconcile import Outcome, Reconciler
from shorthop.controller.runtime import memory
from shorthop.controller.runtime.informer import Informer
from shorthop.controller.runtime.workqueue import WorkQueue
from shorthop.errors import KubeError
from shorthop.metrics import Metrics
from shorthop.settings import Settings

log = logging.getLogger("shorthop.operator")
RESYNC_SECONDS = 60.0
WORKERS = 16  # deployments reconciled at once; planning itself is serialised (see reconcile)
WAKE_DELAY = 1.0
POD_EVENT_COALESCE = 0.25  # seconds
# The cluster gauges (free and stranded GPUs) are refreshed after node and pod changes, at most
# once per this many seconds (a burst of events is one refresh), and at every resync.
METRICS_REFRESH_SECONDS = 1.0


def _pod_key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name')}"


def _changed(before: PodRecord | None, after: PodRecord) -> bool:
    """A pod change the owner's reconcile cares about (binding, phase, readiness, deletion)."""
    if before is None:
        return True
    return (before.node, before.phase, before.ready, before.deleting, before.uid) != (
        after.node,
        after.phase,
        after.ready,
        after.deleting,
        after.uid,
    )


def _intent(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a user can change on a deployment (everything but status and bookkeeping)."""
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        meta.get("uid"),
        meta.get("deletionTimestamp"),
        meta.get("labels"),
        meta.get("annotations"),
    )


class Runtime:
    """Everything the active instance runs; created once per process."""

    def __init__(self, settings: Settings, api: client.ApiClient, metrics: Metrics) -> None:
        self.settings = settings
        self.api = api
        self.metrics = metrics
        self.kube = Kube(api)
        self.live = LiveCluster(settings.topology.config(), driver=settings.dra.driver)
        faults = Faults.parse(settings.faults)
        self.binder = dra.ClaimBinder(
            self.kube, self.live, device_class=settings.dra.device_class, faults=faults
        )
        self.reconciler = Reconciler(
            self.kube,
            self.live,
            self.binder,
            metrics,
            scheduler_name=settings.scheduler_name,
            service_port=settings.service_port,
            faults=faults,
            claims=self.binder,
        )
        self.dra = False  # decided at start, from the server's discovery
        self.queue: WorkQueue[str] = WorkQueue()
        self._stop = threading.Event()
        self._informers: list[Informer] = []
        self._tasks: list[asyncio.Task[None]] = []
        # Set from the informer threads when a change may move the cluster gauges; the refresh
        # task clears it before it reads the cluster, so no change is missed.
        self._metrics_stale = threading.Event()
        self._metrics_wake: asyncio.Event | None = None
        self.synced = False
        # Reconciles block on API calls, so they run on threads of their own: asyncio's default
        # executor has cpu_count + 4 threads (6 on two cores), shared with kopf and the lease.
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="shorthop-reconcile")

    # -- feeds -----------------------------------------------------------------------------

    def _wake_unschedulable(self) -> None:
        for key in list(self.reconciler.unschedulable):
            self.queue.add_after(key, WAKE_DELAY)

    def _cluster_changed(self) -> None:
        """Ask for a refresh of the cluster gauges (cheap when one is already asked for)."""
        if self._metrics_stale.is_set() or self._metrics_wake is None:
            self._metrics_stale.set()
            return
        self._metrics_stale.set()
        self.queue.loop.call_soon_threadsafe(self._metrics_wake.set)

    def on_node(self, event: str | None, body: Mapping[str, Any]) -> None:
        change = self.live.apply_node(event, body)
        self._cluster_changed()
        if change.gone_or_unusable:
            for key in change.deployments:
                self.queue.add_threadsafe(key)
        if change.gained_capacity:
            self.queue.loop.call_soon_threadsafe(self._wake_unschedulable)

    def on_pod(self, event: str | None, body: Mapping[str, Any]) -> None:
        before = self.live.pod(_pod_key(body))
        record = self.live.apply_pod(event, body)
        if record.gpus:
            self._cluster_changed()
        if record.deployment and (event in (None, "ADDED", "DELETED") or _changed(before, record)):
            # Pod events come in bursts (a deployment's creates, binds, then each pod starting):
            # one visit a moment later sees them all, instead of one visit per event crowding
            # out new deployments in the queue.
            self.queue.add_after_threadsafe(record.deployment, POD_EVENT_COALESCE)
        if record.gpus and (event == "DELETED" or not record.active):
            self.queue.loop.call_soon_threadsafe(self._wake_unschedulable)
        elif (
            record.gpus
            and record.node
            and (before is None or before.node != record.node)
            and self.live.overcommitted(record.node) > 0
        ):
            # Another scheduler's bind raced ours onto this node: the deployments there must
            # see it now (their triage moves shorthop's newest pods away), not at the resync.
            for key in self.live.deployments_on(record.node) - {record.deployment}:
                self.queue.add_after_threadsafe(key, POD_EVENT_COALESCE)

    def on_slice(self, event: str | None, body: Mapping[str, Any]) -> None:
        for change in self.live.apply_slice(event, body):
            if change.gone_or_unusable:
                for key in change.deployments:
                    self.queue.add_threadsafe(key)
            if change.gained_capacity:
                self.queue.loop.call_soon_threadsafe(self._wake_unschedulable)

    def on_claim(self, event: str | None, body: Mapping[str, Any]) -> None:
        change = self.live.apply_claim(event, body)
        if change.freed:
            # Devices came free (a pod finished, a claim was deallocated): placements waiting
            # for GPUs may fit now; a claim of our own that lost its allocation is repaired.
            if change.deployment:
                self.queue.add_after_threadsafe(change.deployment, POD_EVENT_COALESCE)
            self.queue.loop.call_soon_threadsafe(self._wake_unschedulable)

    def on_device_class(self, event: str | None, body: Mapping[str, Any]) -> None:
        self.live.apply_device_class(event, body)

    def on_deployment(self, event: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        old = self.reconciler.deployments.get(key)
        if event == "DELETED":
            self.reconciler.deployments.pop(key, None)
        else:
            self.reconciler.deployments[key] = body
        # Our own status writes come back as events too; they need no new visit.
        if old is None or event == "DELETED" or _intent(old) != _intent(body):
            self.queue.add(key)
            self._cluster_changed()  # the smallest pod asked for decides what is stranded

    # -- tasks -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.queue.loop  # bind the queue to this loop before threads use it  # noqa: B018
        core = client.CoreV1Api(self.api)
        self._informers = [
            Informer("nodes", core.list_node, self.on_node, self._stop, codec=fields.NODE_CODEC),
            Informer(
                "pods",
                core.list_pod_for_all_namespaces,
                self.on_pod,
                self._stop,
                codec=fields.POD_CODEC,
                known=self.live.pod_keys,
            ),
        ]
        started = time.monotonic()
        self.dra = await asyncio.to_thread(self._dra_usable)
        if self.dra:
            resource = client.ResourceV1Api(self.api)
            self._informers += [
                Informer("resourceslices", resource.list_resource_slice, self.on_slice, self._stop),
                Informer(
                    "resourceclaims",
                    resource.list_resource_claim_for_all_namespaces,
                    self.on_claim,
                    self._stop,
                    codec=fields.CLAIM_CODEC,
                ),
                Informer("deviceclasses", resource.list_device_class, self.on_device_class,
                         self._stop),
            ]  # fmt: skip
        for informer in self._informers:
            informer.start()
        for informer in self._informers:
            await asyncio.to_thread(informer.synced.wait)
        self.live.synced.set()
        self.synced = True
        memory.trim()  # the parsed list pages are garbage now
        log.info(
            "caches synced in %.2fs: %d nodes in the topology, %d pods (%d list calls)",
            time.monotonic() - started,
            len(self.live.snapshot().index.row_of),
            self.live.pod_count(),
            sum(i.lists for i in self._informers),
        )
        self._metrics_wake = asyncio.Event()
        self._metrics_stale.set()
        self._metrics_wake.set()
        self._tasks = [asyncio.create_task(self._work()) for _ in range(WORKERS)]
        self._tasks.append(asyncio.create_task(self._resync()))
        self._tasks.append(asyncio.create_task(self._refresh_metrics()))

    def _dra_usable(self) -> bool:
        """Whether to use Dynamic Resource Allocation: allowed by the settings, served by the
        server (``resource.k8s.io/v1`` with the resources shorthop uses, from its discovery),
        and readable by this operator. Otherwise only device-plugin nodes are used: nodes whose
        GPUs are published only in ResourceSlices then offer no GPU (safe: none is handed out)."""
        if not self.settings.dra.enabled:
            log.info("Dynamic Resource Allocation is off (dra.enabled is false)")
            return False
        try:
            served = self.kube.dra_resources()
        except errors.KubeError as exc:
            log.warning("cannot discover resource.k8s.io/v1 (%s); DRA nodes are not used", exc)
            return False
        needed = {"resourceslices", "resourceclaims", "resourceclaims/status", "deviceclasses"}
        if served is None or not needed <= served:
            missing = sorted(needed - (served or set()))
            log.info(
                "the API server does not serve %s of resource.k8s.io/v1; DRA nodes are not used",
                ", ".join(missing),
            )
            return False
        resource = client.ResourceV1Api(self.api)
        for what, call in (
            ("resourceslices", resource.list_resource_slice),
            ("resourceclaims", resource.list_resource_claim_for_all_namespaces),
            ("deviceclasses", resource.list_device_class),
        ):
            try:
                call(limit=1, _preload_content=False).data  # noqa: B018
            except client.ApiException as exc:
                log.warning(
                    "may not list %s (HTTP %s); DRA nodes are not used: grant the chart's DRA "
                    "rules (dra.enabled) or set dra.enabled to false",
                    what,
                    exc.status,
                )
                return False
        log.info(
            "Dynamic Resource Allocation on: GPUs of driver %s, claims of class %s",
            self.settings.dra.driver,
            self.settings.dra.device_class,
        )
        return True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for informer in self._informers:
            informer.stop()
        self.queue.close()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self.reconciler.reconcile, key
                )
            except Exception:
                log.exception("reconcile %s failed", key)
                self.metrics.errors.labels(reason="exception").inc()
                outcome = Outcome(retry=True)
            finally:
                self.queue.done(key)
            if outcome.retry:
                self.queue.backoff(key)
            else:
                self.queue.forget(key)
                if outcome.after is not None:
                    self.queue.add_after(key, outcome.after)

    async def _refresh_metrics(self) -> None:
        """Refresh the cluster gauges after changes, at most once per
        ``METRICS_REFRESH_SECONDS``: a pod deleted shows in the free-GPU gauge a moment later,
        not at the next resync."""
        assert self._metrics_wake is not None
        while True:
            await self._metrics_wake.wait()
            self._metrics_wake.clear()
            if self._metrics_stale.is_set():
                self._metrics_stale.clear()
                await asyncio.to_thread(self.reconciler.publish_cluster_metrics)
            await asyncio.sleep(METRICS_REFRESH_SECONDS)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for key in list(self.reconciler.deployments):
                self.queue.add(key)
            await asyncio.to_thread(self.reconciler.publish_cluster_metrics)

    async def wait_for_api(self, namespaces: tuple[str, ...] | list[str]) -> None:
        """Return once the InferenceDeployment resource answers a list from the watch cache.

        Just after its CRD is created or changed the API server answers 404, then 429
        "storage is (re)initializing" for a moment; kopf, started then, retries but logs every
        attempt at ERROR. Waiting here keeps a normal start free of errors."""
        namespace = namespaces[0] if namespaces else None
        delay, said = 0.2, ""
        while True:
            try:
                await asyncio.to_thread(self.kube.probe_deployments, namespace)
            except KubeError as exc:
                if not exc.retriable and exc.status != 404:
                    raise
                level = logging.WARNING if exc.status == 404 else logging.INFO
                if said != type(exc).__name__:
                    said = type(exc).__name__
                    hint = " (is the CRD installed?)" if exc.status == 404 else ""
                    log.log(level, "waiting for the %s API%s: %s", models.KIND, hint, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if said:
                log.info("the %s API answers; starting", models.KIND)
            return

    # -- kopf ------------------------------------------------------------------------------

    def registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        configuration = self.api.configuration

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return connection_info(configuration)

        @kopf.on.startup(registry=registry)
        async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.peering.standalone = True
            settings.posting.enabled = False
            settings.scanning.disabled = True
            settings.watching.server_timeout = 300
            settings.watching.client_timeout = 330
            settings.persistence.diffbase_storage = NoDiffBase()
            await self.start()

        @kopf.on.cleanup(registry=registry)
        async def cleanup(**_: Any) -> None:
            await self.stop()

        @kopf.on.event(models.GROUP, models.VERSION, models.PLURAL, registry=registry)
        def deployment_event(event: Mapping[str, Any], **_: Any) -> None:
            self.on_deployment(event.get("type"), dict(event.get("object") or {}))

        return registry


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base for a registry with only an event handler: nothing to diff against.

    kopf builds an object's essence (a deep copy, status stripped) and diffs it with the stored
    one on every event, for change handlers; shorthop has none (its informer-style handler sees
    every event, and its own status writes come back as events too), so the copy was pure cost:
    about 3% of the operator's CPU in the scale soak."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the API client's: the same server, CA, client certificate and
    bearer token. The token is read through the client so that its refresh hook runs (projected
    ServiceAccount tokens rotate); kopf logs in again whenever the API server answers 401."""
    header = (configuration.auth_settings().get("BearerToken") or {}).get("value") or ""
    scheme, _, token = str(header).partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        token=(token if scheme.lower() == "bearer" else header).strip() or None,
    )

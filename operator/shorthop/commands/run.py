"""``shorthop run``: start the operator (leader election, kopf, health and metrics endpoints)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from shorthop import metrics as metrics_module
from shorthop import settings as settings_module


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the operator")
    p.add_argument("--config", help="settings file (YAML; the chart mounts its ConfigMap here)")
    p.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--preset", help="topology label preset (plain, topograph, aws, gke, oci)")
    p.add_argument("--scheduler-name", help="schedulerName set on the pods shorthop creates")
    p.add_argument("--namespaces", help="comma-separated namespaces to watch (default: all)")
    p.add_argument("--metrics-port", type=int, help="port of /metrics (0 disables it)")
    p.add_argument("--health-port", type=int, help="port of /healthz and /readyz (0 disables it)")
    p.add_argument("--lease-name", help="Lease used for leader election")
    p.add_argument("--lease-namespace", help="namespace of the Lease (default: $POD_NAMESPACE)")
    p.add_argument("--identity", help="this instance's name in the Lease (default: $POD_NAME)")
    p.add_argument("--log-format", choices=("json", "text"))
    p.set_defaults(handler=run)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class QuietStorageInit(logging.Filter):
    """kopf logs each retry of a request at ERROR, including the API server's transient 429
    "storage is (re)initializing" right after the CRD is created or changed; that one is
    expected and retried, so it is logged at INFO. (``run`` also waits for the storage before
    starting kopf; this covers a CRD changed while the operator runs.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name.startswith("kopf")
            and record.levelno >= logging.ERROR
            and "storage is (re)initializing" in record.getMessage()
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(QuietStorageInit())
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    overrides = {
        ("topology", "preset"): args.preset,
        ("schedulerName",): args.scheduler_name,
        ("namespaces",): [n.strip() for n in args.namespaces.split(",") if n.strip()]
        if args.namespaces
        else None,
        ("metricsPort",): args.metrics_port,
        ("healthPort",): args.health_port,
        ("leaseName",): args.lease_name,
        ("leaseNamespace",): args.lease_namespace,
        ("identity",): args.identity,
        ("logFormat",): args.log_format,
    }
    settings = settings_module.load(config_file=args.config, overrides=overrides)
    _logging(settings.log_format)
    from shorthop.controller.runtime import memory

    memory.limit_arenas()  # before any thread starts: see runtime/memory.py
    return asyncio.run(main(settings, kubeconfig=args.kubeconfig))


async def main(settings: settings_module.Settings, *, kubeconfig: str | None = None) -> int:
    import kopf

    from shorthop.controller import kube, operator
    from shorthop.controller.runtime import health, leader

    log = logging.getLogger("shorthop")
    api = kube.api_client(kubeconfig)
    metrics = metrics_module.create()
    runtime = operator.Runtime(settings, api, metrics)
    metrics_module.serve(metrics, settings.metrics_port)
    # The lease has a client of its own: its requests never wait behind the operator's in the
    # pool, and urllib3 does not retry them (a hung request retried three times would outlast
    # the renew deadline; the elector retries every second itself, each request bounded).
    lease_api = kube.api_client(kubeconfig, qps_threads=1, retries=0)
    elector = leader.LeaseElector(
        kube.Kube(lease_api),
        settings.lease_namespace,
        settings.lease_name,
        settings.identity,
        duration=settings.lease_duration_seconds,
        renew=settings.renew_interval_seconds,
        deadline=settings.lease_duration_seconds * 2 / 3,
    )
    leading = asyncio.Event()
    health_runner = None
    if settings.health_port:
        health_runner = await health.serve(
            settings.health_port, lambda: not leading.is_set() or runtime.synced
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    lost = asyncio.Event()
    log.info(
        "%s waiting to lead (lease %s/%s)",
        settings.identity,
        settings.lease_namespace,
        settings.lease_name,
    )
    acquire = asyncio.create_task(elector.acquire())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        acquire.cancel()
        return 0
    leading.set()
    metrics.leader.set(1)
    keeper = asyncio.create_task(elector.keep(lost))
    kopf_stop = asyncio.Event()

    async def relay() -> None:
        await asyncio.wait(
            {asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        kopf_stop.set()

    relay_task = asyncio.create_task(relay())
    namespaces = settings.namespaces
    try:
        await runtime.wait_for_api(namespaces)
        await kopf.operator(
            registry=runtime.registry(),
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces or (),
            stop_flag=kopf_stop,
        )
    finally:
        keeper.cancel()
        relay_task.cancel()
        metrics.leader.set(0)
        if not lost.is_set():
            await asyncio.to_thread(elector.release)
        if health_runner is not None:
            await health_runner.cleanup()
    if lost.is_set():
        log.warning("lost the lease; exiting so that the pod restarts as a standby")
        return 1
    log.info("stopped")
    return 0

"""``shorthop node-agent``: publish this node's GPU topology on its Node (see ``shorthop.agent``).

The chart's DaemonSet runs it with ``--node`` from the downward API (``spec.nodeName``). With
``--once --dry-run`` it reads the topology, prints the annotations it would write and exits,
touching no API (no credentials needed). ``--fake-nvml RECORDING.json`` (hidden; tests only)
replaces NVML by ``agent.fakenvml`` and lays out the recording's sysfs in a temporary directory;
it is refused inside a pod (``KUBERNETES_SERVICE_HOST`` set), so a DaemonSet cannot enable it,
and whatever it publishes says ``"source": "fake-nvml"``, which the operator reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any

from shorthop.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "node-agent",
        help="publish this node's GPU topology (NVML, else nvidia-smi) as Node annotations",
        description=(
            "Read the GPUs, NVLinks, PCIe layout, NICs and NVLink fabric of this node through "
            "NVML (nvidia-ml-py; else `nvidia-smi topo -m`) and annotate the node with them "
            "when they change. Runs until stopped; a failed round is retried with backoff."
        ),
    )
    p.add_argument("--node", default=None, help="this node's name (default: $NODE_NAME)")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--once", action="store_true", help="one round, then exit (status 0 or 1)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the annotations instead of writing them"
    )
    p.add_argument("--interval", type=float, default=300.0, help="seconds between rounds (300)")
    p.add_argument(
        "--backoff-max", type=float, default=300.0, help="longest wait after failures (300)"
    )
    p.add_argument("--sysfs-root", default="/sys", help="where sysfs is mounted (/sys)")
    p.add_argument("--nvidia-smi", default="nvidia-smi", help="the fallback command")
    p.add_argument("--health-port", type=int, default=0, help="/healthz, /readyz port (0: off)")
    p.add_argument("--events-namespace", default="default", help="namespace of its Events")
    p.add_argument("--log-format", choices=("json", "text"), default="text")
    p.add_argument("--fake-nvml", help=argparse.SUPPRESS)
    p.set_defaults(handler=run, command="node-agent")


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _Json() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _check(args: argparse.Namespace) -> None:
    for flag, value in (("--interval", args.interval), ("--backoff-max", args.backoff_max)):
        if not value > 0:
            raise ConfigError(flag, f"must be a positive number of seconds, got {value}")
    if not 0 <= args.health_port <= 65535:
        raise ConfigError("--health-port", f"must be 0..65535, got {args.health_port}")
    if args.fake_nvml and os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise ConfigError("--fake-nvml", "is a test option and is refused inside a pod; remove it")


def run(args: argparse.Namespace) -> int:
    from shorthop.agent import fakenvml, probes, publisher, reader
    from shorthop.agent.sysfs import Sysfs

    _check(args)
    node = args.node or os.environ.get("NODE_NAME") or ""
    if not node and not args.dry_run:
        raise ConfigError("--node", "is required (or set NODE_NAME from spec.nodeName)")
    _logging(args.log_format)
    log = logging.getLogger("shorthop.agent")
    scratch: str | None = None
    sysfs_root = args.sysfs_root
    source = "nvml"
    nvml: Any
    if args.fake_nvml:
        log.warning("using the FAKE NVML recording %s (test option)", args.fake_nvml)
        try:
            nvml = fakenvml.load(args.fake_nvml)
        except (OSError, ValueError) as exc:
            raise ConfigError("--fake-nvml", f"cannot read {args.fake_nvml}: {exc}") from None
        source = "fake-nvml"
        if nvml.recording.get("sysfs") and args.sysfs_root == "/sys":
            scratch = tempfile.mkdtemp(prefix="shorthop-fake-sysfs-")
            sysfs_root = str(fakenvml.write_sysfs(nvml.recording, scratch))
    else:
        try:
            nvml = reader.load_pynvml()
        except ImportError:
            nvml = None
            log.warning(
                "nvidia-ml-py is not installed; reading `%s topo -m` instead", args.nvidia_smi
            )
    sysfs = Sysfs(sysfs_root)

    def read() -> reader.Result:
        return reader.read(nvml, sysfs, smi_command=args.nvidia_smi, source=source)

    try:
        if args.dry_run:
            return _dry_run(node, read)
        from shorthop.agent import kube

        api = kube.NodeClient(
            kube.api_client(args.kubeconfig), node, events_namespace=args.events_namespace
        )
        timing = publisher.Timing(interval_s=args.interval, backoff_max_s=args.backoff_max)
        agent = publisher.Agent(node, read, api, timing=timing)
        if args.once:
            return 0 if agent.round() else 1
        server = probes.serve(args.health_port, agent.health) if args.health_port else None
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info("node agent for %s started (every %.0fs)", node, args.interval)
        agent.run(stop)
        if server is not None:
            server.shutdown()
        return 0
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _dry_run(node: str, read: Any) -> int:
    from shorthop.agent import publisher, reader

    try:
        result = read()
    except reader.ReadError as exc:
        print(f"shorthop node-agent: cannot read the GPU topology: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout
    out.write(f"# node {node or '(not given)'}: {publisher.summary(result)}\n")
    for note in result.reading.notes:
        out.write(f"# note: {note}\n")
    for key, value in publisher.desired(result).items():
        out.write(f"# annotation {key}:\n")
        structured = value.lstrip().startswith("{")
        out.write(json.dumps(json.loads(value), indent=1) + "\n" if structured else value)
    return 0

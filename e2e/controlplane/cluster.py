"""Start and stop a local Kubernetes control plane as processes on loopback.

etcd, kube-apiserver (TLS, RBAC), kube-controller-manager (garbage collection, service accounts,
node lifecycle), kube-scheduler and kwok (fake nodes and pods) run from the binaries that
``build`` put in the cache, for the Kubernetes release ``components.selected()`` names (or the
one given). Everything a running cluster needs to be found and stopped again lives in its state
directory: certificates, the admin kubeconfig, logs, data and ``pids.json``. Processes are stopped
by the pids recorded there, never by name. Processes started against the cluster by others (the
operator ``make demo`` runs) are recorded in ``extra-pids.json`` and stopped first.

The API server writes an audit log (``logs/audit.log``, ``commands.AUDIT_POLICY``) of the requests
made with ServiceAccount credentials outside kube-system: what an operator running as the
chart's ServiceAccount actually calls, which the chart's RBAC tests compare with what it grants.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.controlplane import build, certs, commands, components

FAKE_NODE_ANNOTATION = commands.FAKE_NODE_ANNOTATION
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# The ports.json entries each component listens on.
_PORTS = {
    "etcd": ("etcd", "etcd-peer"),
    "kube-apiserver": ("apiserver",),
    "kube-controller-manager": ("controller-manager",),
    "kube-scheduler": ("scheduler",),
    "kwok": ("kwok",),
}


class ClusterError(RuntimeError):
    """The local control plane could not be started, or a component died."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _say(message: str) -> None:
    print(f"[controlplane] {message}", flush=True)


@dataclass
class LocalCluster:
    """A control plane whose state lives in ``state_dir`` (created by :meth:`up`)."""

    state_dir: Path

    # The Kubernetes release whose binaries run (default: SHORTHOP_KUBERNETES_VERSION's).
    release: components.Release = field(default_factory=components.selected)

    # When True, every component gets SIGTERM if the Python process that started it dies (test
    # sessions); `make cluster-up` leaves it False so the cluster outlives the command.
    tie_to_parent: bool = False

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user in ``system:masters``)."""
        return self.state_dir / "kubeconfig"

    def kubeconfig_for(self, stem: str) -> Path:
        return self.kubeconfig if stem == "admin" else self.state_dir / f"{stem}.kubeconfig"

    @property
    def _pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    @property
    def _extra_pids_file(self) -> Path:
        return self.state_dir / "extra-pids.json"

    @property
    def _ports_file(self) -> Path:
        return self.state_dir / "ports.json"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines; see ``commands.AUDIT_POLICY``)."""
        return commands.Paths(self.state_dir, {}).audit_log

    # -- bookkeeping -------------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        if not self._pids_file.exists():
            return {}
        data: dict[str, int] = json.loads(self._pids_file.read_text())
        return data

    def _record_pid(self, name: str, pid: int) -> None:
        pids = self.pids()
        pids[name] = pid
        self._pids_file.write_text(json.dumps(pids, indent=2))

    def extra_pids(self) -> dict[str, int]:
        """Processes that use this cluster and stop with it (see :meth:`record_extra_pid`)."""
        return {name: entry["pid"] for name, entry in self._extras().items()}

    def _extras(self) -> dict[str, dict[str, Any]]:
        if not self._extra_pids_file.exists():
            return {}
        data: dict[str, dict[str, Any]] = json.loads(self._extra_pids_file.read_text())
        return data

    def record_extra_pid(self, name: str, pid: int) -> None:
        """Remember a process started against this cluster so that :meth:`down` stops it too.
        Its start time is recorded with it, so a pid reused by another process is left alone."""
        extras = self._extras()
        extras[name] = {"pid": pid, "started": _start_time(pid)}
        self._extra_pids_file.write_text(json.dumps(extras, indent=2))

    def stop_extra(self, name: str) -> None:
        """Stop one recorded extra process (by its pid) and forget it."""
        extras = self._extras()
        entry = extras.pop(name, None)
        if entry is not None:
            _terminate_if_same(entry)
            self._extra_pids_file.write_text(json.dumps(extras, indent=2))

    def ports(self) -> dict[str, int]:
        data: dict[str, int] = json.loads(self._ports_file.read_text())
        return data

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports()['apiserver']}"

    def running(self) -> dict[str, bool]:
        return {name: _alive(pid) for name, pid in self.pids().items()}

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self, *, timeout: float = 180.0) -> None:
        """Build what is missing, then start every component and wait until the API is usable."""
        if any(self.running().values()):
            raise ClusterError(
                f"a cluster from {self.state_dir} is already running; run 'make cluster-down' first"
            )
        build.ensure_built(self.release)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        commands.write_configs(commands.Paths(self.state_dir, {}))
        self._pids_file.unlink(missing_ok=True)
        stale = self.state_dir / "etcd"
        if stale.exists():
            # Data from an earlier run was signed with keys regenerated below; start clean.
            _say(f"removing stale etcd data from an earlier run ({stale})")
            shutil.rmtree(stale)
        certs.generate(self.pki)
        ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "apiserver": free_port(),
            "controller-manager": free_port(),
            "scheduler": free_port(),
            "kwok": free_port(),
        }
        self._ports_file.write_text(json.dumps(ports, indent=2))
        for stem in certs.CLIENT_USERS:
            self._write_kubeconfig(stem)
        started = time.monotonic()
        try:
            for name in ORDER:
                self.start_component(name)
                if name == "etcd":
                    self._wait_etcd(timeout)
                elif name == "kube-apiserver":
                    self._wait_apiserver(timeout)
            self._wait_default_service_account(timeout)
        except BaseException:
            self.down()
            raise
        _say(
            f"Kubernetes {self.release.kubernetes} up in {time.monotonic() - started:.0f}s; "
            f"kubeconfig: {self.kubeconfig}"
        )

    def down(self) -> None:
        """Stop every recorded process: the extra ones (``extra-pids.json``) first, then the
        components in reverse start order; SIGTERM, then SIGKILL after 10 s."""
        for entry in self._extras().values():
            _terminate_if_same(entry)
        self._extra_pids_file.unlink(missing_ok=True)
        pids = self.pids()
        for name in reversed(ORDER):
            if name in pids:
                _terminate(pids[name])
        self._pids_file.unlink(missing_ok=True)

    def stop_component(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        pid = self.pids().get(name)
        if pid is not None:
            _terminate(pid, first=sig)

    def restart(self, *names: str, sig: int = signal.SIGTERM, timeout: float = 120.0) -> float:
        """Restart some running components, for chaos tests: stop each by its recorded pid
        (``sig``, then SIGKILL after 10 s; in reverse start order), start them again with the same
        flags, ports and data directories (in start order), and wait until they serve again
        (etcd: /health; kube-apiserver, or etcd behind it: the API server's /readyz; the others:
        alive). Returns the seconds from the first signal until then: the outage clients saw.
        Call it from the thread that started the cluster: with ``tie_to_parent``, a component
        gets SIGTERM when the thread that started it exits."""
        unknown = set(names) - set(ORDER)
        if unknown or not names:
            raise KeyError(f"no such components: {sorted(unknown) or 'none given'}")
        started = time.monotonic()
        for name in reversed(ORDER):
            if name in names:
                self.stop_component(name, sig=sig)
        for name in ORDER:
            if name in names:
                self._start_again(name, timeout)
        if "etcd" in names and "kube-apiserver" not in names:
            self._wait_apiserver(timeout)
        return time.monotonic() - started

    def _start_again(self, name: str, timeout: float) -> None:
        """Start a stopped component on its old ports and wait until it serves. The ports are in
        the ephemeral range, so while it was down an outgoing connection may have taken one (even
        a client's retry to that very port: TCP connects a socket to itself when nothing listens
        and the source port it drew is the destination port). Wait for the ports to be free, and
        start again if one was taken in between."""
        deadline = time.monotonic() + timeout
        ports = [self.ports()[port] for port in _PORTS[name]]
        while True:
            while not all(map(_bindable, ports)) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.start_component(name)
            left = max(1.0, deadline - time.monotonic())
            try:
                if name == "etcd":
                    self._wait_etcd(left)
                elif name == "kube-apiserver":
                    self._wait_apiserver(left)
                else:
                    time.sleep(1.0)  # long enough to fail on a taken port
                    self._check_alive(name)
                return
            except ClusterError as exc:
                if "address already in use" not in str(exc) or time.monotonic() >= deadline:
                    raise
                _say(f"{name}: a port was taken while it was down; starting it again")

    def start_component(self, name: str) -> int:
        """Start one component (also used to restart one after :meth:`stop_component`)."""
        command = self._command(name)
        log = (self.state_dir / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.state_dir,
            # Only prctl() runs between fork and exec; no locks are taken there.
            preexec_fn=_die_with_parent if self.tie_to_parent else None,  # noqa: PLW1509
        )
        log.close()
        self._record_pid(name, proc.pid)
        _say(f"started {name} (pid {proc.pid})")
        return proc.pid

    def _command(self, name: str) -> list[str]:
        binary = str(components.binary_path(name, self.release))
        return commands.command(name, binary, commands.Paths(self.state_dir, self.ports()))

    def _write_kubeconfig(self, stem: str) -> None:
        pki = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "shorthop-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": f"shorthop-{stem}",
                    "user": {
                        "client-certificate": str(pki / f"{stem}.crt"),
                        "client-key": str(pki / f"{stem}.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "shorthop-local",
                    "context": {"cluster": "shorthop-local", "user": f"shorthop-{stem}"},
                }
            ],
            "current-context": "shorthop-local",
        }
        # JSON is YAML; every kubeconfig reader accepts it.
        path = self.kubeconfig_for(stem)
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    # -- readiness ---------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def get(self, path: str, *, timeout: float = 5.0) -> Any:
        """GET an API path as the admin user; JSON decoded when it is JSON."""
        with urllib.request.urlopen(
            self.server + path, context=self.ssl_context(), timeout=timeout
        ) as response:
            body = response.read().decode()
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return body

    def _check_alive(self, name: str) -> None:
        pid = self.pids().get(name)
        if pid is None or not _alive(pid):
            log = self.state_dir / "logs" / f"{name}.log"
            tail = (
                "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                if log.exists()
                else ""
            )
            raise ClusterError(f"{name} exited during start-up; last log lines ({log}):\n{tail}")

    def _wait(self, what: str, probe: Any, timeout: float, component: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(component)
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError, KeyError):
                if probe():
                    return
            time.sleep(0.25)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")

    def _wait_etcd(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.ports()['etcd']}/health"

        def healthy() -> bool:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")

        self._wait("etcd /health", healthy, timeout, "etcd")

    def _wait_apiserver(self, timeout: float) -> None:
        self._wait(
            "kube-apiserver /readyz", lambda: self.get("/readyz") == "ok", timeout, "kube-apiserver"
        )

    def _wait_default_service_account(self, timeout: float) -> None:
        # Pods are refused until kube-controller-manager has made the namespace's default SA.
        self._wait(
            "the default ServiceAccount (kube-controller-manager)",
            lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default")["metadata"][
                "name"
            ],
            timeout,
            "kube-controller-manager",
        )


def _bindable(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` now (with SO_REUSEADDR, as Go's do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent exits (PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return stat.rpartition(")")[2].split()[19]


def _terminate_if_same(entry: dict[str, Any]) -> None:
    pid, started = int(entry["pid"]), entry.get("started")
    if started is not None and _start_time(pid) not in (None, started):
        return  # the pid now belongs to another process
    _terminate(pid)


def is_alive(pid: int) -> bool:
    """Whether a process with this pid runs (a zombie does not count)."""
    return _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    # Someone else's zombie (e.g. the demo's operator, whose parent has exited) has exited too.
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
    return True


def _terminate(pid: int, *, first: int = signal.SIGTERM, grace: float = 10.0) -> None:
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not _alive(pid):
            return
        time.sleep(0.1)

"""A fault-injecting HTTPS proxy in front of the API server, on loopback (stdlib only, threads).

It terminates TLS with a certificate of its own (a throw-away CA and a leaf for 127.0.0.1, see
:func:`serving_cert`), forwards every request to the real API server over TLS (one upstream
connection per client connection, HTTP/1.1 keep-alive both ways) and passes the response back;
chunked responses (watches) are relayed chunk by chunk as they arrive. Client certificates cannot
cross a TLS-terminating proxy, but a bearer token in ``Authorization`` does: clients use a token
kubeconfig (:func:`proxied_kubeconfig`).

A configurable share of requests (:class:`Faults`) meets one fault, picked by weight:

* ``429``: answered ``429 Too Many Requests`` with ``Retry-After`` (a Status body, as the API
  server's priority-and-fairness throttling answers), never forwarded;
* ``500`` / ``503``: answered with that Status, never forwarded;
* ``delay``: forwarded after a pause;
* ``reset``: the connection is reset (TCP RST) before the request is forwarded;
* ``lost-response``: forwarded, executed by the API server, then the connection is reset instead
  of the answer (the client cannot tell whether a create or a bind happened).

Watches (``?watch=true``) may meet the same faults when they start, and a share of them is cut
after a random time (the stream ends without its final chunk, as when a load balancer drops it).
Everything injected is counted (:meth:`FaultProxy.counts`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import ipaddress
import json
import random
import socket
import socketserver
import ssl
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import yaml

FAILURES = ("429", "500", "503", "reset", "lost-response")
KINDS = (*FAILURES, "delay")
# Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded; lengths are set by whoever writes.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
_STATUS = {
    429: ("Too Many Requests", "TooManyRequests", "too many requests, please try again later"),
    500: ("Internal Server Error", "InternalError", "an error on the server (injected)"),
    503: ("Service Unavailable", "ServiceUnavailable", "the server is currently unavailable"),
    502: ("Bad Gateway", "InternalError", "the proxy could not reach the API server"),
}


@dataclass(frozen=True)
class Faults:
    """What the proxy injects. ``share``: the fraction of requests that meet a fault, chosen by
    ``weights`` among :data:`KINDS`; ``watch_cut``: the fraction of watches cut after
    ``cut_after`` seconds (uniform)."""

    share: float = 0.0
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "429": 3.0,
            "500": 2.0,
            "503": 2.0,
            "reset": 2.0,
            "lost-response": 1.0,
            "delay": 2.0,
        }
    )
    delay: tuple[float, float] = (0.3, 2.0)
    retry_after: int = 1
    watch_cut: float = 0.0
    cut_after: tuple[float, float] = (1.0, 15.0)

    @classmethod
    def failing(cls, fraction: float, **kwargs: Any) -> Faults:
        """Faults under which ``fraction`` of the requests fail (the ``share`` that meets a fault
        is larger: some faults are delays)."""
        shape = cls(share=1.0, **kwargs)
        return cls(share=min(1.0, fraction / shape.failing_share), **kwargs)

    @property
    def failing_share(self) -> float:
        """The expected fraction of requests that fail (``delay`` only slows them down)."""
        total = sum(self.weights.values()) or 1.0
        return self.share * sum(self.weights.get(k, 0.0) for k in FAILURES) / total


def serving_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost signed by it, written to
    ``directory``; returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("shorthop-chaos-proxy-ca", "shorthop-chaos-proxy-ca", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    leaf = (
        builder("shorthop-chaos-proxy", "shorthop-chaos-proxy-ca", key)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "proxy-ca.crt", directory / "proxy.crt", directory / "proxy.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


def _current_cluster(config: dict[str, Any]) -> dict[str, Any]:
    contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
    wanted = contexts.get(config.get("current-context", ""), {}).get("cluster")
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
    cluster: dict[str, Any] = (
        clusters[wanted] if wanted in clusters else next(iter(clusters.values()))
    )
    return cluster


def upstream_of(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    """The API server URL of a kubeconfig's current context, and a TLS context that trusts its
    CA (no client certificate: the proxy forwards the client's bearer token)."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = _current_cluster(config)
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=str(cluster["certificate-authority"]))
    return str(cluster["server"]), context


def proxied_kubeconfig(kubeconfig: Path, proxy: FaultProxy, path: Path) -> Path:
    """A copy of a (token) kubeconfig that talks to ``proxy`` and trusts its CA."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = _current_cluster(config)
    for key in ("certificate-authority", "insecure-skip-tls-verify", "tls-server-name"):
        cluster.pop(key, None)
    cluster["server"] = proxy.url
    cluster["certificate-authority-data"] = base64.b64encode(proxy.ca_file.read_bytes()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def _status_body(code: int, retry_after: int | None = None) -> bytes:
    _, reason, message = _STATUS[code]
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if retry_after is not None:
        body["details"] = {"retryAfterSeconds": retry_after}
    return json.dumps(body).encode()


def _is_watch(path: str) -> bool:
    parsed = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(parsed.query)
    return query.get("watch", [""])[0].lower() in ("true", "1") or "/watch/" in parsed.path


class _Cut(Exception):
    """A watch stream was cut on purpose."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing ----------------------------------------------------------------------------

    def setup(self) -> None:
        self.connection = self.request
        raw = self.request
        self.request = self.connection = self.server.tls.wrap_socket(raw, server_side=True)
        self.server.track(self.connection, add=True)
        self._upstream: http.client.HTTPSConnection | None = None
        super().setup()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, add=False)
        with contextlib.suppress(OSError):
            self.connection.close()
        self._close_upstream()

    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, http.client.HTTPException):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _connect(self) -> http.client.HTTPSConnection:
        if self._upstream is None:
            self._upstream = http.client.HTTPSConnection(
                self.server.upstream_host,
                self.server.upstream_port,
                context=self.server.upstream_tls,
                timeout=None,
            )
        return self._upstream

    def _reset(self) -> None:
        """Abort the client connection with a TCP RST."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            socket.socket.close(self.connection)
        self.close_connection = True

    def _write_head(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _answer(self, code: int, retry_after: int | None = None) -> None:
        body = _status_body(code, retry_after)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        self._write_head(code, _STATUS[code][0], headers)
        self.wfile.write(body)

    # -- one request -------------------------------------------------------------------------

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._answer(502)  # no client of the API server sends chunked requests
            self.close_connection = True
            return
        watch = _is_watch(self.path)
        kind, cut_at = self.server.decide(watch)
        if kind in ("429", "500", "503"):
            self._answer(int(kind), self.server.faults.retry_after if kind == "429" else None)
            return
        if kind == "reset":
            self._reset()
            return
        if kind == "delay":
            time.sleep(self.server.pause())
        headers = [
            (k, v) for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"
        ]
        try:
            upstream = self._connect()
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            upstream.putheader("Host", f"{self.server.upstream_host}:{self.server.upstream_port}")
            for k, v in headers:
                upstream.putheader(k, v)
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
        except (OSError, http.client.HTTPException):
            self._close_upstream()
            self.server.count("upstream-error")
            self._answer(502)
            return
        if kind == "lost-response":
            response.read()
            self._close_upstream()
            self._reset()
            return
        out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        if response.chunked:
            self._stream(response, out, cut_at)
            return
        data = b"" if no_body else response.read()
        if response.will_close:
            self._close_upstream()
        if not no_body:
            out.append(("Content-Length", str(len(data))))
        self._write_head(response.status, response.reason, out)
        if data:
            self.wfile.write(data)

    def _stream(
        self, response: http.client.HTTPResponse, headers: list[tuple[str, str]], cut_at: float
    ) -> None:
        """Relay a chunked response chunk by chunk; cut it at ``cut_at`` (monotonic) if set."""
        self._write_head(
            response.status, response.reason, [*headers, ("Transfer-Encoding", "chunked")]
        )
        timer: threading.Timer | None = None
        cut = threading.Event()
        if cut_at:
            upstream_sock = self._upstream.sock if self._upstream is not None else None

            def fire() -> None:
                cut.set()
                if upstream_sock is not None:
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(upstream_sock, socket.SHUT_RDWR)

            timer = threading.Timer(max(0.0, cut_at - time.monotonic()), fire)
            timer.daemon = True
            timer.start()
        try:
            while True:
                try:
                    piece = response.read1(65536)
                except (OSError, http.client.HTTPException, ValueError):
                    if cut.is_set():
                        raise _Cut from None
                    raise
                if cut.is_set():
                    raise _Cut
                if not piece:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        except _Cut:
            self.server.count("watch-cut")
            self._close_upstream()
            self._reset()
        except (OSError, http.client.HTTPException, ValueError):
            self._close_upstream()
            self.close_connection = True
        finally:
            if timer is not None:
                timer.cancel()
            if response.will_close or self.close_connection:
                self._close_upstream()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        split = urllib.parse.urlsplit(proxy.upstream)
        self.upstream_host = split.hostname or "127.0.0.1"
        self.upstream_port = split.port or 443
        self.upstream_tls = proxy.upstream_tls
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(str(proxy.cert_file), str(proxy.key_file))
        self.tls.set_alpn_protocols(["http/1.1"])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def faults(self) -> Faults:
        return self.proxy.faults

    def track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def drop_all(self) -> None:
        with self._lock:
            open_ = list(self._open)
        for sock in open_:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def decide(self, watch: bool) -> tuple[str | None, float]:
        return self.proxy.decide(watch)

    def pause(self) -> float:
        return self.proxy.pause()

    def count(self, what: str) -> None:
        self.proxy.count(what)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.proxy.count("handler-error")


class FaultProxy:
    """The proxy; :meth:`start` it, point clients at :attr:`url`, :meth:`stop` it."""

    def __init__(
        self,
        upstream: str,
        upstream_tls: ssl.SSLContext,
        workdir: Path,
        faults: Faults | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.upstream_tls = upstream_tls
        self.ca_file, self.cert_file, self.key_file = serving_cert(workdir)
        self.faults = faults or Faults()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_kubeconfig(
        cls, kubeconfig: Path, workdir: Path, faults: Faults | None = None, *, seed: int = 0
    ) -> FaultProxy:
        server, context = upstream_of(kubeconfig)
        return cls(server, context, workdir, faults, seed=seed)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.name = "fault-proxy"
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.drop_all()
        self._server.server_close()
        self._server = None

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults

    # -- decisions and counts ----------------------------------------------------------------

    def decide(self, watch: bool) -> tuple[str | None, float]:
        """The fault for one request (None: none) and, for a watch, when to cut it (0: never)."""
        with self._lock:
            faults = self.faults
            self._counts["requests"] += 1
            self._counts["watches"] += watch
            kind: str | None = None
            if faults.share > 0 and self._rng.random() < faults.share:
                kinds = [k for k in KINDS if faults.weights.get(k, 0) > 0]
                if watch:
                    kinds = [k for k in kinds if k != "lost-response"]
                if kinds:
                    kind = self._rng.choices(kinds, [faults.weights[k] for k in kinds])[0]
                    self._counts[kind] += 1
            cut_at = 0.0
            if watch and kind not in FAILURES and self._rng.random() < faults.watch_cut:
                cut_at = time.monotonic() + self._rng.uniform(*faults.cut_after)
            return kind, cut_at

    def pause(self) -> float:
        with self._lock:
            return self._rng.uniform(*self.faults.delay)

    def count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def counts(self) -> dict[str, int]:
        """Requests seen, watches, and what was injected, by kind."""
        with self._lock:
            return dict(self._counts)

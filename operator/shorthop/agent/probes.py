"""``/healthz`` and ``/readyz`` of the node agent, answered from :class:`publisher.Health`.

A small standard-library HTTP server on its own thread: the agent's loop is synchronous and
NVML calls block, so the probes must not share its thread. Caller: ``commands.node_agent``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shorthop.agent.publisher import Health
from shorthop.errors import ConfigError


def serve(port: int, health: Health, address: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start answering on ``address:port``; ``shutdown()`` the returned server to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks = {"/healthz": health.alive, "/readyz": health.ready}
            check = checks.get(self.path)
            if check is None:
                self.send_error(404)
                return
            ok = check()
            body = b"ok" if ok else b"not ok"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would drown the log

    try:
        server = ThreadingHTTPServer((address, port), Handler)
    except OSError as exc:
        raise ConfigError(
            "--health-port", f"cannot listen on port {port} ({exc.strerror}); pick a free port"
        ) from None
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server

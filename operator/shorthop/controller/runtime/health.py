"""Liveness and readiness endpoints (``/healthz``, ``/readyz``) on the health port.

Alive while the event loop answers. Ready when this instance is a healthy standby or the active
instance with its caches synced: a standby must report ready, or a rolling update of a
two-replica Deployment would never finish.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from shorthop.errors import ConfigError


async def serve(port: int, ready: Callable[[], bool], address: str = "0.0.0.0") -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, address, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            "healthPort", f"cannot listen on port {port} ({exc.strerror}); pick a free port"
        ) from None
    return runner

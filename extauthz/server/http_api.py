"""The sidecar's HTTP side (``--http-address``): /healthz, /readyz, /metrics.

The admin API (team blocking) joins here with the state issue; it authenticates every call
itself and never trusts that Envoy checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadinessProbe = Callable[[], tuple[bool, dict[str, Any]]]


def build_app(readiness: ReadinessProbe) -> web.Application:
    """The aiohttp application; ``readiness`` says whether we are ready and why not."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        ready, detail = readiness()
        return web.json_response(
            {"status": "ready" if ready else "not ready", **detail}, status=200 if ready else 503
        )

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app

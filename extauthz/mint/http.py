"""The minter's own HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and ``/status``.

``/healthz`` is liveness (the process runs); ``/readyz`` is 200 only while every credential file
holds an unexpired credential; ``/status`` shows each credential's kind, expiry, last refresh and
last error, never a secret. Read-only, no authentication: bind it where only the pod can reach it.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from extauthz.listen import parse_address, start_http
from extauthz.mint.refresher import Refresher
from extauthz.mint.status import status_document

REFRESHER_KEY = web.AppKey("refresher", Refresher)


def build_app(refresher: Refresher, clock: Callable[[], float]) -> web.Application:
    """The aiohttp application serving the four read-only routes."""
    app = web.Application()
    app[REFRESHER_KEY] = refresher

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        now = clock()
        waiting = [s.key for s in refresher.states.values() if not s.valid(now)]
        return web.json_response(
            {"ready": not waiting, "not_ready": waiting}, status=503 if waiting else 200
        )

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(refresher.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(_: web.Request) -> web.Response:
        return web.json_response(status_document(refresher.states.values(), clock()))

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app


__all__ = ["REFRESHER_KEY", "build_app", "parse_address", "start_http"]

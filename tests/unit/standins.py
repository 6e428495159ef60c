"""Scaffolding the provider stand-ins share (userinfo, introspection, token-info): serving an
aiohttp app on a free local port, and the hostile or broken answers each must survive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

# What a hostile or broken provider answers instead of a verdict; each is a 503, never a guess.
HOSTILE = ("error", "html", "list", "huge", "slow", "redirect")


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields its base URL (``http://host:port``)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def hostile_answer(
    mode: str, token: str, answer: dict[str, Any], cap: int
) -> web.StreamResponse:
    """The ``HOSTILE`` answer ``mode``: a 500 quoting the token, HTML, a JSON list, an object
    over ``cap`` bytes, ``answer`` after 5 s, a redirect elsewhere."""
    if mode == "error":
        return web.Response(status=500, text=f"boom {token}")
    if mode == "html":
        return web.Response(text="<html>login</html>", content_type="text/html")
    if mode == "list":
        return web.json_response(["not", "an", "object"])
    if mode == "huge":
        return web.json_response({**answer, "pad": "x" * (cap + 10)})
    if mode == "slow":
        await asyncio.sleep(5)
        return web.json_response(answer)
    if mode == "redirect":
        raise web.HTTPFound("http://127.0.0.1:1/steal")
    raise AssertionError(mode)


def assert_never_shown(message: str, records: Iterable[logging.LogRecord], *secrets: str) -> None:
    """None of ``secrets`` is in a deny's message nor in any log record (text or fields)."""
    for secret in secrets:
        assert secret not in message
    for record in records:
        shown = record.getMessage() + str(record.__dict__)
        for secret in secrets:
            assert secret not in shown

"""One provider request per token at a time, shared by every request waiting for it.

Used by the userinfo lookups (``verifier``) and OAuth2 introspection (``introspection``): a
burst of requests for one new token costs the provider one request, and a waiter that gives up
(``wait`` passed) leaves the request running for the others. Event loop only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Inflight(Generic[T]):
    """Running requests by key (a token's ``token_key``), dropped when they finish."""

    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def join(self, key: str, start: Callable[[], Awaitable[T]], wait: float) -> T | None:
        """The answer of the request for ``key`` (``start()`` begins one if none runs), or
        None when it did not come within ``wait`` seconds."""
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(start())
            running.add_done_callback(lambda _: self._running.pop(key, None))
        try:
            return await asyncio.wait_for(asyncio.shield(running), wait)
        except TimeoutError:
            return None

    async def cancel(self) -> None:
        """Cancel the requests still running (their waiters have given up or gone)."""
        pending = list(self._running.values())
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

"""Asking a provider without trusting it: one session per endpoint, opened on first use, and
its answer read up to a cap, never more.

Shared by the userinfo and introspection clients (a JSON object of at most 64 KiB each); the
key-document fetch (``jwks.py``) shares the session but has its own reader, which also refuses
an announced oversize.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (reading stops there)."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object; None for anything else (not JSON, a list, a string…)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class ProviderSession:
    """The HTTP session of one provider client: opened on first use (on the event loop, which
    aiohttp needs), reopened if closed, closed with the client."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

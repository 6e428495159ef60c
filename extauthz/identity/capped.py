"""Reading a provider's answer without trusting its size: stop at a cap, never hold more.

Shared by the userinfo and introspection clients (a JSON object of at most 64 KiB each); the
key-document fetch (``jwks.py``) has its own, which also refuses an announced oversize.
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

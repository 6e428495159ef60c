"""The event loop ``serve`` runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv; what uvicorn, and so LiteLLM's proxy, runs on) costs fewer instructions per
HTTP-mode check: ``python -m bench.server_instructions --servers http-sidecar`` counted 177,769
per check on uvloop against 200,436 and 215,612 on asyncio's loop (2026-11-29). The gRPC port
does not run on the loop (extauthz/threads.py) and gains nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the faster loop available."""
    try:
        import uvloop
    except ImportError:  # a platform without it (Windows): asyncio's loop does the same work
        return asyncio.run(main)
    return uvloop.run(main)

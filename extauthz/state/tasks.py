"""Stopping background tasks for sure."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task[None], *, retry_every: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if a cancellation was lost.

    A library may swallow a cancellation that races with completion (``asyncio.wait_for`` on
    Python 3.11 does); a loop task would then run on and ``await task`` would never return.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_every)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()  # retrieved: no "exception was never retrieved" warning

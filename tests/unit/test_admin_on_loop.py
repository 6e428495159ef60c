"""Admin gRPC calls on the sync server wait for the event loop only so long: the server's
threads are the Check threads too, so a stuck loop or store must not hold them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest

from extauthz.admin.grpc_api import _on_loop


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float | None:
        return self.remaining

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise _Aborted



def test_a_call_the_loop_never_finishes_is_unavailable_at_the_deadline(
    loop: asyncio.AbstractEventLoop,
) -> None:
    cancelled = threading.Event()

    async def stuck(_request: Any, _context: Any) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    context = _Context(remaining=0.2)
    with pytest.raises(_Aborted):
        _on_loop(stuck, loop, None, context)
    assert context.aborted is not None and context.aborted[0] is grpc.StatusCode.UNAVAILABLE
    assert cancelled.wait(5)  # the call is not left running on the loop


def test_a_call_that_finishes_answers(loop: asyncio.AbstractEventLoop) -> None:
    async def quick(request: Any, _context: Any) -> str:
        return f"answer to {request}"

    context = _Context(remaining=None)
    assert _on_loop(quick, loop, "q", context) == "answer to q"
    assert context.aborted is None

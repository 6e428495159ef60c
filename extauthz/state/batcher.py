"""The background half of a registry writer: what the request path noted, written in batches.

``UserRecorder`` (user_id_upsert) and ``TeamUpserter`` (team_id_upsert) note on the request
path — on the gRPC server's threads too, so under ``_lock`` — and a task on the event loop
calls their ``flush`` every ``interval`` seconds. A store that is down is retried on the next
tick and logged once per outage; what failed stays pending in the subclass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from abc import ABC, abstractmethod

from extauthz.errors import StoreError
from extauthz.state.tasks import cancel_and_wait

log = logging.getLogger("extauthz.state")


class Batcher(ABC):
    """Runs ``flush`` periodically; ``what`` names the writes in log lines ("record users")."""

    what: str = "write"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._lock = threading.Lock()  # guards the subclass's pending and written maps

    @property
    @abstractmethod
    def pending(self) -> int:
        """How many noted items wait to be written."""

    @abstractmethod
    async def flush(self) -> None:
        """Write everything pending. Raises ``StoreError`` (what failed stays pending)."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop the loop and try one last flush (bounded by the store's own timeout)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(StoreError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
                if self._failing:
                    log.info(f"{self.what}: writes resumed")
                self._failing = False
            except StoreError as exc:
                if not self._failing:
                    log.warning(
                        f"cannot {self.what}; will retry",
                        extra={"error": str(exc), "pending": self.pending},
                    )
                self._failing = True
            except Exception as exc:
                log.error(f"cannot {self.what}", extra={"error_type": type(exc).__name__})

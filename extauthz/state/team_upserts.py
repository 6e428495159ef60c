"""``team_id_upsert``: teams seen in valid tokens, registered off the request path.

``note`` is called on the request path (when a token is first verified) and only touches a
dict. A background task registers what was noted every ``flush_interval`` in one
``store.upsert_teams`` call; the watcher then publishes the new teams like any other change. A
team registered once is remembered and not written again. When the store is down the teams
stay pending (at most ``buffer_max``; beyond that new ones are dropped and counted) and are
retried. Meanwhile the decision treats an unregistered team under ``team_id_upsert`` as
registered with every model, so no request waits for the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from cachetools import LRUCache

from extauthz import metrics
from extauthz.errors import StoreError
from extauthz.state.protocol import StateStore
from extauthz.state.tasks import cancel_and_wait

log = logging.getLogger("extauthz.state")
UPSERTED_BY = "team_id_upsert"


@dataclass(frozen=True, slots=True)
class UpsertSettings:
    flush_interval: float = 1.0
    batch_max: int = 500
    buffer_max: int = 10_000
    written_cache: int = 100_000


class TeamUpserter:
    """Batches teams seen in tokens into ``store.upsert_teams``."""

    def __init__(self, store: StateStore, settings: UpsertSettings | None = None) -> None:
        self.store = store
        self.settings = settings or UpsertSettings()
        self._pending: dict[str, None] = {}
        self._written: LRUCache[str, bool] = LRUCache(self.settings.written_cache)
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def note(self, team_id: str) -> None:
        """Remember one team to register (request path: O(1), never raises, never waits)."""
        if team_id in self._pending or team_id in self._written:
            return
        if len(self._pending) >= self.settings.buffer_max:
            metrics.TEAMS_UPSERT_DROPPED.inc()
            return
        self._pending[team_id] = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Register every pending team. Raises ``StoreError`` (what failed stays pending)."""
        while self._pending:
            batch = list(self._pending)[: self.settings.batch_max]
            for team_id in batch:
                del self._pending[team_id]
            try:
                added = await self.store.upsert_teams(batch, UPSERTED_BY, time.time())
            except BaseException:
                for team_id in batch:
                    self._pending[team_id] = None
                raise
            for team_id in batch:
                self._written[team_id] = True
            if added:
                metrics.TEAMS_UPSERTED.inc(added)
                log.info("teams registered from tokens", extra={"count": added})

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(StoreError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            try:
                await self.flush()
                self._failing = False
            except StoreError as exc:
                if not self._failing:
                    log.warning(
                        "cannot register teams; will retry",
                        extra={"error": str(exc), "pending": len(self._pending)},
                    )
                self._failing = True
            except Exception as exc:
                log.error("team upserter error", extra={"error_type": type(exc).__name__})

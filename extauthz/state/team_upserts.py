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

import logging
import time
from dataclasses import dataclass

from cachetools import LRUCache

from extauthz import metrics
from extauthz.state.batcher import Batcher
from extauthz.state.protocol import StateStore

log = logging.getLogger("extauthz.state")
UPSERTED_BY = "team_id_upsert"


@dataclass(frozen=True, slots=True)
class UpsertSettings:
    flush_interval: float = 1.0
    batch_max: int = 500
    buffer_max: int = 10_000
    written_cache: int = 100_000


class TeamUpserter(Batcher):
    """Batches teams seen in tokens into ``store.upsert_teams``."""

    what = "register teams"

    def __init__(self, store: StateStore, settings: UpsertSettings | None = None) -> None:
        self.settings = settings or UpsertSettings()
        super().__init__(self.settings.flush_interval)
        self.store = store
        self._pending: dict[str, None] = {}
        self._written: LRUCache[str, bool] = LRUCache(self.settings.written_cache)

    def note(self, team_id: str) -> None:
        """Remember one team to register (request path, any thread: O(1), never raises)."""
        with self._lock:
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
            with self._lock:
                batch = list(self._pending)[: self.settings.batch_max]
                for team_id in batch:
                    del self._pending[team_id]
            try:
                added = await self.store.upsert_teams(batch, UPSERTED_BY, time.time())
            except BaseException:
                with self._lock:
                    for team_id in batch:
                        self._pending[team_id] = None
                raise
            with self._lock:
                for team_id in batch:
                    self._written[team_id] = True
            if added:
                metrics.TEAMS_UPSERTED.inc(added)
                log.info("teams registered from tokens", extra={"count": added})

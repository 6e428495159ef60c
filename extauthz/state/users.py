"""The user registry's writer: users seen in valid tokens, recorded off the request path.

``note`` is called on the request path and only touches a dict (no I/O, no await). A background
task writes what was noted every ``flush_interval`` in batches. A user already written is not
written again until its ``last_seen`` moved by ``resolution`` seconds or its email changed, so a
busy user costs one write a minute, not one per request. When the store is down, sightings are
kept (up to ``buffer_max`` users; beyond that new users are dropped and counted) and retried.
``note`` runs on the gRPC server's threads and the loop alike: one lock guards both maps
(cachetools' LRUCache is not thread-safe), never held across an await.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from cachetools import LRUCache

from extauthz import metrics
from extauthz.state.batcher import Batcher
from extauthz.state.protocol import StateStore, UserSighting

# Set while authenticating a token that was not presented by its holder (admin Explain), so
# looking at a token never records its user.
_paused: ContextVar[bool] = ContextVar("extauthz_user_recording_paused", default=False)


def recording_paused() -> bool:
    return _paused.get()


@contextlib.contextmanager
def pause_recording() -> Iterator[None]:
    """Within this block (this task only), users seen in tokens are not recorded."""
    token = _paused.set(True)
    try:
        yield
    finally:
        _paused.reset(token)


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    flush_interval: float = 1.0
    batch_max: int = 500
    buffer_max: int = 10_000
    resolution: float = 60.0  # last_seen precision in the registry
    written_cache: int = 100_000  # users remembered as already written


class UserRecorder(Batcher):
    """Batches user sightings into ``store.record_users``."""

    what = "record users"

    def __init__(self, store: StateStore, settings: RecorderSettings | None = None) -> None:
        self.settings = settings or RecorderSettings()
        super().__init__(self.settings.flush_interval)
        self.store = store
        self._pending: dict[str, UserSighting] = {}
        self._written: LRUCache[str, tuple[str | None, float]] = LRUCache(
            self.settings.written_cache
        )

    def note(self, user_id: str, email: str | None, at: float) -> None:
        """Remember one sighting (request path: O(1), never raises, never waits long)."""
        with self._lock:
            self._note(user_id, email, at)

    def _note(self, user_id: str, email: str | None, at: float) -> None:
        seen = self._pending.get(user_id)
        if seen is not None:
            self._pending[user_id] = UserSighting(
                user_id, email if email is not None else seen.email, seen.first_seen, at
            )
            return
        written = self._written.get(user_id)
        if (
            written is not None
            and written[0] == email
            and at - written[1] < self.settings.resolution
        ):
            return
        if len(self._pending) >= self.settings.buffer_max:
            metrics.USERS_DROPPED.inc()
            return
        self._pending[user_id] = UserSighting(user_id, email, at, at)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write every pending sighting. Raises ``StoreError`` (what failed stays pending)."""
        while self._pending:
            with self._lock:
                batch = dict(list(self._pending.items())[: self.settings.batch_max])
                for key in batch:
                    del self._pending[key]
            try:
                await self.store.record_users(list(batch.values()))
            except BaseException:
                with self._lock:
                    for key, sighting in batch.items():  # put back, merging newer sightings
                        newer = self._pending.get(key)
                        self._pending[key] = (
                            sighting
                            if newer is None
                            else UserSighting(
                                key,
                                newer.email if newer.email is not None else sighting.email,
                                sighting.first_seen,
                                newer.last_seen,
                            )
                        )
                raise
            with self._lock:
                for key, sighting in batch.items():
                    self._written[key] = (sighting.email, sighting.last_seen)
            metrics.USERS_RECORDED.inc(len(batch))

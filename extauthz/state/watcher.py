"""Keep the decision path's snapshot fresh from the store, and say whether the store answers.

The watcher is the only reader the decision path depends on, and the decision path never waits
for it: it publishes whole ``StateSnapshot`` values through a callback (one attribute write).
When the store is unreachable the last snapshot stays in force (blocks keep being enforced),
the watcher retries with jittered exponential backoff, and ``ready`` turns False only once the
store has not answered for ``unready_after`` seconds (a blip does not flap readiness).

A change feed that hears nothing proves nothing (a PostgreSQL that accepts connections but never
answers is silent too), so while healthy the watcher asks the store for its version at least
every ``heartbeat_interval``: a store that stops answering is noticed within
``heartbeat_interval`` + the store's ``op_timeout``, and a missed notification costs at most
``heartbeat_interval`` of propagation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from extauthz import metrics
from extauthz.errors import StoreError
from extauthz.state.protocol import StateSnapshot, StateStore
from extauthz.state.tasks import cancel_and_wait

log = logging.getLogger("extauthz.state")


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """How the watcher follows the store."""

    resync_interval: float = 10.0  # full re-read even when no change was signalled
    heartbeat_interval: float = 1.0  # the store is asked for its version at least this often
    backoff_initial: float = 0.25
    backoff_max: float = 10.0
    unready_after: float = 5.0  # not ready once the store has not answered for this long


class StateWatcher:
    """Reads the store whenever it may have changed and publishes the snapshot."""

    def __init__(
        self,
        store: StateStore,
        publish: Callable[[StateSnapshot], None],
        settings: WatchSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings or WatchSettings()
        self._publish = publish
        self._clock = clock
        self.current: StateSnapshot | None = None
        self.last_error: str | None = None
        self.failing_since: float | None = None
        self.last_answer: float | None = None  # monotonic: the store's last successful answer
        self.last_sync: float | None = None  # wall clock: snapshot last confirmed current
        self._last_full: float | None = None  # monotonic: last full read
        self._task: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()

    # -- health ------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """The last store operation succeeded."""
        return self.current is not None and self.failing_since is None

    @property
    def ready(self) -> bool:
        """A snapshot was loaded, and the store answers or answered less than ``unready_after``
        seconds ago (a store that hangs is failing from its last answer, not from the moment
        an operation on it timed out)."""
        if self.current is None:
            return False
        if self.failing_since is None:
            return True
        answered = self.failing_since if self.last_answer is None else self.last_answer
        return self._clock() - answered < self.settings.unready_after

    def report_failure(self, exc: StoreError) -> None:
        """Note a failed store operation (the watcher's own or an admin write's)."""
        self.last_error = str(exc)
        metrics.STATE_STORE_UP.set(0)
        if self.failing_since is None:
            self.failing_since = self._clock()
            version = self.current.version if self.current is not None else None
            log.warning(
                "state store unavailable; decisions continue from the last snapshot",
                extra={"store": self.store.url, "error": str(exc), "snapshot_version": version},
            )

    def _report_success(self) -> None:
        self.last_answer = self._clock()
        self.last_sync = time.time()
        metrics.STATE_LAST_SYNC.set(self.last_sync)
        if self.failing_since is not None:
            log.info(
                "state store reachable again",
                extra={
                    "store": self.store.url,
                    "outage_seconds": round(self._clock() - self.failing_since, 3),
                },
            )
        self.failing_since = None
        self.last_error = None
        metrics.STATE_STORE_UP.set(1)

    # -- syncing -----------------------------------------------------------------------------

    async def sync(self) -> StateSnapshot:
        """Read the store now and publish what changed. Raises ``StoreError``."""
        async with self._sync_lock:
            try:
                snapshot = await self.store.snapshot()
            except StoreError as exc:
                self.report_failure(exc)
                raise
            self._report_success()
            self._last_full = self.last_answer
            if snapshot != self.current:
                self.current = snapshot
                self._publish(snapshot)
                metrics.STATE_VERSION.set(snapshot.version)
                metrics.STATE_BLOCKED.labels("team").set(len(snapshot.blocked_teams))
                metrics.STATE_BLOCKED.labels("end_user").set(len(snapshot.blocked_end_users))
                metrics.STATE_TEAMS.set(len(snapshot.teams))
                log.debug("state snapshot", extra={"version": snapshot.version})
            return snapshot

    def start(self) -> None:
        """Follow the store in the background (call after a first successful ``sync``)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _heartbeat(self) -> bool:
        """Wait for a change or ``heartbeat_interval``, then ask the store for its version:
        True when a full read is due (a change, or ``resync_interval`` since the last)."""
        s = self.settings
        since = self.current.version if self.current is not None else -1
        await self.store.wait_for_change(since, s.heartbeat_interval)
        version = await self.store.version()
        full_due = self._last_full is None or self._clock() - self._last_full >= s.resync_interval
        if version != since or full_due:
            return True
        self._report_success()
        return False

    async def _run(self) -> None:
        s = self.settings
        backoff = s.backoff_initial
        while True:
            try:
                # While failing, retry the read itself after each backoff: a healthy change
                # feed must not delay noticing that the store answers again.
                if self.failing_since is not None or await self._heartbeat():
                    await self.sync()
                backoff = s.backoff_initial
            except StoreError as exc:
                self.report_failure(exc)
                metrics.STATE_RECONNECTS.inc()
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311
                backoff = min(backoff * 2, s.backoff_max)
            except Exception as exc:  # a bug must not end the loop: blocks would go stale
                log.error("state watcher error", extra={"error_type": type(exc).__name__})
                await asyncio.sleep(s.backoff_max)

"""Keep the decision path's snapshot fresh from the store, and say whether the store answers.

The watcher is the only reader the decision path depends on, and the decision path never waits
for it: it publishes whole ``StateSnapshot`` values through a callback (one attribute write).
When the store is unreachable the last snapshot stays in force (blocks keep being enforced),
the watcher retries with jittered exponential backoff, and ``ready`` turns False only after the
store has been failing for ``unready_after`` seconds (a blip does not flap readiness).
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
    backoff_initial: float = 0.25
    backoff_max: float = 10.0
    unready_after: float = 5.0  # readiness debounce while the store is failing


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
        self.last_sync: float | None = None  # wall clock, for /readyz
        self._task: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()

    # -- health ------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """The last store operation succeeded."""
        return self.current is not None and self.failing_since is None

    @property
    def ready(self) -> bool:
        """A snapshot was loaded and the store has not been failing for ``unready_after``."""
        if self.current is None:
            return False
        if self.failing_since is None:
            return True
        return self._clock() - self.failing_since < self.settings.unready_after

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
            self.last_sync = time.time()
            metrics.STATE_LAST_SYNC.set(self.last_sync)
            if snapshot != self.current:
                self.current = snapshot
                self._publish(snapshot)
                metrics.STATE_VERSION.set(snapshot.version)
                metrics.STATE_BLOCKED.labels("team").set(len(snapshot.blocked_teams))
                metrics.STATE_BLOCKED.labels("end_user").set(len(snapshot.blocked_end_users))
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

    async def _run(self) -> None:
        s = self.settings
        backoff = s.backoff_initial
        while True:
            try:
                if self.failing_since is None:
                    since = self.current.version if self.current is not None else -1
                    await self.store.wait_for_change(since, s.resync_interval)
                # While failing, retry the read itself after each backoff: a healthy change
                # feed must not delay noticing that the store answers again.
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

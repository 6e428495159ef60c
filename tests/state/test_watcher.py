"""The watcher's readiness rule and heartbeat, on an in-memory store with a silent change feed."""

from __future__ import annotations

import asyncio

from extauthz.errors import StoreError
from extauthz.state.memory import MemoryStore
from extauthz.state.protocol import StateSnapshot
from extauthz.state.watcher import StateWatcher, WatchSettings
from tests.state.helpers import wait_for


class SilentFeed(MemoryStore):
    """Changes are made but never signalled: the feed of a LISTEN connection that went deaf."""

    async def wait_for_change(self, since: int, max_wait: float) -> None:
        await asyncio.sleep(max_wait)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_missed_change_arrives_with_the_next_heartbeat() -> None:
    """A block the change feed never announced is published within a heartbeat, long before
    the full re-read (``resync_interval``)."""
    store = SilentFeed()
    published: list[StateSnapshot] = []
    settings = WatchSettings(resync_interval=3600.0, heartbeat_interval=0.05)
    watcher = StateWatcher(store, published.append, settings)
    await watcher.sync()
    watcher.start()
    try:
        await store.set_team_blocked("team-a", True, "test", 1.0)
        await wait_for(lambda: "team-a" in published[-1].blocked_teams, 5.0)
    finally:
        await watcher.stop()


async def test_not_ready_counts_from_the_last_answer_not_from_the_timeout() -> None:
    """A store that hangs has been failing since its last answer: with ``unready_after`` 5 s, an
    operation that times out 5 s after that answer makes the replica not ready at once, and
    a blip (a failure 1 s after an answer) does not."""
    clock = Clock()
    watcher = StateWatcher(MemoryStore(), lambda _s: None, WatchSettings(), clock=clock)
    await watcher.sync()  # answered at 100
    clock.now = 101.0
    watcher.report_failure(StoreError("refused"))
    assert watcher.ready and not watcher.healthy  # a blip
    clock.now = 104.9
    assert watcher.ready
    clock.now = 105.0
    assert not watcher.ready
    await watcher.sync()  # answers again
    assert watcher.ready and watcher.healthy

    clock.now = 200.0
    await watcher.sync()
    clock.now = 205.0  # a heartbeat sent at 200 timed out now (op_timeout 5 s)
    watcher.report_failure(StoreError("no answer within 5s"))
    assert not watcher.ready

"""The user recorder: batched, coalesced, bounded, retried; never on the request path."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from extauthz.errors import StoreError
from extauthz.state.memory import MemoryStore
from extauthz.state.protocol import UserSighting
from extauthz.state.users import RecorderSettings, UserRecorder


class CountingStore(MemoryStore):
    """A memory store that records each record_users batch and can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.down = False

    async def record_users(self, sightings: Sequence[UserSighting]) -> None:
        if self.down:
            raise StoreError("down")
        self.batches.append([s.user_id for s in sightings])
        await super().record_users(sightings)


async def test_sightings_are_coalesced_and_batched() -> None:
    """Many sightings of a user become one row with the earliest and latest times."""
    store = CountingStore()
    rec = UserRecorder(store, RecorderSettings(batch_max=2))
    for at in (10.0, 11.0, 12.0):
        rec.note("bob", "bob@x.io" if at == 10.0 else None, at)
    rec.note("alice", None, 11.0)
    rec.note("carol", None, 11.0)
    await rec.flush()
    assert [len(b) for b in store.batches] == [2, 1]
    bob = await store.get_user("bob")
    assert bob is not None and (bob.email, bob.first_seen, bob.last_seen) == ("bob@x.io", 10, 12)


async def test_a_busy_user_is_written_once_a_resolution() -> None:
    """After a write, the same user is not written again until last_seen moved enough."""
    store = CountingStore()
    rec = UserRecorder(store, RecorderSettings(resolution=60.0))
    rec.note("bob", None, 100.0)
    await rec.flush()
    rec.note("bob", None, 130.0)
    assert rec.pending == 0
    rec.note("bob", "new@x.io", 131.0)  # a new email is written at once
    assert rec.pending == 1
    await rec.flush()
    rec.note("bob", "new@x.io", 200.0)
    assert rec.pending == 1


async def test_failed_writes_are_kept_and_retried() -> None:
    """When the store is down sightings stay pending (merged with newer ones) and are retried."""
    store = CountingStore()
    rec = UserRecorder(store)
    rec.note("bob", "b@x.io", 1.0)
    store.down = True
    with pytest.raises(StoreError):
        await rec.flush()
    rec.note("bob", None, 5.0)
    store.down = False
    await rec.flush()
    bob = await store.get_user("bob")
    assert bob is not None and (bob.email, bob.first_seen, bob.last_seen) == ("b@x.io", 1.0, 5.0)


async def test_the_buffer_is_bounded() -> None:
    """Beyond buffer_max pending users, new users are dropped rather than growing memory."""
    rec = UserRecorder(CountingStore(), RecorderSettings(buffer_max=3))
    for i in range(10):
        rec.note(f"u{i}", None, 1.0)
    rec.note("u0", None, 2.0)  # known users still update
    assert rec.pending == 3

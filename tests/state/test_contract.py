"""One contract, three stores: memory, SQLite and PostgreSQL behave alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from extauthz.state.protocol import StateStore, UserSighting
from extauthz.state.urls import StoreSettings, store_from_url
from tests.state.conftest import require_pg

KINDS = ["memory", "sqlite", "postgres"]
FAST = StoreSettings(poll_interval=0.05, op_timeout=5.0, connect_timeout=3.0)


@pytest.fixture(params=KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    require_pg()
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StateStore]:
    s = store_from_url(store_url, FAST)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_new_store_is_empty(store: StateStore) -> None:
    """A fresh store has no blocks, no teams and no users."""
    snap = await store.snapshot()
    assert snap.blocked_teams == frozenset() and snap.blocked_end_users == frozenset()
    assert await store.list_teams() == []
    assert await store.get_team("t") is None
    assert await store.list_users(0, 10) == ([], 0)
    assert await store.list_end_users() == []


async def test_block_and_unblock_a_team(store: StateStore) -> None:
    """Blocking records who and when, shows in the snapshot; unblocking lifts it."""
    before = (await store.snapshot()).version
    state = await store.set_team_blocked("team-a", True, "alice", 1000.5)
    assert (state.team_id, state.blocked, state.changed_by, state.changed_at) == (
        "team-a",
        True,
        "alice",
        1000.5,
    )
    snap = await store.snapshot()
    assert snap.blocked_teams == {"team-a"} and snap.version > before
    assert await store.get_team("team-a") == state
    state = await store.set_team_blocked("team-a", False, "bob", 2000.0)
    assert not state.blocked and state.changed_by == "bob"
    snap2 = await store.snapshot()
    assert snap2.blocked_teams == frozenset() and snap2.version > snap.version
    assert [t.team_id for t in await store.list_teams()] == ["team-a"]


async def test_version_is_the_snapshots(store: StateStore) -> None:
    """``version()`` (the watcher's heartbeat) reads the version the snapshot carries."""
    assert await store.version() == (await store.snapshot()).version
    await store.set_team_blocked("t", True, "alice", 1.0)
    assert await store.version() == (await store.snapshot()).version > 0


async def test_writes_are_idempotent(store: StateStore) -> None:
    """Repeating a block keeps the first record and does not bump the version."""
    first = await store.set_team_blocked("t", True, "alice", 1.0)
    version = (await store.snapshot()).version
    again = await store.set_team_blocked("t", True, "bob", 2.0)
    assert again == first
    assert (await store.snapshot()).version == version
    unblocked = await store.set_team_blocked("never-seen", False, "bob", 3.0)
    assert not unblocked.blocked and (await store.snapshot()).version == version + 1


async def test_end_users_block_all_at_once(store: StateStore) -> None:
    """End users are blocked in one write; duplicates are folded; order is kept."""
    states = await store.set_end_users_blocked(["u2", "u1", "u2"], True, "admin", 5.0)
    assert [s.user_id for s in states] == ["u2", "u1"] and all(s.blocked for s in states)
    assert (await store.snapshot()).blocked_end_users == {"u1", "u2"}
    states = await store.set_end_users_blocked(["u1"], False, "admin", 6.0)
    assert not states[0].blocked
    assert (await store.snapshot()).blocked_end_users == {"u2"}
    assert [u.user_id for u in await store.list_end_users()] == ["u1", "u2"]


async def test_users_are_upserted_and_paged(store: StateStore) -> None:
    """Sightings widen first/last seen, keep the email unless a new one comes, and page by id."""
    await store.record_users(
        [UserSighting("bob", "bob@x.io", 10.0, 20.0), UserSighting("alice", None, 5.0, 5.0)]
    )
    await store.record_users([UserSighting("bob", None, 15.0, 30.0)])
    bob = await store.get_user("bob")
    assert bob is not None
    assert (bob.email, bob.first_seen, bob.last_seen) == ("bob@x.io", 10.0, 30.0)
    await store.record_users([UserSighting("bob", "bob@y.io", 1.0, 2.0)])
    bob = await store.get_user("bob")
    assert bob is not None and (bob.email, bob.first_seen, bob.last_seen) == ("bob@y.io", 1.0, 30.0)
    await store.record_users([UserSighting(f"u{i:02d}", None, 1.0, 1.0) for i in range(5)])
    page, total = await store.list_users(1, 3)
    assert total == 7 and [u.user_id for u in page] == ["bob", "u00", "u01"]
    assert (await store.list_users(100, 3)) == ([], 7)
    assert (await store.snapshot()).blocked_teams == frozenset()


async def test_odd_ids_round_trip(store: StateStore) -> None:
    """Quotes, unicode and 256-character ids are stored as they are."""
    ids = ["o'brien; DROP TABLE x", "チーム", "a" * 256, "%s?"]
    for i in ids:
        await store.set_team_blocked(i, True, "by", 1.0)
    assert (await store.snapshot()).blocked_teams == set(ids)


async def test_wait_for_change_returns_on_a_write(store: StateStore) -> None:
    """A waiter wakes soon after a write, and waits out max_wait otherwise."""
    since = (await store.snapshot()).version
    await store.wait_for_change(since, 0.01)  # PostgreSQL: the first call starts listening
    start = time.monotonic()
    await store.wait_for_change(since, 0.2)
    assert time.monotonic() - start >= 0.15
    waiter = asyncio.ensure_future(store.wait_for_change(since, 5.0))
    await asyncio.sleep(0.05)
    start = time.monotonic()
    await store.set_team_blocked("t", True, "a", 1.0)
    await asyncio.wait_for(waiter, 2.0)
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_state_survives_reopening(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Blocks and users are still there after the store is closed and opened again."""
    if kind == "postgres":
        require_pg()
        url = str(request.getfixturevalue("pg_url"))
    else:
        url = f"sqlite:///{tmp_path}/state.db"
    first = store_from_url(url, FAST)
    await first.open()
    await first.set_team_blocked("t", True, "alice", 1.0)
    await first.set_end_users_blocked(["e"], True, "alice", 1.0)
    await first.record_users([UserSighting("u", "u@x.io", 1.0, 2.0)])
    await first.close()
    second = store_from_url(url, FAST)
    await second.open()  # migrating an up-to-date schema is a no-op
    try:
        snap = await second.snapshot()
        assert snap.blocked_teams == {"t"} and snap.blocked_end_users == {"e"}
        assert (await second.get_user("u")) is not None
    finally:
        await second.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_stores_on_one_database_see_each_other(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A write through one store wakes a waiter on another store sharing the database."""
    if kind == "postgres":
        require_pg()
        url = str(request.getfixturevalue("pg_url"))
    else:
        url = f"sqlite:///{tmp_path}/state.db"
    a, b = store_from_url(url, FAST), store_from_url(url, FAST)
    await asyncio.gather(a.open(), b.open())
    try:
        since = (await b.snapshot()).version
        await b.wait_for_change(since, 0.01)
        waiter = asyncio.ensure_future(b.wait_for_change(since, 5.0))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await a.set_team_blocked("t", True, "alice", 1.0)
        await asyncio.wait_for(waiter, 2.0)
        assert time.monotonic() - start < 1.0
        assert (await b.snapshot()).blocked_teams == {"t"}
    finally:
        await a.close()
        await b.close()

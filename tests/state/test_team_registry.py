"""The team registry, one contract for memory, SQLite and PostgreSQL (issue 17)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from extauthz.state.protocol import StateStore, TeamChanges, TeamConflict, TeamEntry, TeamState
from extauthz.state.urls import store_from_url
from tests.state.conftest import require_pg
from tests.state.test_contract import FAST, KINDS

NEW = TeamState(
    "eng", False, "alice", 10.0, "Engineering", ("gpt-4o", "claude"), "org-1", True, 10.0
)


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/state.db"
    else:
        require_pg()
        url = str(request.getfixturevalue("pg_url"))
    s = store_from_url(url, FAST)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_created_team_is_in_the_snapshot_with_its_models(store: StateStore) -> None:
    before = (await store.snapshot()).version
    created = await store.create_team(NEW)
    assert created == NEW
    assert await store.get_team("eng") == NEW
    snap = await store.snapshot()
    assert snap.version > before
    assert snap.teams == {"eng": TeamEntry("eng", "Engineering", ("gpt-4o", "claude"))}
    assert snap.team_aliases == {"Engineering": "eng"}
    assert snap.blocked_teams == frozenset()


async def test_creating_twice_is_refused_and_aliases_are_unique(store: StateStore) -> None:
    await store.create_team(NEW)
    with pytest.raises(TeamConflict) as exc:
        await store.create_team(NEW)
    assert exc.value.kind == "exists"
    other = TeamState("ops", False, "a", 1.0, "Engineering", (), None, True, 1.0)
    with pytest.raises(TeamConflict) as exc:
        await store.create_team(other)
    assert exc.value.kind == "alias_taken"
    assert await store.get_team("ops") is None


async def test_a_blocked_team_registered_later_stays_blocked(store: StateStore) -> None:
    await store.set_team_blocked("eng", True, "ops", 5.0)
    assert (await store.snapshot()).teams == {}  # a block alone registers nothing
    created = await store.create_team(NEW)
    assert created.blocked and created.registered
    snap = await store.snapshot()
    assert "eng" in snap.blocked_teams and "eng" in snap.teams


async def test_update_changes_only_what_is_given(store: StateStore) -> None:
    await store.create_team(NEW)
    v = (await store.snapshot()).version
    same = await store.update_team("eng", TeamChanges(models=("gpt-4o", "claude")), "bob", 20.0)
    assert same == NEW and (await store.snapshot()).version == v  # nothing changed: no bump
    new = await store.update_team("eng", TeamChanges(models=(), blocked=True), "bob", 21.0)
    assert new.models == () and new.blocked and new.team_alias == "Engineering"
    assert (new.changed_by, new.changed_at) == ("bob", 21.0)
    snap = await store.snapshot()
    assert snap.version > v and snap.teams["eng"].models == () and "eng" in snap.blocked_teams
    with pytest.raises(TeamConflict) as exc:
        await store.update_team("nope", TeamChanges(models=("x",)), "bob", 1.0)
    assert exc.value.kind == "not_found"


async def test_delete_is_all_or_nothing(store: StateStore) -> None:
    await store.create_team(NEW)
    with pytest.raises(TeamConflict) as exc:
        await store.delete_teams(["eng", "ghost"])
    assert exc.value.kind == "not_found" and "ghost" in exc.value.detail
    assert await store.get_team("eng") is not None
    assert await store.delete_teams(["eng"]) == [NEW]
    assert await store.get_team("eng") is None
    assert (await store.snapshot()).teams == {}


async def test_upsert_registers_unknown_teams_once(store: StateStore) -> None:
    await store.create_team(NEW)
    await store.set_team_blocked("legacy", True, "ops", 1.0)
    assert await store.upsert_teams(["eng", "new-a", "legacy", "new-a"], "token", 30.0) == 2
    v = (await store.snapshot()).version
    assert await store.upsert_teams(["eng", "new-a", "legacy"], "token", 31.0) == 0
    snap = await store.snapshot()
    assert snap.version == v
    assert snap.teams["new-a"] == TeamEntry("new-a", None, ())
    assert snap.teams["eng"].models == ("gpt-4o", "claude")  # an upsert never resets a team
    assert "legacy" in snap.teams and "legacy" in snap.blocked_teams


async def test_odd_models_round_trip(store: StateStore) -> None:
    odd = ("naïve/模型", 'quote"d', "a,b", "")
    await store.create_team(TeamState("t", False, "a", 1.0, None, odd, None, True, 1.0))
    assert (await store.get_team("t")) is not None
    assert (await store.snapshot()).teams["t"].models == odd

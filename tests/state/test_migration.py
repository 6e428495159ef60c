"""A store made by the previous release (schema 1) is migrated in place: its blocks and users
are kept, its blocked teams are not registered (so the registry is not "in use" after an
upgrade), and registering such a team keeps its block."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from extauthz.state import schema
from extauthz.state.protocol import StateStore, TeamState
from extauthz.state.urls import store_from_url
from tests.state.conftest import PG_BASE_URL, require_pg


def old_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute(schema.CREATE_META)
    for statement in schema.MIGRATIONS[0]:
        db.execute(statement)
    db.execute("INSERT INTO extauthz_meta (key, value) VALUES ('schema_version', 1)")
    db.execute("INSERT INTO extauthz_teams VALUES ('old-team', TRUE, 'ops', 5.0)")
    db.commit()
    db.close()


def old_postgres(schema_name: str) -> None:
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema_name}")
        conn.execute(schema.CREATE_META)
        for statement in schema.MIGRATIONS[0]:
            conn.execute(statement.encode())
        conn.execute("INSERT INTO extauthz_meta (key, value) VALUES ('schema_version', 1)")
        conn.execute("INSERT INTO extauthz_teams VALUES ('old-team', TRUE, 'ops', 5.0)")


async def check_upgraded(store: StateStore) -> None:
    await store.open()
    try:
        snap = await store.snapshot()
        assert snap.blocked_teams == {"old-team"} and dict(snap.teams) == {}
        old = await store.get_team("old-team")
        assert old == TeamState("old-team", True, "ops", 5.0)
        new = TeamState("old-team", False, "admin", 9.0, "Old", ("m",), None, True, 9.0)
        created = await store.create_team(new)
        assert created.blocked and created.registered and created.models == ("m",)
        assert "old-team" in (await store.snapshot()).teams
    finally:
        await store.close()


async def test_sqlite_schema_1_is_migrated(tmp_path: Path) -> None:
    old_sqlite(tmp_path / "state.db")
    await check_upgraded(store_from_url(f"sqlite:///{tmp_path}/state.db"))


async def test_postgres_schema_1_is_migrated(pg_schema: str, pg_url: str) -> None:
    require_pg()
    old_postgres(pg_schema)
    await check_upgraded(store_from_url(pg_url))


"""The PostgreSQL store (``postgresql://user@host:5432/db``): one database shared by a fleet.

Two connections: one for queries (serialised by a lock; writes are rare and short) and one that
only LISTENs. Every write that changes a block bumps ``state_version`` and sends
``pg_notify(channel, version)`` in the same transaction, so every replica's watcher wakes within
milliseconds of the commit; the watcher also re-reads every ``resync_interval`` as a safety net.

The tables live in the connection's current schema (``public`` unless the URL sets
``options=-csearch_path%3DNAME``); the NOTIFY channel is named after that schema, so fleets in
different schemas of one database do not wake each other.

Connections are made lazily and remade after any failure; every operation is bounded by
``op_timeout`` (a cut network must not hang an admin call), and failures become ``StoreError``.
A query still unanswered at its deadline is abandoned by shutting the connection's socket down,
not by cancelling it: psycopg answers a cancelled query by asking the server to cancel it and
then waiting for the query to end, 10 s more against a server that accepts connections but never
answers (an admin write took 15 s to fail with a 5 s ``op_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from extauthz.errors import ConfigError, StoreError
from extauthz.redact import redact_url, scrub_url
from extauthz.state import schema, teams
from extauthz.state.protocol import (
    EndUserState,
    StateSnapshot,
    TeamChanges,
    TeamConflict,
    TeamEntry,
    TeamState,
    UserRecord,
    UserSighting,
)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

_GET_VERSION = f"SELECT value FROM {schema.META_TABLE} WHERE key = '{schema.STATE_VERSION_KEY}'"  # noqa: S608
_BUMP_VERSION = (
    f"UPDATE {schema.META_TABLE} SET value = value + 1"  # noqa: S608
    f" WHERE key = '{schema.STATE_VERSION_KEY}' RETURNING value"
)
_SNAPSHOT = (
    f"SELECT ({_GET_VERSION}),"  # noqa: S608
    " ARRAY(SELECT team_id FROM extauthz_teams WHERE blocked),"
    " ARRAY(SELECT user_id FROM extauthz_end_users WHERE blocked),"
    " ARRAY(SELECT json_build_array(team_id, team_alias, models)::text FROM extauthz_teams"
    " WHERE registered)"
)
_UPSERT_TEAM = (
    "INSERT INTO extauthz_teams (team_id, blocked, changed_by, changed_at)"
    " VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (team_id) DO UPDATE SET blocked = excluded.blocked,"
    " changed_by = excluded.changed_by, changed_at = excluded.changed_at"
    " WHERE extauthz_teams.blocked IS DISTINCT FROM excluded.blocked"
)
_UPSERT_END_USER = (
    "INSERT INTO extauthz_end_users (user_id, blocked, changed_by, changed_at)"
    " VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (user_id) DO UPDATE SET blocked = excluded.blocked,"
    " changed_by = excluded.changed_by, changed_at = excluded.changed_at"
    " WHERE extauthz_end_users.blocked IS DISTINCT FROM excluded.blocked"
)
_UPSERT_USER = (
    "INSERT INTO extauthz_users (user_id, email, first_seen, last_seen) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (user_id) DO UPDATE SET"
    " email = COALESCE(excluded.email, extauthz_users.email),"
    " first_seen = LEAST(extauthz_users.first_seen, excluded.first_seen),"
    " last_seen = GREATEST(extauthz_users.last_seen, excluded.last_seen)"
)
_TEAM_COLUMNS = teams.COLUMNS
_SELECT_TEAM = f"SELECT {_TEAM_COLUMNS} FROM extauthz_teams WHERE team_id = %s"  # noqa: S608
_WRITE_TEAM = teams.upsert_sql("%s")
_DELETE_TEAMS = f"DELETE FROM extauthz_teams WHERE team_id = ANY(%s) RETURNING {_TEAM_COLUMNS}"  # noqa: S608
_UPSERT_REGISTERED = (
    "INSERT INTO extauthz_teams (team_id, blocked, changed_by, changed_at, registered, created_at)"
    " VALUES (%s, FALSE, %s, %s, TRUE, %s)"
    " ON CONFLICT (team_id) DO UPDATE SET registered = TRUE, created_at = excluded.created_at"
    " WHERE NOT extauthz_teams.registered"
)
_END_USER_COLUMNS = "user_id, blocked, changed_by, changed_at"
_USER_COLUMNS = "user_id, email, first_seen, last_seen"
# Detect a dead peer on an idle connection within ~25 s even without traffic (libpq settings).
_CONNECT_DEFAULTS = {
    "application_name": "extauthz",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}


def parse_postgres_url(url: str) -> dict[str, str]:
    """libpq's reading of ``url``; ``ConfigError`` naming the problem if it cannot be read."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ConfigError(
            f"{redact_url(url)} is not a valid PostgreSQL URL: {scrub_url(_first_line(exc), url)}; "
            "expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
            source="--state",
        ) from exc
    return {k: str(v) for k, v in params.items() if v is not None}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _team(row: Sequence[Any]) -> TeamState:
    return TeamState(
        row[0],
        bool(row[1]),
        row[2],
        row[3],
        row[4],
        teams.models_from_json(row[5]),
        row[6],
        bool(row[7]),
        row[8],
    )


def _team_entry(text: str) -> TeamEntry:
    """One registered team of the snapshot query: ``[team_id, team_alias, models]``."""
    team_id, alias, models = json.loads(text)
    return TeamEntry(str(team_id), alias, teams.models_from_json(models))


def _end_user(row: Sequence[Any]) -> EndUserState:
    return EndUserState(row[0], bool(row[1]), row[2], row[3])


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(row[0], row[1], float(row[2]), float(row[3]))


class PostgresStore:
    """A state store in a PostgreSQL database."""

    def __init__(
        self,
        url: str,
        *,
        op_timeout: float = 5.0,
        connect_timeout: float = 3.0,
    ) -> None:
        params = parse_postgres_url(url)
        for key, value in _CONNECT_DEFAULTS.items():
            params.setdefault(key, value)
        params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
        self._conninfo = make_conninfo("", **params)
        self.url = redact_url(url)
        self._raw_url = url  # only to scrub its secrets from errors, which /readyz shows
        self.op_timeout = op_timeout
        self.connect_timeout = connect_timeout
        self.channel = "extauthz_state"
        self._conn: Conn | None = None
        self._listen: Conn | None = None
        self._lock = asyncio.Lock()

    # -- plumbing ----------------------------------------------------------------------------

    async def _connect(self) -> Conn:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that races with completion, and a watcher that ignores stop() never ends.
        async with asyncio.timeout(self.connect_timeout + 1):
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    def _unavailable(self, exc: BaseException) -> StoreError:
        if isinstance(exc, TimeoutError):
            detail = f"no answer within {self.op_timeout:g}s"
        else:
            detail = scrub_url(_first_line(exc), self._raw_url)
        return StoreError(f"PostgreSQL state store {self.url} is unavailable: {detail}")

    async def _op(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on the query connection, (re)connecting first if needed.

        Done within ``op_timeout`` (waiting for the connection and connecting included), or
        ``StoreError``.
        """
        deadline = asyncio.get_running_loop().time() + self.op_timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError as exc:
            raise self._unavailable(exc) from exc
        try:
            async with asyncio.timeout_at(deadline):  # connecting runs no query: cancel is fine
                conn = self._conn
                if conn is None or conn.closed or conn.broken:
                    await self._discard("_conn")
                    conn = self._conn = await self._connect()
            return await self._answer_by(fn(conn), conn, deadline)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._discard("_conn")
            raise self._unavailable(exc) from exc
        finally:
            self._lock.release()

    async def _answer_by(self, query: Awaitable[T], conn: Conn, deadline: float) -> T:
        """``await query`` (running on ``conn``), or ``TimeoutError`` at ``deadline``.

        At the deadline the socket is shut down instead of the query being cancelled (see the
        module's docstring): the query then fails at once and the caller discards ``conn``.
        """
        task = asyncio.ensure_future(query)
        try:
            await asyncio.wait({task}, timeout=deadline - asyncio.get_running_loop().time())
        except asyncio.CancelledError:  # our caller gave up (stop): leave nothing running
            _shut_down(conn)
            task.add_done_callback(_retrieve)
            if self._conn is conn:
                self._conn = None
                task.add_done_callback(lambda _t: conn.pgconn.finish())
            raise
        if not task.done():
            _shut_down(conn)
            await asyncio.wait({task}, timeout=1.0)  # it fails with OperationalError at once
            if not task.done():  # pragma: no cover - a socket shut down always wakes libpq
                task.cancel()
            task.add_done_callback(_retrieve)
            raise TimeoutError
        return task.result()

    async def _discard(self, attr: str) -> None:
        conn: Conn | None = getattr(self, attr)
        setattr(self, attr, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.close()

    async def _notify(self, conn: Conn, version: int) -> None:
        await conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(version)))

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        async def migrate(conn: Conn) -> None:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            current = row[0] if row else None
            if current is None:
                raise ConfigError(
                    f"{self.url}: no schema of the search_path exists in this database; "
                    "create it (CREATE SCHEMA ...) or fix options=-csearch_path",
                    source="--state",
                )
            self.channel = f"extauthz_state.{current}"[:63]
            async with conn.transaction():
                # One replica migrates at a time; the others wait, then find nothing to do.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('extauthz_migrate.' || %s))",
                    (current,),
                )
                await conn.execute(schema.CREATE_META)
                cur = await conn.execute(
                    f"SELECT value FROM {schema.META_TABLE} WHERE key = %s",  # noqa: S608
                    (schema.SCHEMA_VERSION_KEY,),
                )
                found_row = await cur.fetchone()
                found = int(found_row[0]) if found_row else 0
                if found > schema.SCHEMA_VERSION:
                    raise ConfigError(schema.too_new_message(found, self.url), source="--state")
                for statements in schema.MIGRATIONS[found:]:
                    for statement in statements:
                        await conn.execute(statement.encode())
                await conn.execute(
                    f"INSERT INTO {schema.META_TABLE} (key, value) VALUES (%s, %s)"  # noqa: S608
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (schema.SCHEMA_VERSION_KEY, schema.SCHEMA_VERSION),
                )

        try:
            await self._op(migrate)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.OperationalError) and _is_auth_or_db_error(cause):
                raise ConfigError(str(exc), source="--state") from exc
            raise

    async def close(self) -> None:
        await self._discard("_listen")
        async with self._lock:
            await self._discard("_conn")

    # -- change notification -----------------------------------------------------------------

    async def wait_for_change(self, since: int, max_wait: float) -> None:
        try:
            if self._listen is None or self._listen.closed or self._listen.broken:
                await self._discard("_listen")
                conn = await self._connect()
                try:
                    listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
                    deadline = asyncio.get_running_loop().time() + self.op_timeout
                    await self._answer_by(conn.execute(listen), conn, deadline)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.close()
                    raise
                self._listen = conn
                return  # changes before LISTEN were not heard: let the caller re-read now
            gen = self._listen.notifies(timeout=max_wait, stop_after=1)
            async with asyncio.timeout(max_wait + self.op_timeout), contextlib.aclosing(gen):
                async for _ in gen:
                    break
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._discard("_listen")
            raise self._unavailable(exc) from exc

    # -- reads -------------------------------------------------------------------------------

    async def version(self) -> int:
        async def read(conn: Conn) -> int:
            row = await (await conn.execute(_GET_VERSION)).fetchone()
            return int(row[0]) if row else 0

        return await self._op(read)

    async def snapshot(self) -> StateSnapshot:
        async def read(conn: Conn) -> StateSnapshot:
            row = await (await conn.execute(_SNAPSHOT)).fetchone()
            if row is None:  # pragma: no cover - SELECT without FROM always returns a row
                raise StoreError("empty snapshot")
            return StateSnapshot.of(
                blocked_teams=frozenset(row[1]),
                blocked_end_users=frozenset(row[2]),
                version=int(row[0]),
                teams=[_team_entry(t) for t in row[3]],
            )

        return await self._op(read)

    async def get_team(self, team_id: str) -> TeamState | None:
        async def read(conn: Conn) -> TeamState | None:
            row = await (await conn.execute(_SELECT_TEAM, (team_id,))).fetchone()
            return None if row is None else _team(row)

        return await self._op(read)

    async def list_teams(self) -> list[TeamState]:
        async def read(conn: Conn) -> list[TeamState]:
            cur = await conn.execute(
                f"SELECT {_TEAM_COLUMNS} FROM extauthz_teams ORDER BY team_id"  # noqa: S608
            )
            return [_team(r) for r in await cur.fetchall()]

        return await self._op(read)

    async def list_end_users(self) -> list[EndUserState]:
        async def read(conn: Conn) -> list[EndUserState]:
            cur = await conn.execute(
                f"SELECT {_END_USER_COLUMNS} FROM extauthz_end_users ORDER BY user_id"  # noqa: S608
            )
            return [_end_user(r) for r in await cur.fetchall()]

        return await self._op(read)

    async def get_user(self, user_id: str) -> UserRecord | None:
        async def read(conn: Conn) -> UserRecord | None:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM extauthz_users WHERE user_id = %s",  # noqa: S608
                (user_id,),
            )
            row = await cur.fetchone()
            return None if row is None else _user(row)

        return await self._op(read)

    async def list_users(self, offset: int, limit: int) -> tuple[list[UserRecord], int]:
        async def read(conn: Conn) -> tuple[list[UserRecord], int]:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS}, count(*) OVER () FROM extauthz_users"  # noqa: S608
                " ORDER BY user_id LIMIT %s OFFSET %s",
                (limit, offset),
            )
            rows = await cur.fetchall()
            if rows:
                return [_user(r) for r in rows], int(rows[0][4])
            total = await (await conn.execute("SELECT count(*) FROM extauthz_users")).fetchone()
            return [], int(total[0]) if total else 0

        return await self._op(read)

    # -- writes ------------------------------------------------------------------------------

    async def set_team_blocked(self, team_id: str, blocked: bool, by: str, at: float) -> TeamState:
        async def write(conn: Conn) -> TeamState:
            async with conn.transaction():
                cur = await conn.execute(_UPSERT_TEAM, (team_id, blocked, by, at))
                if cur.rowcount:
                    await self._bump(conn)
                row = await (await conn.execute(_SELECT_TEAM, (team_id,))).fetchone()
            if row is None:  # pragma: no cover - the upsert guarantees the row
                raise StoreError(f"team {team_id!r} vanished during its update")
            return _team(row)

        return await self._op(write)

    async def _locked_team(self, conn: Conn, team_id: str) -> TeamState | None:
        row = await (await conn.execute(_SELECT_TEAM + " FOR UPDATE", (team_id,))).fetchone()
        return None if row is None else _team(row)

    async def _check_alias(self, conn: Conn, alias: str | None, team_id: str) -> None:
        if alias is None:
            return
        # Serialise alias claims: two replicas giving one alias to two teams at once.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('extauthz_team_alias'))")
        row = await (
            await conn.execute(
                "SELECT team_id FROM extauthz_teams WHERE team_alias = %s AND team_id <> %s",
                (alias, team_id),
            )
        ).fetchone()
        if row is not None:
            raise TeamConflict("alias_taken", f"team_alias {alias!r} is team {row[0]!r}'s")

    async def create_team(self, team: TeamState) -> TeamState:
        async def write(conn: Conn) -> TeamState:
            async with conn.transaction():
                await self._check_alias(conn, team.team_alias, team.team_id)
                # The id lock: a concurrent create of the same id waits, then sees it exists.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('extauthz_team.' || %s))",
                    (team.team_id,),
                )
                new = teams.created(await self._locked_team(conn, team.team_id), team)
                await conn.execute(_WRITE_TEAM, teams.row(new))
                await self._bump(conn)
            return new

        return await self._op(write)

    async def update_team(
        self, team_id: str, changes: TeamChanges, by: str, at: float
    ) -> TeamState:
        async def write(conn: Conn) -> TeamState:
            async with conn.transaction():
                await self._check_alias(conn, changes.team_alias, team_id)
                current = await self._locked_team(conn, team_id)
                if current is None or not current.registered:
                    raise TeamConflict("not_found", team_id)
                new = teams.changed(current, changes, by, at)
                if new is None:
                    return current
                await conn.execute(_WRITE_TEAM, teams.row(new))
                await self._bump(conn)
            return new

        return await self._op(write)

    async def delete_teams(self, team_ids: Sequence[str]) -> list[TeamState]:
        ids = list(dict.fromkeys(team_ids))

        async def write(conn: Conn) -> list[TeamState]:
            async with conn.transaction():
                cur = await conn.execute(_DELETE_TEAMS, (ids,))
                gone = {r[0]: _team(r) for r in await cur.fetchall()}
                missing = [t for t in ids if t not in gone]
                if missing:
                    raise TeamConflict("not_found", ", ".join(missing))  # rolls back
                await self._bump(conn)
            return [gone[t] for t in ids]

        return await self._op(write)

    async def upsert_teams(self, team_ids: Sequence[str], by: str, at: float) -> int:
        ids = sorted(dict.fromkeys(team_ids))  # a fixed lock order across replicas

        async def write(conn: Conn) -> int:
            async with conn.transaction():
                added = 0
                for team_id in ids:
                    cur = await conn.execute(_UPSERT_REGISTERED, (team_id, by, at, at))
                    added += max(cur.rowcount, 0)
                if added:
                    await self._bump(conn)
            return added

        return await self._op(write)

    async def _bump(self, conn: Conn) -> None:
        row = await (await conn.execute(_BUMP_VERSION)).fetchone()
        await self._notify(conn, int(row[0]) if row else 0)

    async def set_end_users_blocked(
        self, user_ids: Sequence[str], blocked: bool, by: str, at: float
    ) -> list[EndUserState]:
        ids = sorted(dict.fromkeys(user_ids))  # a fixed lock order across replicas

        async def write(conn: Conn) -> list[EndUserState]:
            async with conn.transaction():
                changed = 0
                for user_id in ids:
                    cur = await conn.execute(_UPSERT_END_USER, (user_id, blocked, by, at))
                    changed += max(cur.rowcount, 0)
                if changed:
                    await self._bump(conn)
                cur = await conn.execute(
                    f"SELECT {_END_USER_COLUMNS} FROM extauthz_end_users"  # noqa: S608
                    " WHERE user_id = ANY(%s)",
                    (ids,),
                )
                rows = {r[0]: _end_user(r) for r in await cur.fetchall()}
            return [rows[u] for u in dict.fromkeys(user_ids)]

        return await self._op(write)

    async def record_users(self, sightings: Sequence[UserSighting]) -> None:
        rows = [
            (s.user_id, s.email, s.first_seen, s.last_seen)
            for s in sorted(sightings, key=lambda s: s.user_id)  # a fixed lock order
        ]
        if not rows:
            return

        async def write(conn: Conn) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_UPSERT_USER, rows)

        await self._op(write)


def _shut_down(conn: Conn) -> None:
    """Shut the connection's socket down: whatever waits on it wakes and fails at once."""
    with (
        contextlib.suppress(Exception),  # already closed: nothing waits on it
        socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """A done callback: an abandoned query's error is expected, not "never retrieved"."""
    if not task.cancelled():
        task.exception()


def _is_auth_or_db_error(exc: psycopg.OperationalError) -> bool:
    """Failures a retry cannot fix: wrong password, unknown role or database."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in {"28P01", "28000", "3D000"}:
        return True
    text = str(exc)
    return any(
        s in text
        for s in ("password authentication failed", "does not exist", "no password supplied")
    )

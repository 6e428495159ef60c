"""The SQLite store (``sqlite:///path``): one file, shared by every process that opens it.

stdlib ``sqlite3`` on one dedicated thread (the connection never leaves it), so the event loop
never blocks on the disk. WAL mode lets readers run while a writer commits; ``busy_timeout``
waits out another process's write lock. Changes made by other processes are seen by polling the
``state_version`` counter (``wait_for_change``), a one-row read every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from extauthz.errors import ConfigError, StoreError
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

_GET_VERSION = f"SELECT value FROM {schema.META_TABLE} WHERE key = '{schema.STATE_VERSION_KEY}'"  # noqa: S608
_BUMP_VERSION = (
    f"UPDATE {schema.META_TABLE} SET value = value + 1"  # noqa: S608
    f" WHERE key = '{schema.STATE_VERSION_KEY}'"
)
_UPSERT_TEAM = (
    "INSERT INTO extauthz_teams (team_id, blocked, changed_by, changed_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (team_id) DO UPDATE SET blocked = excluded.blocked,"
    " changed_by = excluded.changed_by, changed_at = excluded.changed_at"
    " WHERE extauthz_teams.blocked <> excluded.blocked"
)
_UPSERT_END_USER = (
    "INSERT INTO extauthz_end_users (user_id, blocked, changed_by, changed_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET blocked = excluded.blocked,"
    " changed_by = excluded.changed_by, changed_at = excluded.changed_at"
    " WHERE extauthz_end_users.blocked <> excluded.blocked"
)
_UPSERT_USER = (
    "INSERT INTO extauthz_users (user_id, email, first_seen, last_seen) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET"
    " email = COALESCE(excluded.email, extauthz_users.email),"
    " first_seen = MIN(extauthz_users.first_seen, excluded.first_seen),"
    " last_seen = MAX(extauthz_users.last_seen, excluded.last_seen)"
)
_TEAM_COLUMNS = teams.COLUMNS
_SELECT_TEAM = f"SELECT {_TEAM_COLUMNS} FROM extauthz_teams WHERE team_id = ?"  # noqa: S608
_WRITE_TEAM = teams.upsert_sql("?")
_ALIAS_OWNER = "SELECT team_id FROM extauthz_teams WHERE team_alias = ? AND team_id <> ?"
_END_USER_COLUMNS = "user_id, blocked, changed_by, changed_at"
_USER_COLUMNS = "user_id, email, first_seen, last_seen"


def _team(row: tuple[object, ...]) -> TeamState:
    return TeamState(
        str(row[0]),
        bool(row[1]),
        _opt_str(row[2]),
        _opt_float(row[3]),
        _opt_str(row[4]),
        teams.models_from_json(row[5]),
        _opt_str(row[6]),
        bool(row[7]),
        _opt_float(row[8]),
    )


def _check_alias(db: sqlite3.Connection, alias: str | None, team_id: str) -> None:
    if alias is None:
        return
    row = db.execute(_ALIAS_OWNER, (alias, team_id)).fetchone()
    if row is not None:
        raise TeamConflict("alias_taken", f"team_alias {alias!r} is team {row[0]!r}'s")


def _end_user(row: tuple[object, ...]) -> EndUserState:
    return EndUserState(str(row[0]), bool(row[1]), _opt_str(row[2]), _opt_float(row[3]))


def _user(row: tuple[object, ...]) -> UserRecord:
    return UserRecord(str(row[0]), _opt_str(row[1]), _float(row[2]), _float(row[3]))


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _float(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    raise StoreError(f"unexpected value in the state store: {value!r}")


def _opt_float(value: object) -> float | None:
    return None if value is None else _float(value)


class SqliteStore:
    """A state store in one SQLite file (created on first open)."""

    def __init__(
        self,
        path: str,
        *,
        poll_interval: float = 0.5,
        op_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.poll_interval = poll_interval
        self.op_timeout = op_timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="extauthz-sqlite")
        self._db: sqlite3.Connection | None = None

    # -- plumbing: every call runs on the store's own thread --------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()

        def call() -> T:
            if self._db is None:
                raise StoreError(f"the state store {self.url} is not open")
            return fn(self._db)

        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that races with completion, and a watcher that ignores stop() never ends.
            async with asyncio.timeout(self.op_timeout):
                return await loop.run_in_executor(self._executor, call)
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.url}: {exc}") from exc
        except TimeoutError as exc:
            raise StoreError(
                f"state store {self.url}: no answer within {self.op_timeout:g}s "
                "(another process may hold a long write lock)"
            ) from exc

    @staticmethod
    def _write(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock later
        try:
            result = body(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open_sync)

    def _open_sync(self) -> None:
        path = os.path.abspath(self.path)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise ConfigError(
                f"{self.url}: directory {directory} does not exist; create it or choose "
                "another path (the database file itself is created on first start)",
                source="--state",
            )
        if os.path.isdir(path):
            raise ConfigError(f"{self.url}: {path} is a directory", source="--state")
        deadline = time.monotonic() + self.op_timeout
        while True:
            try:
                self._connect_sync()
                return
            except sqlite3.OperationalError as exc:
                # Another process switching to WAL or migrating: SQLite may answer "locked"
                # without waiting (deadlock avoidance), so wait here instead.
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise self._cannot_open(path, exc) from exc
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.url}: {exc}") from exc
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                raise self._cannot_open(path, exc) from exc

    def _cannot_open(self, path: str, exc: sqlite3.Error) -> ConfigError:
        return ConfigError(
            f"{self.url}: cannot open {path} as a SQLite database: {exc}", source="--state"
        )

    def _connect_sync(self) -> None:
        db = sqlite3.connect(
            self.path,
            timeout=self.op_timeout,
            isolation_level=None,  # autocommit; transactions are explicit (BEGIN IMMEDIATE)
            check_same_thread=False,  # created here, used only on the store's one thread
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _migrate(self, db: sqlite3.Connection) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(schema.CREATE_META)
            row = db.execute(
                f"SELECT value FROM {schema.META_TABLE} WHERE key = ?",  # noqa: S608
                (schema.SCHEMA_VERSION_KEY,),
            ).fetchone()
            found = int(row[0]) if row else 0
            if found > schema.SCHEMA_VERSION:
                raise ConfigError(schema.too_new_message(found, self.url), source="--state")
            for statements in schema.MIGRATIONS[found:]:
                for statement in statements:
                    db.execute(statement)
            db.execute(
                f"INSERT INTO {schema.META_TABLE} (key, value) VALUES (?, ?)"  # noqa: S608
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (schema.SCHEMA_VERSION_KEY, schema.SCHEMA_VERSION),
            )

        self._write(db, body)

    async def close(self) -> None:
        def close_sync() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):  # closing never raises; we are ending anyway
            await loop.run_in_executor(self._executor, close_sync)
        self._executor.shutdown(wait=False)

    # -- reads -------------------------------------------------------------------------------

    async def snapshot(self) -> StateSnapshot:
        def read(db: sqlite3.Connection) -> StateSnapshot:
            db.execute("BEGIN")  # one read transaction: the three reads see one moment
            try:
                version = int(db.execute(_GET_VERSION).fetchone()[0])
                blocked = db.execute("SELECT team_id FROM extauthz_teams WHERE blocked").fetchall()
                users = db.execute(
                    "SELECT user_id FROM extauthz_end_users WHERE blocked"
                ).fetchall()
                registered = db.execute(
                    "SELECT team_id, team_alias, models FROM extauthz_teams WHERE registered"
                ).fetchall()
            finally:
                db.execute("COMMIT")
            return StateSnapshot.of(
                blocked_teams=frozenset(str(r[0]) for r in blocked),
                blocked_end_users=frozenset(str(r[0]) for r in users),
                version=version,
                teams=[
                    TeamEntry(str(r[0]), _opt_str(r[1]), teams.models_from_json(r[2]))
                    for r in registered
                ],
            )

        return await self._run(read)

    async def version(self) -> int:
        return await self._run(lambda db: int(db.execute(_GET_VERSION).fetchone()[0]))

    async def wait_for_change(self, since: int, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        while True:
            if await self.version() != since:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(self.poll_interval, remaining))

    async def get_team(self, team_id: str) -> TeamState | None:
        def read(db: sqlite3.Connection) -> TeamState | None:
            row = db.execute(_SELECT_TEAM, (team_id,)).fetchone()
            return None if row is None else _team(row)

        return await self._run(read)

    async def list_teams(self) -> list[TeamState]:
        return await self._run(
            lambda db: [
                _team(r)
                for r in db.execute(
                    f"SELECT {_TEAM_COLUMNS} FROM extauthz_teams ORDER BY team_id"  # noqa: S608
                )
            ]
        )

    async def list_end_users(self) -> list[EndUserState]:
        return await self._run(
            lambda db: [
                _end_user(r)
                for r in db.execute(
                    f"SELECT {_END_USER_COLUMNS} FROM extauthz_end_users"  # noqa: S608
                    " ORDER BY user_id"
                )
            ]
        )

    async def get_user(self, user_id: str) -> UserRecord | None:
        def read(db: sqlite3.Connection) -> UserRecord | None:
            row = db.execute(
                f"SELECT {_USER_COLUMNS} FROM extauthz_users WHERE user_id = ?",  # noqa: S608
                (user_id,),
            ).fetchone()
            return None if row is None else _user(row)

        return await self._run(read)

    async def list_users(self, offset: int, limit: int) -> tuple[list[UserRecord], int]:
        def read(db: sqlite3.Connection) -> tuple[list[UserRecord], int]:
            db.execute("BEGIN")
            try:
                total = int(db.execute("SELECT count(*) FROM extauthz_users").fetchone()[0])
                rows = db.execute(
                    f"SELECT {_USER_COLUMNS} FROM extauthz_users"  # noqa: S608
                    " ORDER BY user_id LIMIT ? OFFSET ?",
                    (limit, offset),
                ).fetchall()
            finally:
                db.execute("COMMIT")
            return [_user(r) for r in rows], total

        return await self._run(read)

    # -- writes ------------------------------------------------------------------------------

    async def set_team_blocked(self, team_id: str, blocked: bool, by: str, at: float) -> TeamState:
        def body(db: sqlite3.Connection) -> TeamState:
            cur = db.execute(_UPSERT_TEAM, (team_id, blocked, by, at))
            if cur.rowcount:
                db.execute(_BUMP_VERSION)
            row = db.execute(_SELECT_TEAM, (team_id,)).fetchone()
            return _team(row)

        return await self._run(lambda db: self._write(db, body))

    async def create_team(self, team: TeamState) -> TeamState:
        def body(db: sqlite3.Connection) -> TeamState:
            row = db.execute(_SELECT_TEAM, (team.team_id,)).fetchone()
            new = teams.created(None if row is None else _team(row), team)
            _check_alias(db, new.team_alias, new.team_id)
            db.execute(_WRITE_TEAM, teams.row(new))
            db.execute(_BUMP_VERSION)
            return new

        return await self._run(lambda db: self._write(db, body))

    async def update_team(
        self, team_id: str, changes: TeamChanges, by: str, at: float
    ) -> TeamState:
        def body(db: sqlite3.Connection) -> TeamState:
            row = db.execute(_SELECT_TEAM, (team_id,)).fetchone()
            current = None if row is None else _team(row)
            if current is None or not current.registered:
                raise TeamConflict("not_found", team_id)
            _check_alias(db, changes.team_alias, team_id)
            new = teams.changed(current, changes, by, at)
            if new is None:
                return current
            db.execute(_WRITE_TEAM, teams.row(new))
            db.execute(_BUMP_VERSION)
            return new

        return await self._run(lambda db: self._write(db, body))

    async def delete_teams(self, team_ids: Sequence[str]) -> list[TeamState]:
        ids = list(dict.fromkeys(team_ids))

        def body(db: sqlite3.Connection) -> list[TeamState]:
            rows = {t: db.execute(_SELECT_TEAM, (t,)).fetchone() for t in ids}
            missing = [t for t, row in rows.items() if row is None]
            if missing:
                raise TeamConflict("not_found", ", ".join(missing))
            db.executemany("DELETE FROM extauthz_teams WHERE team_id = ?", [(t,) for t in ids])
            db.execute(_BUMP_VERSION)
            return [_team(row) for row in rows.values()]

        return await self._run(lambda db: self._write(db, body))

    async def upsert_teams(self, team_ids: Sequence[str], by: str, at: float) -> int:
        ids = sorted(dict.fromkeys(team_ids))

        def body(db: sqlite3.Connection) -> int:
            added = 0
            for team_id in ids:
                added += db.execute(
                    "INSERT INTO extauthz_teams (team_id, blocked, changed_by, changed_at,"
                    " registered, created_at) VALUES (?, FALSE, ?, ?, TRUE, ?)"
                    " ON CONFLICT (team_id) DO UPDATE SET registered = TRUE,"
                    " created_at = excluded.created_at WHERE NOT extauthz_teams.registered",
                    (team_id, by, at, at),
                ).rowcount
            if added:
                db.execute(_BUMP_VERSION)
            return added

        return await self._run(lambda db: self._write(db, body))

    async def set_end_users_blocked(
        self, user_ids: Sequence[str], blocked: bool, by: str, at: float
    ) -> list[EndUserState]:
        ids = list(dict.fromkeys(user_ids))

        def body(db: sqlite3.Connection) -> list[EndUserState]:
            changed = 0
            for user_id in ids:
                changed += db.execute(_UPSERT_END_USER, (user_id, blocked, by, at)).rowcount
            if changed:
                db.execute(_BUMP_VERSION)
            out = []
            for user_id in ids:
                row = db.execute(
                    f"SELECT {_END_USER_COLUMNS} FROM extauthz_end_users"  # noqa: S608
                    " WHERE user_id = ?",
                    (user_id,),
                ).fetchone()
                out.append(_end_user(row))
            return out

        return await self._run(lambda db: self._write(db, body))

    async def record_users(self, sightings: Sequence[UserSighting]) -> None:
        rows = [
            (s.user_id, s.email, s.first_seen, s.last_seen)
            for s in sorted(sightings, key=lambda s: s.user_id)
        ]
        if not rows:
            return

        def body(db: sqlite3.Connection) -> None:
            db.executemany(_UPSERT_USER, rows)

        await self._run(lambda db: self._write(db, body))

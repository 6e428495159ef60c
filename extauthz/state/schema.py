"""The state schema and its migrations, shared by the SQLite and PostgreSQL stores.

The DDL is written in the subset both dialects accept (TEXT, BOOLEAN, BIGINT, DOUBLE PRECISION),
so one list of migrations serves both. ``extauthz_meta`` holds two counters: ``schema_version``
(which migrations ran) and ``state_version`` (bumped by every write that changes a block or a
registered team; the watchers compare it to know when to re-read).

Rules for a new migration: append a tuple, never edit a released one; keep it additive where
possible so an older replica still running during a rolling upgrade keeps working.
"""

from __future__ import annotations

META_TABLE = "extauthz_meta"
SCHEMA_VERSION_KEY = "schema_version"
STATE_VERSION_KEY = "state_version"

CREATE_META = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value BIGINT NOT NULL)"
)

# MIGRATIONS[i] brings the schema from version i to version i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE extauthz_teams ("
        " team_id TEXT PRIMARY KEY,"
        " blocked BOOLEAN NOT NULL,"
        " changed_by TEXT,"
        " changed_at DOUBLE PRECISION)",
        "CREATE TABLE extauthz_end_users ("
        " user_id TEXT PRIMARY KEY,"
        " blocked BOOLEAN NOT NULL,"
        " changed_by TEXT,"
        " changed_at DOUBLE PRECISION)",
        "CREATE TABLE extauthz_users ("
        " user_id TEXT PRIMARY KEY,"
        " email TEXT,"
        " first_seen DOUBLE PRECISION NOT NULL,"
        " last_seen DOUBLE PRECISION NOT NULL)",
        f"INSERT INTO {META_TABLE} (key, value) VALUES ('{STATE_VERSION_KEY}', 0)",  # noqa: S608
    ),
    # The team registry (issue 17): LiteLLM's team fields the decision needs. ``models`` is a
    # JSON array of strings; ``registered`` tells a team made by /team/new or team_id_upsert
    # from a row made by /team/block alone (which older replicas keep writing unchanged).
    (
        "ALTER TABLE extauthz_teams ADD COLUMN team_alias TEXT",
        "ALTER TABLE extauthz_teams ADD COLUMN models TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE extauthz_teams ADD COLUMN organization_id TEXT",
        "ALTER TABLE extauthz_teams ADD COLUMN registered BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE extauthz_teams ADD COLUMN created_at DOUBLE PRECISION",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def too_new_message(found: int, where: str) -> str:
    """The start-up error when the store was migrated by a newer extauthz."""
    return (
        f"the state store at {where} has schema version {found}, newer than this extauthz "
        f"supports ({SCHEMA_VERSION}); upgrade extauthz (or point --state at another store)"
    )

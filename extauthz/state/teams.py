"""The team registry's rules shared by every store: how a change applies, how models are kept.

A store holds ``models`` as a JSON array of strings (one TEXT column in both SQL dialects); the
rules here make "what changed" the same in memory, SQLite and PostgreSQL, so an update that
changes nothing bumps no version (replicas do not re-read for it).
"""

from __future__ import annotations

import dataclasses
import json

from extauthz.errors import StoreError
from extauthz.state.protocol import TeamChanges, TeamConflict, TeamState

# The team table's columns, in the order ``row`` gives and the stores' ``_team`` readers take.
COLUMNS = (
    "team_id, blocked, changed_by, changed_at, team_alias, models, organization_id, registered,"
    " created_at"
)


def upsert_sql(param: str) -> str:
    """Write a whole team row (insert or replace every column); ``param`` is the driver's
    placeholder (``?`` for SQLite, ``%s`` for psycopg)."""
    return (
        f"INSERT INTO extauthz_teams ({COLUMNS}) VALUES ({', '.join([param] * 9)})"  # noqa: S608
        " ON CONFLICT (team_id) DO UPDATE SET blocked = excluded.blocked,"
        " changed_by = excluded.changed_by, changed_at = excluded.changed_at,"
        " team_alias = excluded.team_alias, models = excluded.models,"
        " organization_id = excluded.organization_id, registered = excluded.registered,"
        " created_at = excluded.created_at"
    )


def row(t: TeamState) -> tuple[object, ...]:
    """``t`` as the values of ``COLUMNS``."""
    return (
        t.team_id,
        t.blocked,
        t.changed_by,
        t.changed_at,
        t.team_alias,
        models_json(t.models),
        t.organization_id,
        t.registered,
        t.created_at,
    )


def models_json(models: tuple[str, ...]) -> str:
    return json.dumps(list(models), ensure_ascii=False, separators=(",", ":"))


def models_from_json(text: object) -> tuple[str, ...]:
    """A stored model list; ``StoreError`` if the column holds anything but strings."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise StoreError(f"unexpected team models in the state store: {str(text)[:100]!r}")
    return tuple(value)


def created(current: TeamState | None, team: TeamState) -> TeamState:
    """``team`` as /team/new writes it over the stored row ``current``: a row only a block or
    an unblock made keeps its block; ``TeamConflict("exists")`` for a registered team."""
    if current is None:
        return team
    if current.registered:
        raise TeamConflict("exists", f"team {team.team_id!r} exists")
    return dataclasses.replace(team, blocked=current.blocked or team.blocked)


def changed(old: TeamState, changes: TeamChanges, by: str, at: float) -> TeamState | None:
    """``old`` with ``changes`` applied and the change recorded, or None if nothing changes."""
    new = dataclasses.replace(
        old,
        team_alias=old.team_alias if changes.team_alias is None else changes.team_alias,
        models=old.models if changes.models is None else changes.models,
        organization_id=(
            old.organization_id if changes.organization_id is None else changes.organization_id
        ),
        blocked=old.blocked if changes.blocked is None else changes.blocked,
    )
    if new == old:
        return None
    return dataclasses.replace(new, changed_by=by, changed_at=at)


def registered(team_id: str, by: str, at: float) -> TeamState:
    """A team registered from a token (``team_id_upsert``): every model, not blocked."""
    return TeamState(team_id, False, by, at, registered=True, created_at=at)

"""The store protocol, the values it deals in, and the snapshot the decision core reads.

Imports nothing from adapters (gRPC, HTTP, SQL drivers): stores implement this; the watcher,
the user recorder and the admin API use it. A store method either succeeds or raises
``StoreError`` (unreachable, timed out, refused): callers map that to 503, never to a deny.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol

from extauthz.errors import StoreError

__all__ = [
    "EndUserState",
    "StateSnapshot",
    "StateStore",
    "StoreError",
    "TeamChanges",
    "TeamConflict",
    "TeamEntry",
    "TeamState",
    "UserRecord",
    "UserSighting",
]


@dataclass(frozen=True, slots=True)
class TeamEntry:
    """A registered team as decisions read it: its id, alias and model list (LiteLLM's
    meaning: empty is every model; see ``policy.teams``)."""

    team_id: str
    team_alias: str | None = None
    models: tuple[str, ...] = ()




@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """Everything run-time state contributes to a decision, as of one moment.

    ``teams`` holds the registered teams (created with /team/new or by ``team_id_upsert``);
    a team that was only ever blocked or unblocked is in ``blocked_teams`` alone. Never mutated.
    """

    blocked_teams: frozenset[str] = frozenset()
    blocked_end_users: frozenset[str] = frozenset()
    version: int = 0
    teams: Mapping[str, TeamEntry] = field(default_factory=lambda: MappingProxyType({}))
    team_aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @staticmethod
    def of(
        blocked_teams: frozenset[str],
        blocked_end_users: frozenset[str],
        version: int,
        teams: Sequence[TeamEntry] = (),
    ) -> StateSnapshot:
        """A snapshot with its alias index built (the first team by id wins an alias)."""
        by_id = {t.team_id: t for t in sorted(teams, key=lambda t: t.team_id)}
        aliases: dict[str, str] = {}
        for t in by_id.values():
            if t.team_alias is not None:
                aliases.setdefault(t.team_alias, t.team_id)
        return StateSnapshot(
            blocked_teams,
            blocked_end_users,
            version,
            MappingProxyType(by_id),
            MappingProxyType(aliases),
        )


@dataclass(frozen=True, slots=True)
class TeamState:
    """A team as the admin API shows it; ``changed_*`` say who made the last change, and when.

    ``registered``: created with /team/new or by ``team_id_upsert`` (its ``models`` apply);
    a row made only by /team/block or /team/unblock is not registered.
    """

    team_id: str
    blocked: bool
    changed_by: str | None = None
    changed_at: float | None = None
    team_alias: str | None = None
    models: tuple[str, ...] = ()
    organization_id: str | None = None
    registered: bool = False
    created_at: float | None = None

    def entry(self) -> TeamEntry:
        return TeamEntry(self.team_id, self.team_alias, self.models)


@dataclass(frozen=True, slots=True)
class TeamChanges:
    """What /team/update sets; None leaves a field as it is."""

    team_alias: str | None = None
    models: tuple[str, ...] | None = None
    organization_id: str | None = None
    blocked: bool | None = None


class TeamConflict(Exception):
    """A team write the registry's contents refuse: the id exists, is unknown, or the alias is
    another team's. The store is fine; the admin API answers 400/404."""

    def __init__(self, kind: Literal["exists", "not_found", "alias_taken"], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class EndUserState:
    """An end user (LiteLLM's "customer") as the admin API shows it."""

    user_id: str
    blocked: bool
    changed_by: str | None = None
    changed_at: float | None = None


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user seen in a valid token (``user_id_upsert``); times are epoch seconds."""

    user_id: str
    email: str | None
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class UserSighting:
    """One or more sightings of a user, coalesced: earliest and latest time seen."""

    user_id: str
    email: str | None
    first_seen: float
    last_seen: float


class StateStore(Protocol):
    """Where blocks and the user registry live. Implementations: memory, SQLite, PostgreSQL.

    Every method raises ``StoreError`` when the store cannot be reached or refuses; none
    raises anything else on purpose, except the team registry's writes, which raise
    ``TeamConflict`` when the registry's contents refuse them. Writes are idempotent: setting
    a state a row already has changes nothing (not even who changed it last) and does not
    bump the version.
    """

    url: str  # for logs and /readyz, with any password removed

    async def open(self) -> None:
        """Connect, create or migrate the schema. Raises ``StoreError`` or ``ConfigError``."""
        ...

    async def version(self) -> int:
        """The state version now: one cheap round trip (the watcher's heartbeat)."""
        ...

    async def snapshot(self) -> StateSnapshot:
        """The current state, read in full and consistently."""
        ...

    async def wait_for_change(self, since: int, max_wait: float) -> None:
        """Return once the version may differ from ``since``, or after ``max_wait`` seconds."""
        ...

    async def set_team_blocked(self, team_id: str, blocked: bool, by: str, at: float) -> TeamState:
        """Block or unblock a team (idempotent) and return its new state."""
        ...

    async def get_team(self, team_id: str) -> TeamState | None:
        """One team's state, or None if the store has never heard of it."""
        ...

    async def list_teams(self) -> list[TeamState]:
        """Every team the store knows, by team id."""
        ...

    async def create_team(self, team: TeamState) -> TeamState:
        """Register a team (/team/new); a row only blocked so far becomes registered, keeping
        its block. ``TeamConflict`` "exists" if registered already, "alias_taken"."""
        ...

    async def update_team(
        self, team_id: str, changes: TeamChanges, by: str, at: float
    ) -> TeamState:
        """Change a registered team (no-op changes bump nothing). ``TeamConflict``
        "not_found" or "alias_taken"."""
        ...

    async def delete_teams(self, team_ids: Sequence[str]) -> list[TeamState]:
        """Remove teams and their blocks, all or none, returning what was removed.
        ``TeamConflict`` "not_found" naming the ids the store does not hold."""
        ...

    async def upsert_teams(self, team_ids: Sequence[str], by: str, at: float) -> int:
        """Register teams seen in valid tokens (``team_id_upsert``) that are not registered
        yet, with every model allowed; returns how many were registered."""
        ...

    async def set_end_users_blocked(
        self, user_ids: Sequence[str], blocked: bool, by: str, at: float
    ) -> list[EndUserState]:
        """Block or unblock end users (idempotent, all or none) and return their new states."""
        ...

    async def list_end_users(self) -> list[EndUserState]:
        """Every end user the store knows, by user id."""
        ...

    async def record_users(self, sightings: Sequence[UserSighting]) -> None:
        """Insert or refresh users (email replaced when given; first/last seen widened)."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None:
        """One recorded user, or None."""
        ...

    async def list_users(self, offset: int, limit: int) -> tuple[list[UserRecord], int]:
        """A page of users by user id, and the total count."""
        ...

    async def close(self) -> None:
        """Release connections. Never raises."""
        ...

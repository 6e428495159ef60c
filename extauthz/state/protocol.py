"""The store protocol, the values it deals in, and the snapshot the decision core reads.

Imports nothing from adapters (gRPC, HTTP, SQL drivers): stores implement this; the watcher,
the user recorder and the admin API use it. A store method either succeeds or raises
``StoreError`` (unreachable, timed out, refused): callers map that to 503, never to a deny.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from extauthz.errors import StoreError

__all__ = [
    "EndUserState",
    "StateSnapshot",
    "StateStore",
    "StoreError",
    "TeamState",
    "UserRecord",
    "UserSighting",
]


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """Everything run-time state contributes to a decision, as of one moment."""

    blocked_teams: frozenset[str] = frozenset()
    blocked_end_users: frozenset[str] = frozenset()
    version: int = 0


@dataclass(frozen=True, slots=True)
class TeamState:
    """A team as the admin API shows it; ``changed_*`` say who made the last change, and when."""

    team_id: str
    blocked: bool
    changed_by: str | None = None
    changed_at: float | None = None


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
    raises anything else on purpose. Writes are idempotent: setting a state a row already has
    changes nothing (not even who changed it last) and does not bump the version.
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

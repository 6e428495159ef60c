"""The store protocol and the snapshot the decision core reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """Everything run-time state contributes to a decision, as of one moment."""

    blocked_teams: frozenset[str] = frozenset()
    blocked_end_users: frozenset[str] = frozenset()
    version: int = 0


@dataclass(frozen=True, slots=True)
class TeamState:
    """A team as the admin API shows it."""

    team_id: str
    blocked: bool
    changed_by: str | None = None
    changed_at: float | None = None


class StateStore(Protocol):
    """Where blocks live. Implementations: memory (tests, dev), SQLite, PostgreSQL."""

    async def snapshot(self) -> StateSnapshot:
        """The current state, read in full."""
        ...

    async def set_team_blocked(self, team_id: str, blocked: bool, by: str, at: float) -> TeamState:
        """Block or unblock a team (idempotent) and return its new state."""
        ...

    async def get_team(self, team_id: str) -> TeamState | None:
        """One team's state, or None if the store has never heard of it."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

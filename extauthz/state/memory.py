"""An in-memory store: the reference implementation of the protocol, for tests and dev."""

from __future__ import annotations

from extauthz.state.protocol import StateSnapshot, TeamState


class MemoryStore:
    """Keeps teams in a dict; state is lost when the process ends."""

    def __init__(self) -> None:
        self._teams: dict[str, TeamState] = {}
        self._version = 0

    async def snapshot(self) -> StateSnapshot:
        return StateSnapshot(
            blocked_teams=frozenset(t.team_id for t in self._teams.values() if t.blocked),
            version=self._version,
        )

    async def set_team_blocked(self, team_id: str, blocked: bool, by: str, at: float) -> TeamState:
        state = TeamState(team_id, blocked, by, at)
        self._teams[team_id] = state
        self._version += 1
        return state

    async def get_team(self, team_id: str) -> TeamState | None:
        return self._teams.get(team_id)

    async def close(self) -> None:
        return None

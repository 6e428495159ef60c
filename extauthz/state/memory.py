"""An in-memory store: the reference implementation of the protocol, for tests and dev.

State is lost when the process ends and is not shared between processes (``memory://``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence

from extauthz.state import teams
from extauthz.state.protocol import (
    EndUserState,
    StateSnapshot,
    TeamChanges,
    TeamConflict,
    TeamState,
    UserRecord,
    UserSighting,
)


class MemoryStore:
    """Keeps teams, end users and users in dicts."""

    url = "memory://"

    def __init__(self) -> None:
        self._teams: dict[str, TeamState] = {}
        self._end_users: dict[str, EndUserState] = {}
        self._users: dict[str, UserRecord] = {}
        self._version = 0
        self._changed = asyncio.Event()

    async def open(self) -> None:
        return None

    async def version(self) -> int:
        return self._version

    async def snapshot(self) -> StateSnapshot:
        return StateSnapshot.of(
            blocked_teams=frozenset(t.team_id for t in self._teams.values() if t.blocked),
            blocked_end_users=frozenset(u.user_id for u in self._end_users.values() if u.blocked),
            version=self._version,
            teams=[t.entry() for t in self._teams.values() if t.registered],
        )

    async def wait_for_change(self, since: int, max_wait: float) -> None:
        if self._version != since:
            return
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._changed.wait()

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()

    async def set_team_blocked(self, team_id: str, blocked: bool, by: str, at: float) -> TeamState:
        current = self._teams.get(team_id)
        if current is not None and current.blocked == blocked:
            return current
        state = (
            TeamState(team_id, blocked, by, at)
            if current is None
            else dataclasses.replace(current, blocked=blocked, changed_by=by, changed_at=at)
        )
        self._teams[team_id] = state
        self._bump()
        return state

    async def get_team(self, team_id: str) -> TeamState | None:
        return self._teams.get(team_id)

    async def list_teams(self) -> list[TeamState]:
        return [self._teams[k] for k in sorted(self._teams)]

    def _alias_free(self, alias: str | None, team_id: str) -> None:
        for t in self._teams.values():
            if alias is not None and t.team_alias == alias and t.team_id != team_id:
                raise TeamConflict("alias_taken", f"team_alias {alias!r} is team {t.team_id!r}'s")

    async def create_team(self, team: TeamState) -> TeamState:
        team = teams.created(self._teams.get(team.team_id), team)
        self._alias_free(team.team_alias, team.team_id)
        self._teams[team.team_id] = team
        self._bump()
        return team

    async def update_team(
        self, team_id: str, changes: TeamChanges, by: str, at: float
    ) -> TeamState:
        current = self._teams.get(team_id)
        if current is None or not current.registered:
            raise TeamConflict("not_found", team_id)
        self._alias_free(changes.team_alias, team_id)
        new = teams.changed(current, changes, by, at)
        if new is None:
            return current
        self._teams[team_id] = new
        self._bump()
        return new

    async def delete_teams(self, team_ids: Sequence[str]) -> list[TeamState]:
        ids = list(dict.fromkeys(team_ids))
        missing = [t for t in ids if t not in self._teams]
        if missing:
            raise TeamConflict("not_found", ", ".join(missing))
        gone = [self._teams.pop(t) for t in ids]
        self._bump()
        return gone

    async def upsert_teams(self, team_ids: Sequence[str], by: str, at: float) -> int:
        added = 0
        for team_id in dict.fromkeys(team_ids):
            current = self._teams.get(team_id)
            if current is None:
                self._teams[team_id] = teams.registered(team_id, by, at)
            elif not current.registered:
                self._teams[team_id] = dataclasses.replace(current, registered=True, created_at=at)
            else:
                continue
            added += 1
        if added:
            self._bump()
        return added

    async def set_end_users_blocked(
        self, user_ids: Sequence[str], blocked: bool, by: str, at: float
    ) -> list[EndUserState]:
        out: list[EndUserState] = []
        changed = False
        for user_id in dict.fromkeys(user_ids):
            current = self._end_users.get(user_id)
            if current is None or current.blocked != blocked:
                current = EndUserState(user_id, blocked, by, at)
                self._end_users[user_id] = current
                changed = True
            out.append(current)
        if changed:
            self._bump()
        return out

    async def list_end_users(self) -> list[EndUserState]:
        return [self._end_users[k] for k in sorted(self._end_users)]

    async def record_users(self, sightings: Sequence[UserSighting]) -> None:
        for s in sightings:
            old = self._users.get(s.user_id)
            if old is None:
                self._users[s.user_id] = UserRecord(s.user_id, s.email, s.first_seen, s.last_seen)
            else:
                self._users[s.user_id] = UserRecord(
                    s.user_id,
                    s.email if s.email is not None else old.email,
                    min(old.first_seen, s.first_seen),
                    max(old.last_seen, s.last_seen),
                )

    async def get_user(self, user_id: str) -> UserRecord | None:
        return self._users.get(user_id)

    async def list_users(self, offset: int, limit: int) -> tuple[list[UserRecord], int]:
        keys = sorted(self._users)
        return [self._users[k] for k in keys[offset : offset + limit]], len(keys)

    async def close(self) -> None:
        return None

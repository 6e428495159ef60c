"""The admin API's core, shared by the HTTP (``http_api``) and gRPC (``admin_grpc``) adapters.

Protocol-free: callers pass request headers and plain values, and get plain values back or an
``AdminError`` carrying the HTTP status, a stable reason and a message that says what to fix.

Security rules:
- every call authenticates itself with the same pipeline as ext_authz (master key, or a verified
  JWT whose role resolves to proxy_admin); it never trusts that Envoy checked first;
- 401 for no or bad credential, 403 for a verified caller who is not an admin;
- messages never echo a credential.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from extauthz.admin import teams as team_input
from extauthz.authorizer import Authorizer, explain_request
from extauthz.errors import StoreError
from extauthz.identity.credentials import extract_credential
from extauthz.model import (
    MASTER_KEY,
    PASSTHROUGH,
    Decision,
    Deny,
    Identity,
    Reason,
    Role,
    Verdict,
    deny_headers,
)
from extauthz.policy.decide import resolve_role
from extauthz.policy.verdict import render
from extauthz.state.protocol import (
    EndUserState,
    StateStore,
    TeamConflict,
    TeamState,
    UserRecord,
)
from extauthz.state.users import pause_recording
from extauthz.state.watcher import StateWatcher

log = logging.getLogger("extauthz.admin")
T = TypeVar("T")

MAX_IDS_PER_CALL = 1000
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000
MAX_PAGE = 2**31 - 1  # the gRPC API's int32; (page - 1) * page_size stays within SQL's int64
MAX_EXPLAIN_BODY = 1024 * 1024

# Stable reasons of admin errors (the x-extauthz-reason header and metric labels).


class AdminError(Exception):
    """An admin call that cannot be served: status, stable reason, message, extra headers."""

    def __init__(
        self,
        status: int,
        reason: Reason,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers


def bad_request(message: str) -> AdminError:
    return AdminError(400, Reason.BAD_REQUEST, message)


def check_id(value: object, field: str) -> str:
    """``team_input.check_id``, refused with a 400."""
    try:
        return team_input.check_id(value, field)
    except team_input.BadTeamInput as exc:
        raise bad_request(str(exc)) from None


def check_ids(value: object, field: str) -> list[str]:
    """A non-empty list of ids (at most 1000), each checked like ``check_id``."""
    if not isinstance(value, list):
        raise bad_request(f'{field} must be a list of ids, e.g. {{"{field}": ["u1"]}}')
    if not value:
        raise bad_request(f"{field} must not be empty")
    if len(value) > MAX_IDS_PER_CALL:
        raise bad_request(f"{field} has more than {MAX_IDS_PER_CALL} entries; send several calls")
    return [check_id(v, f"{field}[{i}]") for i, v in enumerate(value)]


def caller_name(identity: Identity) -> str:
    """Who made a change, as recorded with it (never the credential itself)."""
    if identity.kind == MASTER_KEY:
        return "master_key"
    return identity.user_id or identity.subject or identity.email or identity.team_id or "jwt"


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[UserRecord]
    total: int
    page: int
    page_size: int

    @property
    def total_pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision for a hypothetical request, as the sidecar would take it now."""

    decision: Decision
    verdict: Verdict
    state_version: int


class AdminService:
    """Authenticates admin calls and carries them out against the store."""

    def __init__(
        self,
        authorizer: Authorizer,
        store: StateStore,
        watcher: StateWatcher,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authorizer = authorizer
        self.store = store
        self.watcher = watcher
        self._clock = clock

    # -- authentication ----------------------------------------------------------------------

    async def authenticate(self, headers: Mapping[str, str]) -> str:
        """The admin's name for the audit trail; ``AdminError`` 401/403/503 otherwise."""
        policy = self.authorizer.policy
        credential = extract_credential(headers, policy.gate.key_header)
        if credential is None:
            raise self._deny(
                Deny(
                    401,
                    Reason.MISSING_CREDENTIAL,
                    "no credential: the admin API needs 'Authorization: Bearer TOKEN' with the "
                    f"master key or a JWT carrying scope {policy.admin_scope}",
                )
            )
        identity = await self.authorizer.authenticate(credential, policy)
        if isinstance(identity, Deny):
            raise self._deny(identity)
        if identity.kind == PASSTHROUGH:
            raise self._deny(
                Deny(
                    401,
                    Reason.INVALID_API_KEY,
                    "the admin API needs the master key or an admin JWT; this key is unknown",
                )
            )
        if resolve_role(identity, policy) is not Role.PROXY_ADMIN:
            raise AdminError(
                403,
                Reason.NOT_ADMIN,
                f"the admin API needs the master key or a token with scope "
                f"{policy.admin_scope!r} (role proxy_admin); this caller is not an admin",
                tuple(deny_headers(Reason.NOT_ADMIN, 403)),
            )
        return caller_name(identity)

    def _deny(self, deny: Deny) -> AdminError:
        verdict = render(deny, self.authorizer.policy)
        return AdminError(deny.status, deny.reason, deny.message, verdict.headers)

    # -- store calls -------------------------------------------------------------------------

    def _store_down(self, exc: StoreError, writing: bool) -> AdminError:
        log.warning("admin call failed: state store unavailable", extra={"error": str(exc)})
        what = "the change was NOT made" if writing else "the store cannot be read"
        return AdminError(
            503,
            Reason.STORE_UNAVAILABLE,
            f"the state store is unavailable, so {what}; blocks already in force are still "
            f"enforced; retry later ({exc})",
        )

    async def _published(self) -> None:
        """Make a write this replica made visible to its own decisions at once."""
        # The write is committed; if this read fails the watcher publishes it when it can.
        with contextlib.suppress(StoreError):
            await self.watcher.sync()

    async def set_team_blocked(self, by: str, team_id: object, blocked: bool) -> TeamState:
        team = check_id(team_id, "team_id")
        return await self._write(
            self.store.set_team_blocked(team, blocked, by, self._clock()),
            "team blocked" if blocked else "team unblocked",
            {"team_id": team, "by": by},
        )

    async def get_team(self, team_id: object) -> TeamState:
        team = check_id(team_id, "team_id")
        try:
            state = await self.store.get_team(team)
        except StoreError as exc:
            raise self._store_down(exc, writing=False) from exc
        if state is None:
            raise AdminError(
                404,
                Reason.NOT_FOUND,
                f"team not found, passed team_id={team}: it was never created (POST /team/new), "
                "blocked or unblocked here, so it is not blocked",
            )
        return state

    async def _write(
        self, write: Awaitable[T], what: str, extra: dict[str, Any], team_id: str = ""
    ) -> T:
        """Run a store write, log it and publish it: 400/404 for what the team registry
        refuses, 503 store down."""
        try:
            result = await write
        except TeamConflict as exc:
            if exc.kind == "not_found":
                raise AdminError(
                    404,
                    Reason.NOT_FOUND,
                    f"team not found, passed team_id={exc.detail}; create it with POST /team/new",
                ) from None
            if exc.kind == "exists":
                raise bad_request(
                    f"Team id = {team_id} already exists. Please use a different team id "
                    "(or POST /team/update to change it)"
                ) from None
            raise bad_request(f"{exc.detail}; aliases name one team each") from None
        except StoreError as exc:
            raise self._store_down(exc, writing=True) from exc
        log.info(what, extra=extra)
        await self._published()
        return result

    async def new_team(self, by: str, data: Mapping[str, Any]) -> TeamState:
        """/team/new: register a team with its alias and models (400 if it exists)."""
        try:
            team = team_input.new_team(data, by, self._clock())
        except team_input.BadTeamInput as exc:
            raise bad_request(str(exc)) from None
        return await self._write(
            self.store.create_team(team),
            "team created",
            {"team_id": team.team_id, "models": list(team.models)[:20], "by": by},
            team.team_id,
        )

    async def update_team(self, by: str, data: Mapping[str, Any]) -> TeamState:
        """/team/update: change a registered team's alias, models, org or block."""
        try:
            team_id, changes = team_input.team_update(data)
        except team_input.BadTeamInput as exc:
            raise bad_request(str(exc)) from None
        return await self._write(
            self.store.update_team(team_id, changes, by, self._clock()),
            "team updated",
            {"team_id": team_id, "by": by},
        )

    async def delete_teams(self, by: str, team_ids: object) -> list[TeamState]:
        """/team/delete: remove teams (and their blocks), all or none."""
        ids = check_ids(team_ids, "team_ids")
        return await self._write(
            self.store.delete_teams(ids),
            "teams deleted",
            {"team_ids": ids[:20], "count": len(ids), "by": by},
        )

    async def list_teams(self) -> list[TeamState]:
        try:
            return await self.store.list_teams()
        except StoreError as exc:
            raise self._store_down(exc, writing=False) from exc

    async def get_user(self, user_id: object) -> UserRecord:
        user = check_id(user_id, "user_id")
        try:
            record = await self.store.get_user(user)
        except StoreError as exc:
            raise self._store_down(exc, writing=False) from exc
        if record is None:
            hint = (
                ""
                if self.authorizer.policy.user_id_upsert
                else " (users are recorded only with general_settings.litellm_jwtauth."
                "user_id_upsert: true)"
            )
            raise AdminError(404, Reason.NOT_FOUND, f"user not found, passed user_id={user}{hint}")
        return record

    async def list_users(self, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> UserPage:
        if not 1 <= page <= MAX_PAGE:
            raise bad_request(f"page must be a whole number from 1 to {MAX_PAGE}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise bad_request(f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}")
        try:
            users, total = await self.store.list_users((page - 1) * page_size, page_size)
        except StoreError as exc:
            raise self._store_down(exc, writing=False) from exc
        return UserPage(users, total, page, page_size)

    async def set_end_users_blocked(
        self, by: str, user_ids: object, blocked: bool
    ) -> list[EndUserState]:
        ids = check_ids(user_ids, "user_ids")
        return await self._write(
            self.store.set_end_users_blocked(ids, blocked, by, self._clock()),
            "end users blocked" if blocked else "end users unblocked",
            {"user_ids": ids[:20], "count": len(ids), "by": by},
        )

    async def list_end_users(self) -> list[EndUserState]:
        try:
            return await self.store.list_end_users()
        except StoreError as exc:
            raise self._store_down(exc, writing=False) from exc

    # -- explain -----------------------------------------------------------------------------

    async def explain(
        self,
        token: str,
        method: str,
        path: str,
        body: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Explanation:
        """Decide a request carrying ``token`` as the sidecar would now (never raises on it)."""
        if not path:
            raise bad_request("path is required, e.g. /v1/chat/completions")
        raw = body.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_EXPLAIN_BODY:
            raise bad_request(f"body is larger than {MAX_EXPLAIN_BODY} bytes")
        view = explain_request(token, method, path, raw, headers)
        state_version = self.authorizer.state.current.version
        with pause_recording():  # explaining a token is not seeing its user
            decision = await self.authorizer.authorize(view)
        return Explanation(decision, render(decision, self.authorizer.policy), state_version)

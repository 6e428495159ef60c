"""``extauthz.admin.v1.Admin`` over gRPC: the admin API for operators with grpcurl.

Served on the ext_authz port with reflection. Authentication reads the ``authorization``
metadata (and LiteLLM's other key headers) with the same rules as HTTP; errors become gRPC
status codes (401 → UNAUTHENTICATED, 403 → PERMISSION_DENIED, 400 → INVALID_ARGUMENT,
404 → NOT_FOUND, 503 → UNAVAILABLE) with the same message the HTTP API would send.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from extauthz import metrics, threads
from extauthz._gen.extauthz.admin.v1 import admin_pb2 as pb
from extauthz._gen.extauthz.admin.v1 import admin_pb2_grpc as pb_grpc
from extauthz.admin.service import AdminError, AdminService, Explanation
from extauthz.model import Allow, Deny
from extauthz.state.protocol import EndUserState, TeamState, UserRecord

log = logging.getLogger("extauthz.admin")

ADMIN_SERVICE: str = pb.DESCRIPTOR.services_by_name["Admin"].full_name
TRANSPORT = "grpc"
T = TypeVar("T")
# How long a sync-server thread waits for an admin call on the event loop. The threads are the
# ext_authz Check threads too: a stuck loop or store must not hold them all. A call is a few
# store operations, each bounded by the store's op_timeout (5 s by default).
ADMIN_CALL_SECONDS = 30.0

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    503: grpc.StatusCode.UNAVAILABLE,
}


def _timestamp(at: float | None) -> timestamp_pb2.Timestamp | None:
    if at is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(at * 1e9))
    return ts


def team_message(t: TeamState) -> pb.Team:
    return pb.Team(
        team_id=t.team_id,
        blocked=t.blocked,
        changed_by=t.changed_by or "",
        changed_at=_timestamp(t.changed_at),
        team_alias=t.team_alias or "",
        models=list(t.models),
        organization_id=t.organization_id or "",
        registered=t.registered,
        created_at=_timestamp(t.created_at),
    )


def new_team_fields(r: pb.NewTeamRequest) -> dict[str, Any]:
    """A NewTeamRequest as /team/new's body (proto3's empty string: not given)."""
    data: dict[str, Any] = {"models": list(r.models), "blocked": r.blocked}
    for name in ("team_id", "team_alias", "organization_id"):
        if getattr(r, name):
            data[name] = getattr(r, name)
    return data


def update_team_fields(r: pb.UpdateTeamRequest) -> dict[str, Any]:
    """An UpdateTeamRequest as /team/update's body (only the fields set)."""
    data: dict[str, Any] = {"team_id": r.team_id}
    for name in ("team_alias", "organization_id", "blocked"):
        if r.HasField(name):
            data[name] = getattr(r, name)
    if r.HasField("models"):
        data["models"] = list(r.models.models)
    return data


def end_user_message(u: EndUserState) -> pb.EndUser:
    return pb.EndUser(
        user_id=u.user_id,
        blocked=u.blocked,
        changed_by=u.changed_by or "",
        changed_at=_timestamp(u.changed_at),
    )


def user_message(u: UserRecord) -> pb.User:
    return pb.User(
        user_id=u.user_id,
        email=u.email or "",
        first_seen=_timestamp(u.first_seen),
        last_seen=_timestamp(u.last_seen),
    )


def explain_message(e: Explanation) -> pb.ExplainResponse:
    decision, verdict = e.decision, e.verdict
    ident = decision.identity
    identity = (
        pb.Identity(
            kind=ident.kind,
            user_id=ident.user_id or "",
            team_id=ident.team_id or "",
            org_id=ident.org_id or "",
            end_user_id=ident.end_user_id or "",
            email=ident.email or "",
        )
        if ident is not None
        else None
    )
    allowed = isinstance(decision, Allow)
    return pb.ExplainResponse(
        allowed=verdict.allowed,
        status=verdict.status,
        reason=verdict.reason.value,
        message=decision.message if isinstance(decision, Deny) else "",
        role=decision.role.value if decision.role else "",
        identity=identity,
        set_headers=dict(verdict.headers) if allowed else {},
        remove_headers=list(verdict.remove),
        metadata=dict(verdict.metadata),
        state_version=e.state_version,
    )


class AdminServicer(pb_grpc.AdminServicer):
    """The gRPC face of ``AdminService``."""

    def __init__(self, admin: AdminService) -> None:
        self._admin = admin

    async def _call(
        self,
        operation: str,
        context: grpc.aio.ServicerContext,
        body: Callable[[str], Awaitable[T]],
    ) -> T:
        headers: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, str):
                headers[key.lower()] = value
        try:
            caller = await self._admin.authenticate(headers)
            result = await body(caller)
        except AdminError as err:
            metrics.ADMIN_REQUESTS.labels(operation, TRANSPORT, str(err.status)).inc()
            await context.abort(_CODES.get(err.status, grpc.StatusCode.INTERNAL), err.message)
            raise AssertionError("unreachable: abort raises") from None
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            log.error(
                "admin call failed",
                extra={"operation": operation, "error_type": type(exc).__name__},
            )
            metrics.ADMIN_REQUESTS.labels(operation, TRANSPORT, "500").inc()
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the admin API")
            raise AssertionError("unreachable: abort raises") from None
        metrics.ADMIN_REQUESTS.labels(operation, TRANSPORT, "200").inc()
        return result

    async def NewTeam(
        self, request: pb.NewTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.Team:
        async def body(caller: str) -> pb.Team:
            return team_message(await self._admin.new_team(caller, new_team_fields(request)))

        return await self._call("team_new", context, body)

    async def UpdateTeam(
        self, request: pb.UpdateTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.Team:
        async def body(caller: str) -> pb.Team:
            return team_message(await self._admin.update_team(caller, update_team_fields(request)))

        return await self._call("team_update", context, body)

    async def DeleteTeams(
        self, request: pb.DeleteTeamsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTeamsResponse:
        async def body(caller: str) -> pb.ListTeamsResponse:
            gone = await self._admin.delete_teams(caller, list(request.team_ids))
            return pb.ListTeamsResponse(teams=[team_message(t) for t in gone])

        return await self._call("team_delete", context, body)

    async def BlockTeam(
        self, request: pb.BlockTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.Team:
        async def body(caller: str) -> pb.Team:
            return team_message(await self._admin.set_team_blocked(caller, request.team_id, True))

        return await self._call("team_block", context, body)

    async def UnblockTeam(
        self, request: pb.UnblockTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.Team:
        async def body(caller: str) -> pb.Team:
            return team_message(await self._admin.set_team_blocked(caller, request.team_id, False))

        return await self._call("team_unblock", context, body)

    async def GetTeam(
        self, request: pb.GetTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.Team:
        async def body(_caller: str) -> pb.Team:
            return team_message(await self._admin.get_team(request.team_id))

        return await self._call("team_info", context, body)

    async def ListTeams(
        self, request: pb.ListTeamsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTeamsResponse:
        async def body(_caller: str) -> pb.ListTeamsResponse:
            teams = await self._admin.list_teams()
            return pb.ListTeamsResponse(teams=[team_message(t) for t in teams])

        return await self._call("team_list", context, body)

    async def GetUser(
        self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.User:
        async def body(_caller: str) -> pb.User:
            return user_message(await self._admin.get_user(request.user_id))

        return await self._call("user_info", context, body)

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        async def body(_caller: str) -> pb.ListUsersResponse:
            page = await self._admin.list_users(request.page or 1, request.page_size or 25)
            return pb.ListUsersResponse(
                users=[user_message(u) for u in page.users],
                total=page.total,
                page=page.page,
                page_size=page.page_size,
                total_pages=page.total_pages,
            )

        return await self._call("user_list", context, body)

    async def BlockEndUsers(
        self, request: pb.EndUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndUsersResponse:
        async def body(caller: str) -> pb.EndUsersResponse:
            states = await self._admin.set_end_users_blocked(caller, list(request.user_ids), True)
            return pb.EndUsersResponse(end_users=[end_user_message(s) for s in states])

        return await self._call("customer_block", context, body)

    async def UnblockEndUsers(
        self, request: pb.EndUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndUsersResponse:
        async def body(caller: str) -> pb.EndUsersResponse:
            states = await self._admin.set_end_users_blocked(caller, list(request.user_ids), False)
            return pb.EndUsersResponse(end_users=[end_user_message(s) for s in states])

        return await self._call("customer_unblock", context, body)

    async def ListEndUsers(
        self, request: pb.ListEndUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndUsersResponse:
        async def body(_caller: str) -> pb.EndUsersResponse:
            states = await self._admin.list_end_users()
            return pb.EndUsersResponse(end_users=[end_user_message(s) for s in states])

        return await self._call("customer_list", context, body)

    async def Explain(
        self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainResponse:
        async def body(_caller: str) -> pb.ExplainResponse:
            explanation = await self._admin.explain(
                request.token, request.method, request.path, request.body, dict(request.headers)
            )
            return explain_message(explanation)

        return await self._call("explain", context, body)


class _Aborted(grpc.aio.AbortError):  # type: ignore[misc]
    """``abort`` on the loop side of a blocking call: carried back to the server's thread."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class _LoopContext:
    """The part of ``grpc.aio.ServicerContext`` the servicer uses, over a sync server's context."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details)


class BlockingAdminServicer:
    """``AdminServicer`` for grpcio's sync server: each call runs on the sidecar's event loop
    (where the store lives) while the server's thread waits for its answer."""

    def __init__(self, admin: AdminService, loop: asyncio.AbstractEventLoop) -> None:
        servicer = AdminServicer(admin)
        for method in pb.DESCRIPTOR.services_by_name["Admin"].methods:
            rpc = getattr(servicer, method.name)
            setattr(self, method.name, functools.partial(_on_loop, rpc, loop))


def _on_loop(
    method: Callable[[Any, Any], Coroutine[Any, Any, T]],
    loop: asyncio.AbstractEventLoop,
    request: Any,
    context: grpc.ServicerContext,
) -> T:
    future = asyncio.run_coroutine_threadsafe(method(request, _LoopContext(context)), loop)
    remaining = context.time_remaining()
    wait = ADMIN_CALL_SECONDS if remaining is None else min(remaining, ADMIN_CALL_SECONDS)
    try:
        return threads.wait(future, wait)
    except concurrent.futures.TimeoutError:
        future.cancel()
        context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"the admin call did not finish within {wait:.0f} s (state store slow or "
            "unreachable); retry",
        )
        raise AssertionError("unreachable: abort raises") from None
    except _Aborted as aborted:
        context.abort(aborted.code, aborted.details)
        raise AssertionError("unreachable: abort raises") from None


def add_admin_service(
    server: grpc.aio.Server | grpc.Server,
    admin: AdminService,
    loop: asyncio.AbstractEventLoop | None = None,
) -> str:
    """Register the admin service on ``server`` (a sync server needs the ``loop`` its calls run
    on); returns its full name (for reflection)."""
    servicer = AdminServicer(admin) if loop is None else BlockingAdminServicer(admin, loop)
    pb_grpc.add_AdminServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    return ADMIN_SERVICE

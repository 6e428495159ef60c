"""The sidecar's HTTP side (``--http-address``): /healthz, /readyz, /metrics and the admin API.

Admin routes, in LiteLLM's shapes where LiteLLM has them (Envoy routes /team/, /user/ and
/customer/ here; every call is authenticated again here, never trusting that Envoy checked):

    POST /team/new {"team_id", "team_alias", "models", "blocked", "organization_id"} → the team
    POST /team/update {"team_id", ...fields to change}   POST /team/delete {"team_ids"}
    POST /team/block {"team_id"}        POST /team/unblock {"team_id"}    → the team's state
    GET  /team/info?team_id=            GET  /team/list
    GET  /user/info?user_id=            GET  /user/list?page=&page_size=
    POST /customer/block {"user_ids"}   POST /customer/unblock {"user_ids"}
    GET  /customer/list

Errors carry the sidecar's deny body (``{"error": {"message", "type", "code"}}``) and an
``x-extauthz-reason`` header. Every bad input is a 400 saying what is wrong (never a 500): bodies
are uncompressed UTF-8 JSON objects with only the call's fields, each once, capped at 16 KiB
(413 beyond); query parameters are UTF-8, each given at most once; numbers are digits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from extauthz import metrics as prom
from extauthz.admin.service import (
    DEFAULT_PAGE_SIZE,
    AdminError,
    AdminService,
    UserPage,
    bad_request,
)
from extauthz.model import Reason, deny_body, deny_headers
from extauthz.policy.admin_paths import ADMIN_API_ROUTES
from extauthz.state.protocol import EndUserState, TeamState, UserRecord

ReadinessProbe = Callable[[], tuple[bool, dict[str, Any]]]
MAX_ADMIN_BODY = 16 * 1024
MAX_QUERY_FIELDS = 16
TRANSPORT = "http"
NEW_TEAM_EXAMPLE = '{"team_id": "eng", "team_alias": "Engineering", "models": ["gpt-4o"]}'
log = logging.getLogger("extauthz.admin")


def iso_time(at: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC (``2026-11-23T10:00:00.123Z``), or None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def team_json(t: TeamState) -> dict[str, Any]:
    """LiteLLM's team fields (those the sidecar keeps), and who changed it last, and when."""
    return {
        "team_id": t.team_id,
        "team_alias": t.team_alias,
        "organization_id": t.organization_id,
        "models": list(t.models),
        "blocked": t.blocked,
        "registered": t.registered,
        "created_at": iso_time(t.created_at),
        "updated_at": iso_time(t.changed_at),
        "changed_by": t.changed_by,
        "changed_at": iso_time(t.changed_at),
    }


def end_user_json(u: EndUserState) -> dict[str, Any]:
    return {
        "user_id": u.user_id,
        "blocked": u.blocked,
        "changed_by": u.changed_by,
        "changed_at": iso_time(u.changed_at),
    }


def user_json(u: UserRecord) -> dict[str, Any]:
    return {
        "user_id": u.user_id,
        "user_email": u.email,
        "first_seen": iso_time(u.first_seen),
        "last_seen": iso_time(u.last_seen),
    }


def user_page_json(p: UserPage) -> dict[str, Any]:
    return {
        "users": [user_json(u) for u in p.users],
        "total": p.total,
        "page": p.page,
        "page_size": p.page_size,
        "total_pages": p.total_pages,
    }


def error_response(err: AdminError) -> web.Response:
    headers = dict(deny_headers(err.reason, err.status))
    headers.update(dict(err.headers))
    return web.Response(status=err.status, body=deny_body(err.status, err.message), headers=headers)


async def read_json_object(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object with only ``fields``; ``AdminError`` 400/413 otherwise."""
    example = json.dumps({f: "..." for f in fields})
    data = await read_any_object(request, example)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise bad_request(
            f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(fields)}"
        )
    for f in fields:
        if f not in data:
            raise bad_request(f"missing field {f!r}; send {example}")
    return data


async def read_any_object(request: web.Request, example: str) -> dict[str, Any]:
    """The body as a JSON object (the caller checks its fields); ``AdminError`` 400/413."""
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise bad_request(
            f"the admin API takes the body uncompressed: drop Content-Encoding and send {example}"
        )
    too_large = AdminError(413, Reason.BODY_TOO_LARGE, f"body larger than {MAX_ADMIN_BODY} bytes")
    if request.content_length is not None and request.content_length > MAX_ADMIN_BODY:
        raise too_large
    try:
        raw = await request.read()  # the whole body (chunked too), capped by client_max_size
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except RequestPayloadError:
        raise bad_request(f"the body could not be read (broken framing); send {example}") from None
    if len(raw) > MAX_ADMIN_BODY:
        raise too_large
    data = _parse_json(raw, example)
    if not isinstance(data, dict):
        raise bad_request(f"the body must be a JSON object like {example}")
    return data


def _parse_json(raw: bytes, example: str) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity, no key twice in an object; ``AdminError`` 400."""

    def constant(name: str) -> Any:
        raise bad_request(f"the body is not JSON ({name} is not a JSON value); send {example}")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise bad_request(f"the body names {key[:64]!r} twice; send each field once")
            seen.add(key)
        return dict(pairs)

    if not raw.strip():
        raise bad_request(f"the body must be a JSON object like {example}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(f"the body is not UTF-8; send JSON like {example}") from None
    def integer(digits: str) -> int:
        # Ids may be integers (4242 is "4242"); no id is longer than 1024 characters, which also
        # keeps Python's 4,300-digit int limit out of reach.
        if len(digits) > 1024:
            raise bad_request("the body holds a number longer than 1024 digits; no id is that long")
        return int(digits)

    decoder = json.JSONDecoder(object_pairs_hook=unique, parse_constant=constant, parse_int=integer)
    try:
        return decoder.decode(text)
    except ValueError as exc:  # JSONDecodeError, and whatever else the parser refuses
        raise bad_request(f"the body is not JSON ({exc}); send {example}") from None
    except RecursionError:
        raise bad_request(
            f"the body nests JSON too deeply for the parser; an admin call needs two levels: "
            f"send {example}"
        ) from None


def _query(request: web.Request) -> dict[str, str]:
    """The query string's parameters; ``AdminError`` 400 if one is given twice or is not UTF-8."""
    try:
        parsed = parse_qs(
            request.rel_url.raw_query_string,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise bad_request(
            "the query string's percent-escapes do not decode as UTF-8; encode values as UTF-8"
        ) from None
    except ValueError:
        raise bad_request(f"the query string has more than {MAX_QUERY_FIELDS} parameters") from None
    twice = [name for name, values in parsed.items() if len(values) > 1]
    if twice:
        raise bad_request(f"query parameter {twice[0][:64]!r} is given twice; send it once")
    return {name: values[0] for name, values in parsed.items()}


def _query_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request(f"{name} must be a whole number written in digits (0-9), e.g. {name}=2")
    digits = raw.lstrip("0") or "0"
    # More digits than any limit has: refused by the range check, without converting them all.
    return int(digits) if len(digits) <= 19 else 10**19


def _query_id(query: Mapping[str, str], name: str, path: str) -> str:
    value = query.get(name)
    if value is None:
        raise bad_request(f"missing query parameter {name}: {path}?{name}=...")
    return value


AdminHandler = Callable[[web.Request, str], Awaitable[Any]]


def _admin_routes(app: web.Application, admin: AdminService) -> None:
    def route(operation: str, handler: AdminHandler) -> Callable[[web.Request], Awaitable[Any]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                caller = await admin.authenticate(request.headers)
                payload = await handler(request, caller)
                response: web.StreamResponse = web.json_response(payload)
            except AdminError as err:
                response = error_response(err)
            except Exception as exc:  # a bug answers 500 with the usual body, never a trace
                log.error(
                    "admin call failed",
                    extra={"operation": operation, "error_type": type(exc).__name__},
                )
                response = error_response(
                    AdminError(500, Reason.INTERNAL, "internal error in the admin API")
                )
            prom.ADMIN_REQUESTS.labels(operation, TRANSPORT, str(response.status)).inc()
            return response

        return wrapped

    async def team_block(request: web.Request, caller: str) -> Any:
        body = await read_json_object(request, ("team_id",))
        return team_json(await admin.set_team_blocked(caller, body["team_id"], True))

    async def team_unblock(request: web.Request, caller: str) -> Any:
        body = await read_json_object(request, ("team_id",))
        return team_json(await admin.set_team_blocked(caller, body["team_id"], False))

    async def team_new(request: web.Request, caller: str) -> Any:
        body = await read_any_object(request, NEW_TEAM_EXAMPLE)
        return team_json(await admin.new_team(caller, body))

    async def team_update(request: web.Request, caller: str) -> Any:
        body = await read_any_object(request, NEW_TEAM_EXAMPLE)
        return team_json(await admin.update_team(caller, body))

    async def team_delete(request: web.Request, caller: str) -> Any:
        body = await read_json_object(request, ("team_ids",))
        return [team_json(t) for t in await admin.delete_teams(caller, body["team_ids"])]

    async def team_info(request: web.Request, _caller: str) -> Any:
        team = await admin.get_team(_query_id(_query(request), "team_id", "/team/info"))
        return {"team_id": team.team_id, "team_info": team_json(team)}

    async def team_list(_request: web.Request, _caller: str) -> Any:
        return [team_json(t) for t in await admin.list_teams()]

    async def user_info(request: web.Request, _caller: str) -> Any:
        user = await admin.get_user(_query_id(_query(request), "user_id", "/user/info"))
        return {"user_id": user.user_id, "user_info": user_json(user)}

    async def user_list(request: web.Request, _caller: str) -> Any:
        query = _query(request)
        page = _query_int(query, "page", 1)
        size = _query_int(query, "page_size", DEFAULT_PAGE_SIZE)
        return user_page_json(await admin.list_users(page, size))

    async def customer_block(request: web.Request, caller: str) -> Any:
        body = await read_json_object(request, ("user_ids",))
        states = await admin.set_end_users_blocked(caller, body["user_ids"], True)
        return {
            "blocked_users": [s.user_id for s in states],
            "end_users": [end_user_json(s) for s in states],
        }

    async def customer_unblock(request: web.Request, caller: str) -> Any:
        body = await read_json_object(request, ("user_ids",))
        states = await admin.set_end_users_blocked(caller, body["user_ids"], False)
        return {
            "unblocked_users": [s.user_id for s in states],
            "end_users": [end_user_json(s) for s in states],
        }

    async def customer_list(_request: web.Request, _caller: str) -> Any:
        return [end_user_json(s) for s in await admin.list_end_users()]

    handlers = {
        "/team/new": team_new,
        "/team/update": team_update,
        "/team/delete": team_delete,
        "/team/block": team_block,
        "/team/unblock": team_unblock,
        "/team/info": team_info,
        "/team/list": team_list,
        "/user/info": user_info,
        "/user/list": user_list,
        "/customer/block": customer_block,
        "/customer/unblock": customer_unblock,
        "/customer/list": customer_list,
    }
    # One table (policy.admin_paths) says what is served and where credentials are kept.
    for method, path in ADMIN_API_ROUTES:
        handler = handlers[path]
        app.router.add_route(method, path, route(handler.__name__, handler))


def build_app(readiness: ReadinessProbe, admin: AdminService | None = None) -> web.Application:
    """The aiohttp application; ``readiness`` says whether we are ready and why not.

    ``admin`` adds the admin API (absent: those paths answer 404).
    """

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        ready, detail = readiness()
        return web.json_response(
            {"status": "ready" if ready else "not ready", **detail}, status=200 if ready else 503
        )

    async def metrics(_request: web.Request) -> web.Response:
        body, content_type = prom.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if admin is not None:
        _admin_routes(app, admin)
    return app

"""LiteLLM's own JWT auth, run in-process as the oracle for the differential test.

What runs is LiteLLM's: ``JWTAuthManager.auth_builder`` (its JWT entry point inside
``user_api_key_auth``: signature and expiry via PyJWT, claims, RBAC role, ``enforce_rbac`` with
``role_permissions``, admin scope and ``admin_allowed_routes``, team claim, ``x-litellm-team-id``,
email domain) and then, for a non-admin, the route check ``user_api_key_auth`` runs next
(``auth_checks._is_api_route_allowed``). Stand-ins, so that what is compared is the JWT policy:

- the database says yes to every id the token carries: a team exists for any team id (no
  model limit, not blocked), a user exists for any user id (no role, no teams); aliases resolve
  to nothing; nothing is written (team membership and upserts are no-ops), but LiteLLM's own
  ``sync_user_role_and_teams`` runs against a database that accepts its writes, so a role
  ``jwt_litellm_role_map`` gives the user row acts as it does in LiteLLM;
- the signing key is handed over directly (no JWKS fetch); the enterprise licence is assumed;
- the master key and virtual keys (LiteLLM's non-JWT path) are not part of the comparison.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

from litellm.proxy._types import (
    LiteLLM_JWTAuth,
    LiteLLM_TeamTable,
    LiteLLM_UserTable,
)
from litellm.proxy.auth import auth_checks
from litellm.proxy.auth import handle_jwt as hj
from litellm.proxy.auth.route_checks import RouteChecks
from litellm.proxy.common_utils.user_api_key_cache import UserApiKeyCache
from litellm.proxy.management_endpoints.scim import scim_v2
from starlette.requests import Request


async def _team(team_id: Any, **_: Any) -> LiteLLM_TeamTable:
    # A numeric claim (client_id: 42) is looked up as text, as LiteLLM's database query does.
    return LiteLLM_TeamTable(team_id=str(team_id))


async def _user(user_id: str | None = None, user_email: str | None = None, **_: Any) -> Any:
    return LiteLLM_UserTable(user_id=user_id or user_email or "anonymous", user_email=user_email)


async def _nothing(*_: Any, **__: Any) -> None:
    return None


_REAL_SYNC = hj.JWTAuthManager.sync_user_role_and_teams


class _WritableUsers:
    """LiteLLM's user repository over a database that accepts every write."""

    def __init__(self, _client: Any) -> None:
        self.table = self

    async def update(self, **_: Any) -> None:
        return None


async def _sync(
    jwt_handler: Any,
    jwt_valid_token: dict[str, Any],
    user_object: Any,
    prisma_client: Any,
    user_api_key_cache: Any = None,
) -> None:
    """LiteLLM's own sync_user_role_and_teams, given a (stand-in) database to write to."""
    await _REAL_SYNC(
        jwt_handler=jwt_handler,
        jwt_valid_token=jwt_valid_token,
        user_object=user_object,
        prisma_client=object(),  # type: ignore[arg-type]
        user_api_key_cache=None,
    )


def _install_stand_ins() -> None:
    """Point LiteLLM's database readers (as handle_jwt imported them) at the stand-in."""
    for name, fn in (
        ("get_team_object", _team),
        ("get_user_object", _user),
        ("get_org_object", _nothing),
        ("get_org_object_by_alias", _nothing),
        ("get_end_user_object", _nothing),
        ("get_team_membership", _nothing),
        ("get_team_object_by_alias", _nothing),
        ("resolve_managed_agent", _nothing),
    ):
        setattr(hj, name, fn)
    hj.JWTAuthManager.map_user_to_teams = staticmethod(_nothing)  # type: ignore[method-assign]
    hj.JWTAuthManager.sync_user_role_and_teams = staticmethod(_sync)  # type: ignore[method-assign]
    hj.UserRepository = _WritableUsers  # type: ignore[attr-defined,assignment]
    # the sync's team writes (team_ids_jwt_field)
    scim_v2.patch_team_membership = _nothing  # type: ignore[assignment]
    # Reads general_settings.admin_only_routes from the proxy server module (none here).
    RouteChecks.custom_admin_only_route_check = staticmethod(lambda route: None)  # type: ignore[method-assign]


_install_stand_ins()


@dataclass(frozen=True)
class Outcome:
    """LiteLLM's answer: allowed, or the status and message it refused with."""

    allowed: bool
    status: int = 200
    message: str = ""
    role: str | None = None  # proxy_admin / team / internal_user (allowed only)
    team_id: str | None = None


def _status(exc: BaseException) -> int:
    """The status user_api_key_auth gives: HTTPException/ProxyException keep theirs, else 401."""
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        try:
            if value is not None:
                return int(value)
        except (TypeError, ValueError):
            continue
    return 401


def _request(method: str, path: str, query: str, headers: Mapping[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "root_path": "",
    }
    return Request(scope)


_HANDLER: list[Any] = []


async def litellm_decides(
    general_settings: Mapping[str, Any],
    public_jwk: Mapping[str, Any],
    token: str,
    method: str,
    path: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
) -> Outcome:
    """LiteLLM's decision for a JWT request under ``general_settings`` (a config's section)."""
    route, _, query = path.partition("?")
    jwtauth = LiteLLM_JWTAuth(**dict(general_settings.get("litellm_jwtauth") or {}))
    handler = _HANDLER[0] if _HANDLER else hj.JWTHandler()  # its HTTP client is slow to make
    _HANDLER[:] = [handler]
    cache = UserApiKeyCache()
    handler.update_environment(
        prisma_client=None, user_api_key_cache=cache, litellm_jwtauth=jwtauth
    )

    async def public_key(kid: str | None) -> Mapping[str, Any]:
        return public_jwk

    handler.get_public_key = public_key  # type: ignore[method-assign]
    settings = dict(general_settings)
    request_data = dict(body)
    try:
        result = await hj.JWTAuthManager.auth_builder(
            api_key=token,
            jwt_handler=handler,
            request_data=request_data,
            general_settings=settings,
            route=route,
            prisma_client=None,
            user_api_key_cache=cache,
            parent_otel_span=None,
            proxy_logging_obj=None,  # type: ignore[arg-type]
            request_headers=dict(headers),
            request_method=method,
        )
        if result["is_proxy_admin"]:
            return Outcome(True, role="proxy_admin", team_id=result["team_id"])
        valid_token = hj.JWTAuthManager.user_api_key_auth_from_result(result)
        auth_checks._is_api_route_allowed(
            route=route,
            request=_request(method, route, query, headers),
            request_data=request_data,
            valid_token=valid_token,
            user_obj=result["user_object"],
        )
    except Exception as exc:  # every refusal LiteLLM raises becomes its HTTP answer
        return Outcome(False, _status(exc), str(exc)[:300])
    role = "team" if result["team_id"] else "internal_user"
    return Outcome(True, role=role, team_id=result["team_id"])

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
  ``jwt_litellm_role_map`` gives the user row acts as it does in LiteLLM — unless the
  call is given ``teams`` (the extauthz team registry's contents): then the database holds
  exactly those teams (by id and alias; an unknown id is LiteLLM's 404, or a new team with
  every model under ``team_id_upsert``), and ``common_checks``' team steps run after
  ``auth_builder`` (a blocked team is refused; ``can_team_access_model`` for the body's model);
- the signing key is handed over directly (no JWKS fetch); the enterprise licence is assumed;
- of LiteLLM's non-JWT path (after the JWT and OAuth2 ones), only its master-key compare runs:
  any other key is refused as a virtual key its (empty) database does not hold.

Before the JWT, what ``user_api_key_auth`` runs first runs too: ``pre_db_read_auth_checks``
(``allowed_ips`` with ``use_x_forwarded_for``, ``allowed_routes``), the key from
``litellm_key_header_name`` (``get_api_key_from_custom_header``) and the public-route shortcut;
they read ``general_settings`` and ``premium_user`` from ``litellm.proxy.proxy_server``, set per
call. The client address is the ASGI scope's ``client``, as uvicorn fills it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

import litellm.proxy.proxy_server as proxy_server
from fastapi import HTTPException
from litellm.proxy._types import (
    LiteLLM_JWTAuth,
    LiteLLM_TeamTable,
    LiteLLM_UserTable,
    LiteLLMRoutes,
    LitellmUserRoles,
    UserAPIKeyAuth,
)
from litellm.proxy.auth import auth_checks
from litellm.proxy.auth import handle_jwt as hj
from litellm.proxy.auth.auth_utils import (
    pre_db_read_auth_checks,
    route_in_additonal_public_routes,
)
from litellm.proxy.auth.oauth2_check import Oauth2Handler
from litellm.proxy.auth.user_api_key_auth import (
    _route_requires_auth_despite_public,
    get_api_key_from_custom_header,
    oauth2_introspection_applies,
)
from litellm.proxy.common_utils.http_parsing_utils import populate_request_with_path_params
from litellm.proxy.common_utils.user_api_key_cache import UserApiKeyCache
from litellm.proxy.management_endpoints.scim import scim_v2
from starlette.requests import Request

# The seeded database's teams for the current call (None: every team exists, see above).
_REGISTRY: list[dict[str, LiteLLM_TeamTable] | None] = [None]


async def _team(team_id: Any, team_id_upsert: bool | None = None, **_: Any) -> LiteLLM_TeamTable:
    # A numeric claim (client_id: 42) is looked up as text, as LiteLLM's database query does.
    registry = _REGISTRY[0]
    key = str(team_id)
    if registry is None or key in registry:
        return LiteLLM_TeamTable(team_id=key) if registry is None else registry[key]
    if team_id_upsert:
        return LiteLLM_TeamTable(team_id=key)  # LiteLLM inserts it, every model
    raise HTTPException(
        status_code=404,
        detail={"error": f"Team doesn't exist in db. Team={key}."},
    )


async def _team_by_alias(team_alias: str, **_: Any) -> LiteLLM_TeamTable | None:
    registry = _REGISTRY[0]
    if registry is None:
        return None
    found = [t for t in registry.values() if t.team_alias == team_alias]
    if not found:
        raise HTTPException(status_code=404, detail={"error": f"Team with alias {team_alias!r}"})
    return found[0]


async def _user(user_id: str | None = None, user_email: str | None = None, **_: Any) -> Any:
    return LiteLLM_UserTable(user_id=user_id or user_email or "anonymous", user_email=user_email)


async def _team_id_by_alias(team_alias: str, *_: Any, **__: Any) -> str | None:
    # LiteLLM's alias lookup for x-litellm-team-id (it answers None without a database).
    found = [t for t in (_REGISTRY[0] or {}).values() if t.team_alias == team_alias]
    return found[0].team_id if len(found) == 1 else None


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
        ("get_team_object_by_alias", _team_by_alias),
        ("resolve_managed_agent", _nothing),
    ):
        setattr(hj, name, fn)
    hj.JWTAuthManager._team_id_by_alias = staticmethod(_team_id_by_alias)  # type: ignore[method-assign]
    hj.JWTAuthManager.map_user_to_teams = staticmethod(_nothing)  # type: ignore[method-assign]
    hj.JWTAuthManager.sync_user_role_and_teams = staticmethod(_sync)  # type: ignore[method-assign]
    hj.UserRepository = _WritableUsers  # type: ignore[attr-defined,assignment]
    # the sync's team writes (team_ids_jwt_field)
    scim_v2.patch_team_membership = _nothing  # type: ignore[assignment]


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


def _request(
    method: str, path: str, query: str, headers: Mapping[str, str], client: str = ""
) -> Request:
    scope = {
        "client": (client, 50000) if client else None,
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
    client: str = "127.0.0.1",
    teams: Sequence[Mapping[str, Any]] | None = None,
    issuer_keys: Mapping[str, Mapping[str, Any]] | None = None,
) -> Outcome:
    """LiteLLM's decision for a JWT request under ``general_settings`` (a config's section).

    ``token`` is the key the standard headers carry ("" for none); ``headers`` are the others
    (a ``litellm_key_header_name`` header among them); ``client`` the peer address ("": none);
    ``teams``: the database's teams (LiteLLM_TeamTable fields), else every team exists;
    ``issuer_keys``: the public key behind each ``issuers`` entry's ``jwks_url``.
    """
    _REGISTRY[0] = (
        None if teams is None else {str(t["team_id"]): LiteLLM_TeamTable(**t) for t in teams}
    )
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

    async def issuer_key(jwks_url: str, kid: str | None) -> Mapping[str, Any]:
        return (issuer_keys or {})[jwks_url]

    handler._get_public_key_from_jwks_url = issuer_key  # type: ignore[method-assign]
    settings = dict(general_settings)
    request_data = dict(body)
    proxy_server.general_settings = settings  # read by the checks below at call time
    proxy_server.premium_user = True
    request = _request(method, route, query, headers, client)
    try:
        await pre_db_read_auth_checks(request=request, request_data=request_data, route=route)
        custom = settings.get("litellm_key_header_name")
        if custom is not None and custom in request.headers:
            token = get_api_key_from_custom_header(request, custom)
        if not _route_requires_auth_despite_public(route=route, general_settings=settings) and (
            route in LiteLLMRoutes.public_routes.value or route_in_additonal_public_routes(route)
        ):
            return Outcome(True, role="public")
        if not token:
            return Outcome(False, 401, "no key")
        if oauth2_introspection_applies(
            token,
            route,
            enable_oauth2_auth=settings.get("enable_oauth2_auth") is True,
            enable_jwt_auth=settings.get("enable_jwt_auth") is True,
            jwt_handler=handler,
        ):
            return _oauth2_route_check(
                await Oauth2Handler.check_oauth2_token(token=token), request, request_data, route
            )
        if not (settings.get("enable_jwt_auth") is True and hj.JWTHandler.is_jwt(token)):
            # user_api_key_auth's non-JWT path: the master key, else a virtual key (none here)
            master = settings.get("master_key")
            if isinstance(master, str) and secrets.compare_digest(token, master):
                return Outcome(True, role="proxy_admin")
            return Outcome(False, 401, "not the master key, and no virtual key exists")
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
        # common_checks runs for admins too (run_centralized_common_checks), on the request
        # data user_api_key_auth built: the body with the query's parameters added.
        common_data = populate_request_with_path_params(dict(request_data), request)
        if result["is_proxy_admin"]:
            auth_checks._enforce_user_param_check(settings, request, common_data, route)
            return Outcome(True, role="proxy_admin", team_id=result["team_id"])
        team_object = result["team_object"]
        if teams is not None and team_object is not None:
            # common_checks, steps 1 and 2: a blocked team; the team's model list.
            if team_object.blocked is True:
                raise Exception(f"Team={team_object.team_id} is blocked.")
            model = request_data.get("model")
            if model:
                await auth_checks.can_team_access_model(
                    model=model, team_object=team_object, llm_router=None
                )
        # common_checks, step 9 (after the team's and before the route's checks).
        auth_checks._enforce_user_param_check(settings, request, common_data, route)
        valid_token = hj.JWTAuthManager.user_api_key_auth_from_result(result)
        auth_checks._is_api_route_allowed(
            route=route,
            request=request,
            request_data=request_data,
            valid_token=valid_token,
            user_obj=result["user_object"],
        )
    except Exception as exc:  # every refusal LiteLLM raises becomes its HTTP answer
        return Outcome(False, _status(exc), str(exc)[:300])
    role = "team" if result["team_id"] else "internal_user"
    return Outcome(True, role=role, team_id=result["team_id"])


def _oauth2_route_check(
    valid: UserAPIKeyAuth, request: Request, request_data: dict[str, Any], route: str
) -> Outcome:
    """After ``routing_overrides`` sent the token to ``check_oauth2_token`` (its own HTTP call to
    OAUTH_TOKEN_INFO_ENDPOINT), the route check ``common_checks`` runs on what it returned: the
    user row of its user id (the stand-in's, no role), an admin's forced to proxy_admin."""
    admin = valid.user_role == LitellmUserRoles.PROXY_ADMIN
    user = (
        LiteLLM_UserTable(user_id=valid.user_id or "admin", user_role=LitellmUserRoles.PROXY_ADMIN)
        if admin
        else None
        if valid.user_id is None
        else LiteLLM_UserTable(user_id=valid.user_id)
    )
    auth_checks._is_api_route_allowed(
        route=route, request=request, request_data=request_data, valid_token=valid, user_obj=user
    )
    role = "proxy_admin" if admin else "team" if valid.team_id else "internal_user"
    return Outcome(True, role=role, team_id=valid.team_id)

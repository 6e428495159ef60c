"""Compile ``litellm_jwtauth.routing_overrides`` and ``general_settings.enable_oauth2_auth``,
and where their tokens are introspected.

The endpoint is ``extauthz.oauth2_token_info_endpoint`` or else, as LiteLLM reads it, the
``OAUTH_TOKEN_INFO_ENDPOINT`` environment variable; the answer's fields and the client
credentials come from LiteLLM's own variables (``OAUTH_USER_ID_FIELD_NAME``,
``OAUTH_USER_ROLE_FIELD_NAME``, ``OAUTH_USER_TEAM_ID_FIELD_NAME``, ``OAUTH_CLIENT_ID``,
``OAUTH_CLIENT_SECRET``). What LiteLLM would refuse only at request time ("OAUTH_TOKEN_INFO_ENDPOINT
environment variable is not set") is refused at start here.
"""

from __future__ import annotations

from collections.abc import Mapping

from extauthz.config.schema import ExtauthzSettings, JwtAuthSettings
from extauthz.config.urlcheck import is_url
from extauthz.identity.introspection import IntrospectionSettings
from extauthz.policy.overrides import OverrideRule, RoutingOverrides, Selector

_WHERE = "general_settings.litellm_jwtauth.routing_overrides"
_OPAQUE = "general_settings.enable_oauth2_auth"
ENDPOINT_ENV = "OAUTH_TOKEN_INFO_ENDPOINT"


def _selector(value: str | list[str] | None) -> Selector:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def compile_overrides(
    enable_jwt_auth: bool,
    jwt: JwtAuthSettings,
    ours: ExtauthzSettings,
    environ: Mapping[str, str],
    problems: list[str],
    enable_oauth2_auth: bool = False,
) -> tuple[RoutingOverrides | None, IntrospectionSettings | None]:
    """The rules (policy) and the introspection endpoint (runtime); None, None when neither
    ``routing_overrides`` nor ``enable_oauth2_auth`` sends a token there."""
    if not jwt.routing_overrides:
        if not enable_oauth2_auth:
            return None, None
        return None, _endpoint(ours, environ, _OPAQUE, problems)
    if not enable_jwt_auth:
        problems.append(
            f"{_WHERE} needs general_settings.enable_jwt_auth: true (LiteLLM reads the rules "
            "only for JWTs under JWT auth)"
        )
    rules = []
    for i, entry in enumerate(jwt.routing_overrides):
        rule = OverrideRule(
            i,
            _selector(entry.iss) or (),
            _selector(entry.client_id),
            _selector(entry.scope),
            _selector(entry.aud),
        )
        for name in ("iss", "client_id", "scope", "aud"):
            sel = getattr(rule, name)
            if sel is not None and (not sel or any(not s for s in sel)):
                problems.append(
                    f"{_WHERE}[{i}].{name}: an empty selector matches no token; give the "
                    "claim's value (or a pattern such as 'https://idp.example/*')"
                )
        rules.append(rule)
    where = f"{_WHERE} and {_OPAQUE}" if enable_oauth2_auth else _WHERE
    settings = _endpoint(ours, environ, where, problems)
    return RoutingOverrides(tuple(rules), ours.max_token_bytes), settings


def _endpoint(
    ours: ExtauthzSettings,
    environ: Mapping[str, str],
    where: str,
    problems: list[str],
) -> IntrospectionSettings:
    """Where ``where``'s tokens are introspected; LiteLLM's variables for the rest."""
    endpoint = ours.oauth2_token_info_endpoint or environ.get(ENDPOINT_ENV, "")
    if not endpoint:
        problems.append(
            f"{where}: tokens are introspected, but no endpoint is set: export "
            f"{ENDPOINT_ENV} (as for LiteLLM) or set extauthz.oauth2_token_info_endpoint"
        )
    elif not is_url(endpoint):
        where = (
            "extauthz.oauth2_token_info_endpoint"
            if ours.oauth2_token_info_endpoint
            else ENDPOINT_ENV
        )
        problems.append(f"{where}: not an https:// or http:// URL")
    return IntrospectionSettings(
        endpoint=endpoint,
        user_id_field=environ.get("OAUTH_USER_ID_FIELD_NAME", "sub"),
        role_field=environ.get("OAUTH_USER_ROLE_FIELD_NAME", "role"),
        team_id_field=environ.get("OAUTH_USER_TEAM_ID_FIELD_NAME", "team_id"),
        client_id=environ.get("OAUTH_CLIENT_ID"),
        client_secret=environ.get("OAUTH_CLIENT_SECRET"),
        cache_ttl=ours.oauth2_cache_ttl_seconds,
        timeout=ours.jwks_fetch_timeout_seconds,  # as the signing-key fetches
    )


def describe_endpoint(settings: IntrospectionSettings) -> str:
    """For ``extauthz check-config`` (the URL redacted by the caller; never the secret)."""
    how = (
        "RFC 7662 POST with OAUTH_CLIENT_ID/OAUTH_CLIENT_SECRET"
        if settings.rfc7662
        else "GET with the token as Bearer"
    )
    return (
        f"{how}; answer fields: user id {settings.user_id_field!r}, role "
        f"{settings.role_field!r}, team id {settings.team_id_field!r}; answers cached "
        f"{settings.cache_ttl:g}s"
    )

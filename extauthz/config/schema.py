"""The shape of a policy file: LiteLLM's keys plus our ``extauthz:`` section (pydantic models).

Key handling, so that a LiteLLM config.yaml works as it is and never silently lets more in:
- keys we implement are validated here;
- LiteLLM keys that would change who gets in but that we do not implement are refused
  (``REFUSED_*``) unless set to their harmless default;
- unrelated LiteLLM keys are ignored with one warning;
- anything else is a typo and refused, with the closest known key suggested.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_ADMIN_ROUTES = (
    "management_routes",
    "spend_tracking_routes",
    "global_spend_tracking_routes",
    "info_routes",
)
# LiteLLM_JWTAuth.team_allowed_routes in the pinned LiteLLM (tests/unit/test_litellm_routes.py).
DEFAULT_TEAM_ROUTES = (
    "openai_routes",
    "info_routes",
    "mcp_routes",
    "/v1/messages",
    "/v1/messages/count_tokens",
)
DEFAULT_INTERNAL_USER_ROUTES = ("openai_routes", "anthropic_routes", "info_routes")

# Refused keys (they would change who gets in, and cannot be done here) and why: the one table
# the start-up errors read (config/loader.py); the README's "Refused" paragraph says the same.
_DB = "it needs LiteLLM's database"
VIRTUAL_KEYS = f"{_DB}: the claim is looked up in its table of JWT-to-virtual-key mappings"
# litellm_jwtauth keys LiteLLM has that would change who gets in; refused unless "off".
REFUSED_JWTAUTH: Mapping[str, str] = MappingProxyType(
    {
        "org_alias_jwt_field": f"{_DB}: organization aliases are resolved in its "
        "organization table",
        "virtual_key_claim_field": VIRTUAL_KEYS,
        "unregistered_jwt_client_behavior": f"{_DB}: it says what to do with a claim that has "
        "no virtual-key mapping there",
        "fallback_to_db_teams": f"{_DB}: a user without team claims gets the team memberships "
        "stored there",
        "team_claim_fallback": f"{_DB}: an unknown team claim falls back to the caller's only "
        "team membership stored there",
        "agent_id_jwt_field": f"{_DB}: the claim must name an agent in its agent registry, "
        "and agents made through its API live there (those declared in config.yaml's `agents` "
        "could be read here, but are not yet)",
    }
)
# litellm_jwtauth keys that do not change who gets in here; accepted and ignored.
IGNORED_JWTAUTH = frozenset(
    {
        "public_key_stale_ttl",
        "virtual_key_mapping_cache_ttl",
        "public_allowed_routes",
        "upsert_sso_user_to_team",  # LiteLLM 1.108.7 declares it and reads it nowhere
    }
)
# general_settings keys that change who gets in in LiteLLM but that we do not implement.
REFUSED_GENERAL: Mapping[str, str] = MappingProxyType(
    {
        "custom_auth": "it is a Python function of LiteLLM's own FastAPI Request returning its "
        "UserAPIKeyAuth, which replaces LiteLLM's auth altogether; use "
        "general_settings.litellm_jwtauth.custom_validate (a function of the verified claims) "
        "instead",
    }
)
KNOWN_TOP_LEVEL = frozenset(
    # litellm_settings and router_settings: only their model aliases and fallbacks are read
    # (config/catalog.py); the rest of them is LiteLLM's business.
    {"general_settings", "model_list", "extauthz", "litellm_settings", "router_settings"}
)
_HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RoleMappingEntry(_Strict):
    """One ``role_mappings`` entry: an IdP role (exact) and the internal role it makes."""

    role: str = Field(min_length=1)
    internal_role: Literal["proxy_admin", "team", "internal_user"]


class RoleMapEntry(_Strict):
    """One ``jwt_litellm_role_map`` entry: a glob over IdP roles and a LiteLLM user role."""

    jwt_role: str = Field(min_length=1, max_length=1024)
    litellm_role: str  # LiteLLM's user roles; config/rolemaps.py says which act here


class ScopeMappingEntry(_Strict):
    """One ``scope_mappings`` entry: a scope and the models (and routes) it grants."""

    scope: str = Field(min_length=1)
    models: list[str] | None = None
    routes: list[str] | None = None


class JwtAuthSettings(_Strict):
    """``general_settings.litellm_jwtauth``: the part of ``LiteLLM_JWTAuth`` we implement."""

    admin_jwt_scope: str = "litellm_proxy_admin"
    admin_allowed_routes: list[str] = Field(default_factory=lambda: list(DEFAULT_ADMIN_ROUTES))
    # No default: LiteLLM's code has none (only its docstring says client_id); a default would
    # make any token with that claim an unrestricted team under a config that never named it.
    team_id_jwt_field: str | None = None
    team_id_default: str | None = None
    # Teams from tokens (issue 17): several teams (IdP groups), a team named by its alias, teams
    # created when first seen, and model access only through a team that has the model.
    team_ids_jwt_field: str | None = None
    team_alias_jwt_field: str | None = None
    team_id_upsert: bool = False
    enforce_team_based_model_access: bool = False
    team_allowed_routes: list[str] = Field(default_factory=lambda: list(DEFAULT_TEAM_ROUTES))
    user_id_jwt_field: str | None = None
    org_id_jwt_field: str | None = None
    end_user_id_jwt_field: str | None = None
    user_email_jwt_field: str | None = None
    user_allowed_email_domain: str | list[str] | None = None
    user_id_upsert: bool = False
    user_roles_jwt_field: str | None = None
    user_allowed_roles: list[str] | None = None
    enforce_rbac: bool = False
    public_key_ttl: float = Field(default=600.0, gt=0)
    issuers: list[IssuerEntry] | None = None
    custom_validate: str | None = None  # "module.function", imported at start (loader)
    oidc_userinfo_enabled: bool = False
    oidc_userinfo_endpoint: str | None = None
    oidc_userinfo_cache_ttl: float = Field(default=300.0, gt=0)
    # Role and scope mappings (identity/roles.py, policy/scopes.py; checked in config/rolemaps.py)
    roles_jwt_field: str | None = None
    role_mappings: list[RoleMappingEntry] | None = None
    object_id_jwt_field: str | None = None
    jwt_litellm_role_map: list[RoleMapEntry] | None = None
    sync_user_role_and_teams: bool = False
    scope_mappings: list[ScopeMappingEntry] | None = None
    enforce_scope_based_access: bool = False
    routing_overrides: list[RoutingOverrideEntry] | None = None  # config/overrides.py


class RoutingOverrideEntry(_Strict):
    """One ``routing_overrides`` entry (LiteLLM's ``JWTRoutingOverride``): JWTs whose unverified
    claims match every selector set go to OAuth2 token introspection."""

    iss: str | list[str]
    client_id: str | list[str] | None = None
    scope: str | list[str] | None = None
    aud: str | list[str] | None = None
    path: Literal["oauth2"] = "oauth2"


class IssuerEntry(_Strict):
    """One ``litellm_jwtauth.issuers`` entry (LiteLLM's ``JWTIssuerConfig``): a provider chosen
    by the token's unverified ``iss``, with its own keys, audience and claim fields."""

    issuer: str = Field(min_length=1)
    jwks_url: str | None = None  # else the issuer's /.well-known/openid-configuration
    audience: str | list[str] | None = None
    disable_audience_validation: bool = False
    user_id_jwt_field: str | None = None
    user_email_jwt_field: str | None = None
    team_id_jwt_field: str | None = None
    org_id_jwt_field: str | None = None
    end_user_id_jwt_field: str | None = None
    team_ids_jwt_field: str | None = None
    # LiteLLM options of an entry that need its database; refused unless null (the loader).
    virtual_key_claim_field: object = None
    unregistered_jwt_client_behavior: object = None


class RolePermission(_Strict):
    """One ``general_settings.role_permissions`` entry."""

    role: Literal["proxy_admin", "team", "internal_user"]
    models: list[str] | None = None
    routes: list[str] | None = None


class GeneralSettings(BaseModel):
    """``general_settings``: the keys we read; others are checked by the loader, not here."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    enable_jwt_auth: bool = False
    # Non-JWT bearer tokens on LLM API, info and /lens routes go to OAuth2 token introspection
    # (config/overrides.py, policy/overrides.py), as LiteLLM's oauth2_introspection_applies.
    enable_oauth2_auth: bool = False
    master_key: str | None = None
    litellm_jwtauth: JwtAuthSettings = Field(default_factory=JwtAuthSettings)
    role_permissions: list[RolePermission] = Field(default_factory=list)
    enforce_rbac: bool = False
    completion_model: str | None = None  # LiteLLM runs it for every completion (catalog.forced)
    # Checked before any credential is read (policy/gate.py, config/gate.py), as LiteLLM does.
    allowed_ips: list[str] | None = None
    use_x_forwarded_for: bool = False
    allowed_routes: list[str] | None = None
    public_routes: list[str] | None = None
    admin_only_routes: list[str] | None = None
    litellm_key_header_name: str | None = None
    enforce_user_param: bool = False  # policy/userparam.py


class ModelEntry(BaseModel):
    """One ``model_list`` entry; only the name matters to the sidecar (the minter reads more)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    model_name: str
    litellm_params: dict[str, Any] = Field(default_factory=dict)


class HeaderSettings(_Strict):
    """``extauthz.headers``: upstream identity header names."""

    user_id: str = "x-auth-user-id"
    team_id: str = "x-auth-team-id"
    org_id: str = "x-auth-org-id"
    end_user_id: str = "x-auth-end-user-id"
    user_role: str = "x-auth-user-role"
    user_email: str = "x-auth-user-email"

    @field_validator("*")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("a header name must be lower-case letters, digits and '-'")
        return value


class ExtauthzSettings(_Strict):
    """The top-level ``extauthz:`` section: settings of our own."""

    public_key_url: str | None = None
    audience: str | list[str] | None = None
    issuer: str | list[str] | None = None
    leeway_seconds: float = Field(default=30.0, ge=0, le=600)
    require_exp: bool = True
    max_token_bytes: int = Field(default=8192, ge=256, le=65536)
    token_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)
    token_cache_max_age_seconds: float = Field(default=300.0, gt=0)
    jwks_refetch_interval_seconds: float = Field(default=5.0, ge=0.1)
    jwks_fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    non_jwt_tokens: Literal["reject", "passthrough"] = "reject"
    remove_credential_headers: bool = True
    # Migration aid: decide as usual, count and log the real decision, but allow every request
    # (denials become decision "would_deny" in the metadata). Never on unless set.
    shadow_mode: bool = False
    # false: no dynamic-metadata keys on denials (HTTP mode sends them as response headers, which
    # a proxy without allowed_client_headers, such as Envoy Gateway's HTTP ext auth, shows clients).
    metadata_on_deny: bool = True
    # true: a "*" in role_permissions[].models is a wildcard ("claude-*"). LiteLLM compares the
    # names exactly ("*" is a literal character), so the same YAML grants more with this on.
    model_globs: bool = False
    # With team_id_jwt_field set, LiteLLM refuses a non-admin token without that claim ("No team
    # found in token") unless team_id_default names a team. "as_user" lets such a token go on
    # to the user roles instead (wider than LiteLLM: an opt-in for configs mixing teams and users).
    missing_team_claim: Literal["refuse", "as_user"] = "refuse"
    # With general_settings.use_x_forwarded_for: the client address is the (N+1)-th
    # x-forwarded-for entry from the right (Envoy's xff_num_trusted_hops rule).
    xff_num_trusted_hops: int = Field(default=0, ge=0, le=16)
    internal_user_allowed_routes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INTERNAL_USER_ROUTES)
    )
    headers: HeaderSettings = Field(default_factory=HeaderSettings)
    check_timeout_seconds: float = Field(default=0.8, gt=0, le=30)
    # routing_overrides: the introspection endpoint (else OAUTH_TOKEN_INFO_ENDPOINT, as LiteLLM)
    # and how long an answer is trusted (LiteLLM asks on every request; capped by its exp).
    oauth2_token_info_endpoint: str | None = None
    oauth2_cache_ttl_seconds: float = Field(default=60.0, gt=0, le=3600)
    reload_interval_seconds: float = Field(default=1.0, ge=0.1, le=300)
    mint: dict[str, Any] = Field(default_factory=dict)

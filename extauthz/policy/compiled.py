"""The compiled, immutable policy the decision core reads (built by ``extauthz.config``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from extauthz.identity.customvalidate import Validator
from extauthz.identity.fields import ClaimFields
from extauthz.identity.providers import IssuerClaims
from extauthz.identity.roles import NO_ROLE_RULES, RoleRules
from extauthz.identity.tokens import TokenRules
from extauthz.model import Identity, Role
from extauthz.policy.catalog import ModelCatalog
from extauthz.policy.gate import Gate
from extauthz.policy.overrides import RoutingOverrides
from extauthz.policy.routes import RouteSet

if TYPE_CHECKING:
    from extauthz.policy.scopes import ScopeRules


@dataclass(frozen=True, slots=True)
class HeaderNames:
    """Upstream identity header names (the defaults are the public contract)."""

    user_id: str = "x-auth-user-id"
    team_id: str = "x-auth-team-id"
    org_id: str = "x-auth-org-id"
    end_user_id: str = "x-auth-end-user-id"
    user_role: str = "x-auth-user-role"
    user_email: str = "x-auth-user-email"

    def all(self) -> tuple[str, ...]:
        return (
            self.user_id,
            self.team_id,
            self.org_id,
            self.end_user_id,
            self.user_role,
            self.user_email,
        )


class ModelRule:
    """An allow-list of model names, compared exactly as LiteLLM does (``*`` is a literal
    character); with ``globs`` (``extauthz.model_globs: true``) a ``*`` is a wildcard."""

    __slots__ = ("_exact", "_pattern", "entries")

    def __init__(self, entries: tuple[str, ...], *, globs: bool = False) -> None:
        self.entries = entries
        self._exact = frozenset(e for e in entries if not globs or "*" not in e)
        globs_ = [e for e in entries if globs and "*" in e]
        # fnmatch would also treat ? and [ as special; only * is a wildcard here.
        parts = [".*".join(re.escape(p) for p in g.split("*")) for g in globs_]
        self._pattern = re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None

    def allows(self, model: str) -> bool:
        return model in self._exact or (
            self._pattern is not None and self._pattern.fullmatch(model) is not None
        )

    def __repr__(self) -> str:
        return f"ModelRule({list(self.entries)!r})"


@dataclass(frozen=True, slots=True)
class TeamRules:
    """The policy's part of choosing a team (``policy.teams``): made once per ``Policy``."""

    team_field: str | None  # team_id_jwt_field (for messages)
    alias_field: str | None  # team_alias_jwt_field
    ids_field: str | None  # team_ids_jwt_field
    refuse_without_team: bool  # a team or alias field is set and missing_team_claim: refuse
    enforce: bool  # enforce_team_based_model_access
    upsert: bool  # team_id_upsert
    claim_label: str = ""  # "claim 'client_id'": made once, read per request

    @classmethod
    def of(cls, policy: Policy) -> TeamRules:
        f = policy.fields
        return cls(
            team_field=f.team_id.name if f.team_id else None,
            alias_field=f.team_alias.name if f.team_alias else None,
            ids_field=f.team_ids.name if f.team_ids else None,
            refuse_without_team=policy.refuse_missing_team
            and (f.team_id is not None or f.team_alias is not None),
            enforce=policy.enforce_team_models,
            upsert=policy.team_id_upsert,
            claim_label=f"claim {f.team_id.name!r}" if f.team_id else "",
        )

    def claim_source(self, identity: Identity) -> str | None:
        """How a token's team id was found when no choice was needed."""
        if identity.team_id is None:
            return None
        return "team_id_default" if identity.team_id_defaulted else self.claim_label


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything a decision needs from config. Replaced whole on reload, never mutated.

    How the process runs (signing-key fetching, the check deadline, reload interval) is not here:
    it is ``config.settings.ServeSettings``, compiled beside it.
    """

    enable_jwt_auth: bool = False
    master_key: str | None = None
    admin_scope: str = "litellm_proxy_admin"
    fields: ClaimFields = field(default_factory=ClaimFields)
    team_id_default: str | None = None
    refuse_missing_team: bool = True  # LiteLLM's "No team found in token" (extauthz opt-out)
    user_allowed_roles: frozenset[str] | None = None
    # general_settings.enforce_rbac: a non-admin needs a user or team id (validate_object_id)
    require_caller_id: bool = False
    email_domains: frozenset[str] | None = None
    role_rules: RoleRules = NO_ROLE_RULES  # role_mappings, object id, jwt_litellm_role_map
    scope_rules: ScopeRules | None = None  # scope_mappings (with enforce_scope_based_access)
    role_routes: Mapping[Role, RouteSet] = field(default_factory=dict)
    role_permission_routes: Mapping[Role, RouteSet] = field(default_factory=dict)
    role_models: Mapping[Role, ModelRule] = field(default_factory=dict)
    user_id_upsert: bool = False
    team_id_upsert: bool = False  # a team seen in a valid token is registered (policy.teams)
    enforce_team_models: bool = False  # enforce_team_based_model_access
    non_jwt_passthrough: bool = False
    remove_credential_headers: bool = True
    shadow_mode: bool = False
    metadata_on_deny: bool = True
    headers: HeaderNames = field(default_factory=HeaderNames)
    token_rules: TokenRules = field(default_factory=TokenRules)
    model_names: tuple[str, ...] = ()
    catalog: ModelCatalog = field(default_factory=ModelCatalog)
    gate: Gate = field(default_factory=Gate)  # allowed_ips, allowed/public/admin-only routes
    source: str = "<defaults>"
    # litellm_jwtauth.issuers: each entry's claim fields; custom_validate: the loaded function.
    issuer_claims: Mapping[str, IssuerClaims] = field(default_factory=dict)
    custom_validate: Validator | None = None
    routing_overrides: RoutingOverrides | None = None  # JWTs sent to OAuth2 introspection
    enable_oauth2_auth: bool = False  # non-JWT tokens on covered routes: introspection too
    # Derived from the fields above, once, not per request (``decide.admit`` reads it).
    team_rules: TeamRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "team_rules", TeamRules.of(self))

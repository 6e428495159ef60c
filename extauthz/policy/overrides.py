"""``litellm_jwtauth.routing_overrides`` and ``general_settings.enable_oauth2_auth``: which
tokens go to OAuth2 introspection instead of JWT verification (or the master key, or a
passed-through key), and the role the introspected caller acts as.

LiteLLM 1.108.7 (``user_api_key_auth.oauth2_introspection_applies``): with JWT auth on, a token
that is a JWT by shape, on an LLM API route, an info route or ``/lens``, whose *unverified*
claims match a rule, is validated by ``Oauth2Handler.check_oauth2_token`` (here
``identity.introspection``); on any other route it is verified as a JWT as usual. A rule
matches when every selector it sets matches (``_matches_routing_override``): a selector is a
string or a list of strings, each compared with the claim exactly or, holding ``*`` or ``?``,
as a case-sensitive shell pattern (``fnmatchcase``) that never matches a claim with
whitespace; a list claim matches when any entry does; ``scope`` alone is split on spaces.

The unverified claims only choose where the token is judged: introspection then vouches for
it, or not. The introspected caller is judged by our normal decision: a ``proxy_admin`` role in
the answer is an admin, else a team id makes a team, else a user id an internal user
(``oauth2_role``), with the routes and models of that role.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extauthz.identity.tokens import looks_like_jwt, segment_object
from extauthz.model import Identity, Role
from extauthz.policy.litellm_routes import GROUPS
from extauthz.policy.llm_api_routes import is_llm_api_route

_INFO_ROUTES = frozenset(GROUPS["info_routes"])
Selector = tuple[str, ...] | None


def covered(path: str) -> bool:
    """The routes LiteLLM introspects on: LLM API routes, info routes, ``/lens``."""
    return (
        is_llm_api_route(path)
        or path in _INFO_ROUTES
        or path == "/lens"
        or path.startswith("/lens/")
    )


def _claim_strings(value: Any, split: bool) -> list[str]:
    if isinstance(value, list):
        return [_py_str(v) for v in value]
    if split and isinstance(value, str) and " " in value.strip():
        return [v for v in value.strip().split(" ") if v]
    return [_py_str(value)]


def _py_str(value: Any) -> str:
    """Python's ``str()`` of a JSON value, as LiteLLM compares claims (``True``, not ``true``)."""
    return value if isinstance(value, str) else str(value)


def selector_matches(selector: Selector, claim: Any, split: bool = False) -> bool:
    """LiteLLM's ``_routing_selector_matches_claim``."""
    if selector is None:
        return True
    if claim is None:
        return False
    claims = _claim_strings(claim, split)
    for s in selector:
        for c in claims:
            if "*" in s or "?" in s:
                if not split and any(ch.isspace() for ch in c):
                    continue
                if fnmatch.fnmatchcase(c, s):
                    return True
            elif s == c:
                return True
    return False


@dataclass(frozen=True, slots=True)
class OverrideRule:
    """One ``routing_overrides`` entry (``path: oauth2``, the only one LiteLLM has)."""

    index: int
    iss: tuple[str, ...]
    client_id: Selector = None
    scope: Selector = None
    aud: Selector = None

    def matches(self, claims: dict[str, Any]) -> bool:
        return (
            selector_matches(self.iss, claims.get("iss"))
            and selector_matches(self.client_id, claims.get("client_id"))
            and selector_matches(self.scope, claims.get("scope"), split=True)
            and selector_matches(self.aud, claims.get("aud"))
        )

    def describe(self) -> str:
        parts = [
            f"{name} {' | '.join(sel)}"
            for name, sel in (
                ("iss", self.iss),
                ("client_id", self.client_id),
                ("scope", self.scope),
                ("aud", self.aud),
            )
            if sel is not None
        ]
        return f"routing_overrides[{self.index}] ({', '.join(parts)})"


ClaimsOf = Callable[[str], dict[str, Any] | None]


def unverified_claims(token: str) -> dict[str, Any] | None:
    """A compact JWT's header-checked payload, read without any signature check (to choose
    the auth path, nothing else); None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or segment_object(parts[0]) is None:
        return None
    return segment_object(parts[1])


@dataclass(frozen=True, slots=True)
class RoutingOverrides:
    """The compiled rules, first match wins (LiteLLM stops at the first)."""

    rules: tuple[OverrideRule, ...]
    max_token_bytes: int = 8192

    def match(
        self, token: str, path: str, claims_of: ClaimsOf | None = None
    ) -> OverrideRule | None:
        """The rule that sends this token, on this (decoded) path, to introspection.
        ``claims_of``: ``unverified_claims`` or one answering as it does (the authorizer's
        takes a cached token's verified claims: the same payload, already parsed)."""
        if len(token) > self.max_token_bytes or not looks_like_jwt(token) or not covered(path):
            return None
        claims = (claims_of or unverified_claims)(token)
        if claims is None:
            return None
        for rule in self.rules:
            if rule.matches(claims):
                return rule
        return None

    def describe(self) -> list[str]:
        """For ``extauthz check-config``."""
        return [
            f"{r.describe()}: matching JWTs on LLM API, info and /lens routes are introspected"
            for r in self.rules
        ]


OPAQUE_INTROSPECTED = (
    "general_settings.enable_oauth2_auth: a non-JWT token on an LLM API, info or /lens route "
    "is introspected"
)


def introspected_by(
    token: str,
    path: str,
    enable_jwt_auth: bool,
    enable_oauth2_auth: bool,
    overrides: RoutingOverrides | None,
    claims_of: ClaimsOf | None = None,
) -> OverrideRule | str | None:
    """LiteLLM's ``oauth2_introspection_applies``, run before the master key and everything
    else, and why it applies: the ``routing_overrides`` rule matching a JWT (under JWT auth),
    or ``OPAQUE_INTROSPECTED`` for any other token on a covered route when
    ``enable_oauth2_auth`` is on (with JWT auth off, a JWT too). None: not introspected."""
    if enable_jwt_auth and looks_like_jwt(token):
        return None if overrides is None else overrides.match(token, path, claims_of)
    return OPAQUE_INTROSPECTED if enable_oauth2_auth and covered(path) else None


NO_OAUTH2_ROLE = (
    "the OAuth2 introspection answer names no caller (no proxy_admin role, no team id, no user "
    "id in the fields OAUTH_USER_ROLE_FIELD_NAME, OAUTH_USER_TEAM_ID_FIELD_NAME and "
    "OAUTH_USER_ID_FIELD_NAME name)"
)


def oauth2_role(identity: Identity) -> Role | None:
    """The role an introspected caller acts as: a ``proxy_admin`` answer is an admin (LiteLLM
    treats it as one), else a team id makes a team, else a user id an internal user."""
    if "proxy_admin" in identity.roles:
        return Role.PROXY_ADMIN
    if identity.team_id is not None:
        return Role.TEAM
    if identity.user_id is not None:
        return Role.INTERNAL_USER
    return None

"""The shared vocabulary, below every other layer: reasons, roles, the request view, the caller's
identity, decisions and the verdict an adapter sends. Immutable, protocol-free.

Made or hashed per request (``RequestView``, ``Identity``, ``Allow``) are NamedTuples: a frozen
dataclass's ``__init__`` costs ~2 µs each on the request path, a NamedTuple ~0.5 µs. The rest are
frozen, slotted dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

# Identity kinds: how the caller authenticated.
JWT = "jwt"
MASTER_KEY = "master_key"
PASSTHROUGH = "passthrough"  # a non-JWT key passed on to the upstream, not judged here
PUBLIC = "public"  # no credential read: the route is in general_settings.public_routes
OAUTH2 = "oauth2"  # a token routing_overrides sent to OAuth2 introspection

REASON_HEADER = "x-extauthz-reason"
# The client's address in HTTP mode (Envoy sets it, see envoy-http.yaml) and in explain requests.
CLIENT_ADDRESS_HEADER = "x-extauthz-client-address"
ERROR_TYPE = "auth_error"


class Role(StrEnum):
    """LiteLLM's caller roles, as written in ``role_permissions``."""

    PROXY_ADMIN = "proxy_admin"
    TEAM = "team"
    INTERNAL_USER = "internal_user"


LITELLM_USER_ROLES = (
    "proxy_admin",
    "proxy_admin_viewer",
    "org_admin",
    "internal_user",
    "internal_user_viewer",
    "team",
    "customer",
)
"""LiteLLM's user roles (LitellmUserRoles), a superset of ``Role``: what a role map or an
introspection answer may name."""


class Reason(StrEnum):
    """Why a request was allowed or denied.

    Stable values: they are metric labels, log fields and the ``x-extauthz-reason`` header.
    """

    ALLOWED = "allowed"
    PUBLIC_ROUTE = "public_route"  # allowed without a credential (general_settings.public_routes)
    # 400
    BAD_PATH = "bad_path"
    BAD_BODY = "bad_body"
    # 401
    MISSING_CREDENTIAL = "missing_credential"
    MALFORMED_TOKEN = "malformed_token"
    TOKEN_TOO_LARGE = "token_too_large"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    MISSING_EXPIRY = "missing_expiry"
    AUDIENCE_MISMATCH = "audience_mismatch"
    ISSUER_MISMATCH = "issuer_mismatch"
    INVALID_API_KEY = "invalid_api_key"
    USERINFO_REJECTED = "userinfo_rejected"  # the userinfo endpoint refused an opaque token
    USER_PARAM_MISSING = "user_param_missing"  # general_settings.enforce_user_param
    INTROSPECTION_REJECTED = "introspection_rejected"  # routing_overrides: inactive or refused
    # 403
    NO_ROLE = "no_role"
    NO_TEAM = "no_team"
    TEAM_NOT_ALLOWED = "team_not_allowed"
    TEAM_NOT_FOUND = "team_not_found"
    ROUTE_NOT_ALLOWED = "route_not_allowed"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    MODEL_UNCHECKABLE = "model_uncheckable"
    TEAM_BLOCKED = "team_blocked"
    END_USER_BLOCKED = "end_user_blocked"
    EMAIL_DOMAIN_NOT_ALLOWED = "email_domain_not_allowed"
    CLIENT_IP_NOT_ALLOWED = "client_ip_not_allowed"
    ROUTE_NOT_LISTED = "route_not_listed"
    ADMIN_ONLY_ROUTE = "admin_only_route"
    CUSTOM_VALIDATE_REFUSED = "custom_validate_refused"
    # 413
    BODY_CUT = "body_cut"
    BODY_TOO_COMPLEX = "body_too_complex"
    # 503 / 500
    KEYS_UNAVAILABLE = "keys_unavailable"
    USERINFO_UNAVAILABLE = "userinfo_unavailable"
    INTROSPECTION_UNAVAILABLE = "introspection_unavailable"
    # the admin API's own answers
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    NOT_ADMIN = "not_admin"
    STORE_UNAVAILABLE = "store_unavailable"
    BODY_TOO_LARGE = "body_too_large"
    BUSY = "busy"
    INTERNAL = "internal"


class RequestView(NamedTuple):
    """What the core needs of an HTTP request, taken from Envoy's CheckRequest (or HTTP mode).

    ``path`` is the raw request target as Envoy sent it (query string included, not decoded).
    ``headers`` has lower-case names. ``body_cut`` is Envoy's ``x-envoy-auth-partial-body: true``.
    ``client_address`` is the downstream peer Envoy reports (gRPC: the CheckRequest's source
    address; HTTP mode: the header Envoy sets), "" when it reported none.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    body_cut: bool = False
    request_id: str = ""
    client_address: str = ""


class Identity(NamedTuple):
    """Who the caller is, as read from a verified token (or the master key).

    A NamedTuple: made once per new token and hashed on every request (memo keys), where a
    frozen dataclass costs ~10x more to build and runs a Python ``__hash__``.
    """

    kind: str  # JWT | MASTER_KEY | PASSTHROUGH
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    end_user_id: str | None = None
    email: str | None = None
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    subject: str | None = None
    # The email gate's reading of ``email``, made with the identity (only when the policy has a
    # gate): the ASCII domain of a valid address not said to be unverified, else why not.
    email_domain: str | None = None
    email_problem: str | None = None
    # The user id is the email, taken because the token has no user id claim (LiteLLM: the id
    # spend is attributed to, but not one that makes an internal_user).
    user_id_from_email: bool = False
    # Teams from the token beyond ``team_id`` (issue 17): the teams of ``team_ids_jwt_field``
    # in claim order, the ``team_alias_jwt_field`` value, and whether ``team_id`` is
    # ``team_id_default`` rather than a claim. The team a request runs as is chosen per request
    # (``policy.teams``) and replaces ``team_id`` in the decision's identity.
    team_ids: tuple[str, ...] = ()
    team_alias: str | None = None
    team_id_defaulted: bool = False
    # Which identity provider vouched: an ``issuers`` entry's issuer (None: the global keys),
    # and whether the claims came from the OIDC userinfo endpoint (an opaque token).
    issuer: str | None = None
    userinfo: bool = False
    # role_mappings / object_id_jwt_field / jwt_litellm_role_map (identity.roles), read with the
    # identity; decide.admit uses them where LiteLLM's get_rbac_role and authorize_jwt do.
    mapped_role: Role | None = None  # the first role_mappings entry the roles claim holds
    mapped_from: str | None = None  # the IdP role that matched it
    object_id: str | None = None  # object_id_jwt_field: becomes the team or user id, by role
    role_problem: str | None = None  # why the roles claim or object id cannot be used (401)
    synced_role: Role | None = None  # jwt_litellm_role_map under sync_user_role_and_teams
    synced_from: str | None = None  # "IdP role ~ pattern" that matched


class Allow(NamedTuple):
    """The request may pass; ``model`` is the model it names (if any) for metadata."""

    identity: Identity
    role: Role | None
    model: str | None = None
    reason: Reason = Reason.ALLOWED
    keep_credentials: bool = False  # the sidecar's admin API needs the credential itself
    team_source: str | None = None  # how the team it runs as was chosen (policy.teams)


@dataclass(frozen=True, slots=True)
class Deny:
    """The request is refused with ``status``; ``message`` says what to fix (never a secret)."""

    status: int
    reason: Reason
    message: str
    identity: Identity | None = None
    role: Role | None = None
    extra_headers: tuple[tuple[str, str], ...] = field(default=())


Decision = Allow | Deny


def internal_error(request_id: str = "") -> Deny:
    """The one deny for a bug: fail closed, say so, never include the exception's text."""
    shown = request_id[:64] or "unknown"
    return Deny(
        500,
        Reason.INTERNAL,
        "internal error in the authorization service; the request was refused "
        f"(request id {shown})",
    )


class Verdict(NamedTuple):
    """What an adapter sends back to Envoy, free of protocol types.

    A NamedTuple: one is made for every new caller's first answer and every deny, and a frozen
    dataclass's ``__init__`` costs several times more. ``metadata`` is read, never changed.
    """

    allowed: bool
    status: int
    reason: Reason
    headers: tuple[tuple[str, str], ...] = ()  # allow: upstream headers; deny: client headers
    remove: tuple[str, ...] = ()  # allow only: upstream headers to drop
    metadata: Mapping[str, str] = MappingProxyType({})
    body: str = ""


def deny_body(status: int, message: str) -> str:
    """The OpenAI-style error body every deny carries (a client contract)."""
    return json.dumps({"error": {"message": message, "type": ERROR_TYPE, "code": str(status)}})


def deny_headers(reason: Reason, status: int) -> list[tuple[str, str]]:
    """The headers every deny carries: JSON, the reason, and a Bearer challenge on 401 (the
    token is fine when LiteLLM's 401 is about the body: no ``invalid_token`` to refresh on)."""
    headers = [("content-type", "application/json"), (REASON_HEADER, reason.value)]
    if status == 401:
        error = "invalid_request" if reason is Reason.USER_PARAM_MISSING else "invalid_token"
        headers.append(("www-authenticate", f'Bearer error="{error}"'))
    return headers


def deny_verdict(deny: Deny) -> Verdict:
    """A deny as the verdict every adapter sends (the allow side needs the policy: verdict.py)."""
    headers = deny_headers(deny.reason, deny.status)
    headers.extend(deny.extra_headers)
    metadata = {"decision": "deny", "reason": deny.reason.value}
    if deny.identity is not None:
        if deny.identity.user_id is not None:
            metadata["user_id"] = deny.identity.user_id
        if deny.identity.team_id is not None:
            metadata["team_id"] = deny.identity.team_id
    return Verdict(
        allowed=False,
        status=deny.status,
        reason=deny.reason,
        headers=tuple(headers),
        metadata=metadata,
        body=deny_body(deny.status, deny.message),
    )


INTERNAL_VERDICT = deny_verdict(internal_error())
"""What an adapter answers when deciding itself failed (fail closed)."""

"""Values the decision core reads and returns. Immutable, protocol-free.

Made or hashed per request (``RequestView``, ``Identity``, ``Allow``) are NamedTuples: a frozen
dataclass's ``__init__`` costs ~2 µs each on the request path, a NamedTuple ~0.5 µs. The rest are
frozen, slotted dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Role(StrEnum):
    """LiteLLM's caller roles, as written in ``role_permissions``."""

    PROXY_ADMIN = "proxy_admin"
    TEAM = "team"
    INTERNAL_USER = "internal_user"


class Reason(StrEnum):
    """Why a request was allowed or denied.

    Stable values: they are metric labels, log fields and the ``x-extauthz-reason`` header.
    """

    ALLOWED = "allowed"
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
    # 403
    NO_ROLE = "no_role"
    ROUTE_NOT_ALLOWED = "route_not_allowed"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    MODEL_UNCHECKABLE = "model_uncheckable"
    TEAM_BLOCKED = "team_blocked"
    END_USER_BLOCKED = "end_user_blocked"
    EMAIL_DOMAIN_NOT_ALLOWED = "email_domain_not_allowed"
    # 413
    BODY_CUT = "body_cut"
    BODY_TOO_COMPLEX = "body_too_complex"
    # 503 / 500
    KEYS_UNAVAILABLE = "keys_unavailable"
    BUSY = "busy"
    INTERNAL = "internal"


class RequestView(NamedTuple):
    """What the core needs of an HTTP request, taken from Envoy's CheckRequest (or HTTP mode).

    ``path`` is the raw request target as Envoy sent it (query string included, not decoded).
    ``headers`` has lower-case names. ``body_cut`` is Envoy's ``x-envoy-auth-partial-body: true``.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    body_cut: bool = False
    request_id: str = ""


class Identity(NamedTuple):
    """Who the caller is, as read from a verified token (or the master key).

    A NamedTuple: made once per new token and hashed on every request (memo keys), where a
    frozen dataclass costs ~10x more to build and runs a Python ``__hash__``.
    """

    kind: str  # "jwt" | "master_key" | "passthrough"
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


class Allow(NamedTuple):
    """The request may pass; ``model`` is the model it names (if any) for metadata."""

    identity: Identity
    role: Role | None
    model: str | None = None
    reason: Reason = Reason.ALLOWED
    keep_credentials: bool = False  # the sidecar's admin API needs the credential itself


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

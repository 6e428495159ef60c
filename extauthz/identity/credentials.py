"""Where a caller's credential is read from (LiteLLM's headers, in LiteLLM's order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from extauthz.identity.tokens import TokenFailure
from extauthz.model import Reason

# Every header LiteLLM reads a key from; all are removed before the upstream on allow.
CREDENTIAL_HEADERS = (
    "x-litellm-api-key",
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
)


class Credential(NamedTuple):
    """The token or key a caller presented, and the header it came in (for messages only)."""

    value: str
    header: str


def extract_credential(
    headers: Mapping[str, str], key_header: str | None = None
) -> Credential | None:
    """The first credential found, LiteLLM's header order; ``Authorization`` must be Bearer.

    The scheme is case-insensitive (RFC 9110 §11.1). Other Authorization schemes are not a
    credential here (the header is still removed before the upstream).

    ``key_header`` (``general_settings.litellm_key_header_name``, lower-case): when the request
    has it, it is the only place read, as in LiteLLM (which then wants ``Bearer <key>`` in it;
    anything else there is no credential, whatever the other headers hold).
    """
    if key_header is not None:
        custom = headers.get(key_header)
        if custom is not None:
            scheme, _, rest = custom.strip().partition(" ")
            token = rest.strip() if scheme.lower() == "bearer" else ""
            return Credential(token, key_header) if token else None
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        value = value.strip()
        if name == "authorization":
            scheme, _, rest = value.partition(" ")
            if scheme.lower() != "bearer":
                continue
            value = rest.strip()
        if value:
            return Credential(value, name)
    return None


def sendable(token: str) -> bool:
    """Whether a token can go to the endpoint as it is: visible ASCII only (RFC 6750's bearer
    token is narrower still). Anything else, a control character or a byte HTTP mode could not
    decode, no provider issued; it is refused before any request (it would break the header)."""
    return token.isascii() and token.isprintable() and " " not in token


def unsendable(token: str, limit: int, to: str) -> TokenFailure | None:
    """Why ``token`` is not sent ``to`` a provider (userinfo, introspection): over ``limit``
    bytes, or not ``sendable``. None: it may go."""
    if len(token) > limit:
        return TokenFailure(Reason.TOKEN_TOO_LARGE, f"the token is larger than {limit} bytes")
    if not sendable(token):
        return TokenFailure(
            Reason.MALFORMED_TOKEN,
            "the bearer token holds a space, a control or a non-ASCII character, which no "
            f"OAuth2 token has (RFC 6750); it was not sent to {to}",
        )
    return None

"""Reading what a token service answers: a JSON object, a lifetime, and the access token.

Shared by the Entra, managed-identity, Google STS and IAM Credentials exchanges, so each refuses a
malformed answer the same way: an ``ExchangeError``, and nothing written from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from extauthz.mint.errors import ExchangeError
from extauthz.mint.redact import Secret, scrub


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer access token and when it expires (POSIX time)."""

    token: Secret
    expires_at: float


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; empty when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def seconds(value: object) -> float | None:
    """A positive number of seconds, also when sent as a string of digits (older endpoints and
    IMDS do); None otherwise."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def expires_after(value: object, now: float) -> float | None:
    """``now`` plus an ``expires_in`` lifetime; None when ``value`` is not one."""
    lifetime = seconds(value)
    return None if lifetime is None else now + lifetime


def oauth_error(data: Mapping[str, Any], secrets: Iterable[str]) -> tuple[str, str] | None:
    """``(error, error_description)`` of an OAuth error document (RFC 6749 §5.2), the
    description scrubbed of ``secrets``; None when ``data`` is not one."""
    error = data.get("error")
    if not isinstance(error, str) or not error:
        return None
    description = data.get("error_description")
    return error, scrub(description if isinstance(description, str) else "", secrets)


def access_token(token: object, expires_at: float | None, what: str, needs: str) -> AccessToken:
    """``token`` and its expiry from a 200 answer; ExchangeError naming ``needs`` when either is
    missing, or when the token could break the file it is written to."""
    if not isinstance(token, str) or not token or expires_at is None:
        raise ExchangeError(f"{what} answered without {needs}")
    if any(ch.isspace() for ch in token):
        raise ExchangeError(f"{what} answered an access token containing whitespace")
    return AccessToken(Secret(token), expires_at)

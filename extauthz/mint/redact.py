"""Keeping secrets out of reprs, messages and logs.

``Secret`` wraps a value so that printing a dataclass, an exception or a log record that holds it
shows ``Secret(***)``. ``describe_token`` gives the unverified ``aud``/``iss``/``sub`` of a JWT so
that a refusal can say which token was refused without showing it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

_MAX_CLAIM_CHARS = 200


class Secret:
    """A string that must never be printed; read it with ``.reveal()`` where it is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that sends or writes it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def unverified_claims(token: str) -> dict[str, Any]:
    """The JWT payload without verifying anything; empty when ``token`` is not a JWT.

    Only for error messages: nothing here is trusted, which is why the result is never used to
    decide anything.
    """
    parts = token.split(".")
    if len(parts) != 3:  # header.payload.signature
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def describe_token(token: str) -> str:
    """``aud='…' iss='…' sub='…'`` of a JWT (unverified), or a note that it is not a JWT."""
    claims = unverified_claims(token)
    if not claims:
        return "the token is not a JWT"
    shown = []
    for name in ("aud", "iss", "sub"):
        value = claims.get(name)
        if value is None:
            continue
        text = json.dumps(value) if not isinstance(value, str) else value
        if len(text) > _MAX_CLAIM_CHARS:
            text = text[:_MAX_CLAIM_CHARS] + "…"
        shown.append(f"{name}={text!r}")
    return "the token's " + " ".join(shown) if shown else "the token has no aud, iss or sub"


def scrub(text: str, secrets: Iterable[str], limit: int = 500) -> str:
    """``text`` cut to ``limit`` characters with every secret replaced by ``<redacted>``.

    Services sometimes echo what they were sent; a message from one passes through here before it
    reaches an exception, a log line or /status.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    if len(text) > limit:
        text = text[:limit] + "…"
    return text

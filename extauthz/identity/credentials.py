"""Where a caller's credential is read from (LiteLLM's headers, in LiteLLM's order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

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


def extract_credential(headers: Mapping[str, str]) -> Credential | None:
    """The first credential found, LiteLLM's header order; ``Authorization`` must be Bearer.

    The scheme is case-insensitive (RFC 9110 §11.1). Other Authorization schemes are not a
    credential here (the header is still removed before the upstream).
    """
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

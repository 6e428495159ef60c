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


# The sidecar's own admin API (served on --http-address, routed there by Envoy). The sidecar
# authenticates these calls again itself, so the caller's credential must reach it: it is not
# stripped on these paths (see ``routes_to_admin_api``).
ADMIN_API_PATHS = frozenset(
    {
        "/team/block",
        "/team/unblock",
        "/team/info",
        "/team/list",
        "/user/info",
        "/user/list",
        "/customer/block",
        "/customer/unblock",
        "/customer/list",
    }
)


def routes_to_admin_api(target: str) -> bool:
    """Whether Envoy sends this request target (``:path`` as the client sent it) to the admin API.

    Envoy routes on the raw path, so only a path that is an admin API path byte for byte, before
    any query, goes there. A percent-escaped spelling (``/%74eam/info``) decodes to the same route
    for the policy, but Envoy sends it to the upstream, which must not get the credential.
    """
    return target.partition("?")[0] in ADMIN_API_PATHS


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

"""Microsoft Entra client-assertion exchange: a workload OIDC token in, an access token out.

This is the v2 token endpoint call LiteLLM makes for ``azure_ad_token: oidc/…`` (reference §7),
the same one azure-identity's ``ClientAssertionCredential`` makes: ``grant_type=client_credentials``
with the OIDC token as a JWT-bearer client assertion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from yarl import URL

from extauthz.mint.errors import ExchangeError
from extauthz.mint.redact import Secret, describe_token, scrub
from extauthz.mint.transport import HttpClient

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://cognitiveservices.azure.com/.default"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_FEDERATION_HINT = (
    "; the app registration needs a federated identity credential whose issuer, subject and "
    "audience match this token"
)


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An Entra access token and when it expires (POSIX time)."""

    token: Secret
    expires_at: float


def token_endpoint(authority_host: str, tenant_id: str) -> str:
    """``{authority}/{tenant}/oauth2/v2.0/token``."""
    return f"{authority_host.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def parse_token_response(body: bytes, now: float) -> AccessToken:
    """The access token and expiry from a 200 answer; ExchangeError if either is missing."""
    data = _json(body)
    if data is None:
        raise ExchangeError("Entra answered 200 without a JSON object")
    token = data.get("access_token")
    expires_in = data.get("expires_in")
    # Older endpoints send expires_in as a string of digits.
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
        raise ExchangeError("Entra answered without access_token and a numeric expires_in")
    if any(ch.isspace() for ch in token):
        raise ExchangeError("Entra answered an access_token containing whitespace")
    return AccessToken(Secret(token), now + float(expires_in))


async def exchange_client_assertion(
    http: HttpClient,
    *,
    authority_host: str,
    tenant_id: str,
    client_id: str,
    scope: str,
    assertion: str,
    now: float,
) -> AccessToken:
    """POST the client-assertion grant; raise ExchangeError naming Entra's error and the
    assertion's unverified aud/iss/sub (never the assertion) on refusal."""
    endpoint = token_endpoint(authority_host, tenant_id)
    what = f"Entra at {URL(endpoint).origin()}"
    resp = await http.request(
        "POST",
        endpoint,
        what=what,
        headers={"Accept": "application/json"},
        form={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scope,
        },
    )
    if resp.status == 200:
        return parse_token_response(resp.body, now)
    data = _json(resp.body) or {}
    error = data.get("error")
    if not isinstance(error, str) or not error:
        raise ExchangeError(
            f"{what} answered HTTP {resp.status} without an OAuth error document "
            f"(tenant {tenant_id}, client {client_id})"
        )
    description = data.get("error_description")
    detail = scrub(description if isinstance(description, str) else "", [assertion])
    hint = _FEDERATION_HINT if error in ("invalid_client", "unauthorized_client") else ""
    raise ExchangeError(
        f"{what} refused the client assertion for client {client_id} in tenant {tenant_id} "
        f"(HTTP {resp.status} {error}: {detail}); {describe_token(assertion)}{hint}",
        code=error,
    )

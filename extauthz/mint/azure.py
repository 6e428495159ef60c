"""Microsoft Entra: the client-assertion exchange, and managed-identity tokens.

* The v2 token endpoint call LiteLLM makes for ``azure_ad_token: oidc/…`` (reference §7), the
  same one azure-identity's ``ClientAssertionCredential`` makes: ``grant_type=client_credentials``
  with the OIDC token as a JWT-bearer client assertion.
* The managed-identity endpoint (IMDS, or App Service's ``IDENTITY_ENDPOINT``), which LiteLLM
  asks through azure-identity for ``oidc/azure/<aud>`` when ``AZURE_FEDERATED_TOKEN_FILE`` is
  unset: a token for the resource ``<aud>``, requested as MSAL requests it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from extauthz.mint.answers import (
    AccessToken,
    access_token,
    expires_after,
    json_object,
    oauth_error,
    seconds,
)
from extauthz.mint.errors import ExchangeError, TransportError
from extauthz.mint.redact import describe_token, scrub
from extauthz.mint.transport import HttpClient

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://cognitiveservices.azure.com/.default"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_FEDERATION_HINT = (
    "; the app registration needs a federated identity credential whose issuer, subject and "
    "audience match this token"
)


def token_endpoint(authority_host: str, tenant_id: str) -> str:
    """``{authority}/{tenant}/oauth2/v2.0/token``."""
    return f"{authority_host.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"


def parse_token_response(body: bytes, now: float) -> AccessToken:
    """The access token and expiry from a 200 answer; ExchangeError if either is missing."""
    data = json_object(body)
    if not data:
        raise ExchangeError("Entra answered 200 without a JSON object")
    expires_at = expires_after(data.get("expires_in"), now)
    needs = "access_token and a numeric expires_in"
    return access_token(data.get("access_token"), expires_at, "Entra", needs)


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
    refusal = oauth_error(json_object(resp.body), [assertion])
    if refusal is None:
        raise ExchangeError(
            f"{what} answered HTTP {resp.status} without an OAuth error document "
            f"(tenant {tenant_id}, client {client_id})"
        )
    error, detail = refusal
    hint = _FEDERATION_HINT if error in ("invalid_client", "unauthorized_client") else ""
    raise ExchangeError(
        f"{what} refused the client assertion for client {client_id} in tenant {tenant_id} "
        f"(HTTP {resp.status} {error}: {detail}); {describe_token(assertion)}{hint}",
        code=error,
    )


# --- Managed identity: the token source of oidc/azure/<aud> without AZURE_FEDERATED_TOKEN_FILE --

IMDS_AUTHORITY = "http://169.254.169.254"
IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"  # noqa: S105 - a URL path
_UNSUPPORTED_MANAGED_IDENTITY = (
    # (variables that are all set, the hosting environment they mean), in azure-identity's order
    (("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT"), "Service Fabric"),
    (("MSI_ENDPOINT", "MSI_SECRET"), "Azure Machine Learning"),
    (("IDENTITY_ENDPOINT", "IMDS_ENDPOINT"), "Azure Arc"),
    (("MSI_ENDPOINT",), "Azure Cloud Shell"),
)


@dataclass(frozen=True, slots=True)
class ManagedIdentityEndpoint:
    """Where this host's managed identity answers, found from the environment as azure-identity
    (MSAL) finds it: App Service / Functions / Container Apps (``IDENTITY_ENDPOINT`` with
    ``IDENTITY_HEADER``), else the instance metadata service (IMDS, moved with
    ``AZURE_POD_IDENTITY_AUTHORITY_HOST``)."""

    name: str
    url: str
    api_version: str
    secret_header: str | None = None  # the name of the env var holding X-IDENTITY-HEADER

    def __str__(self) -> str:
        return f"the Azure managed identity endpoint ({self.name}) at {URL(self.url).origin()}"


def managed_identity_endpoint(environ: Mapping[str, str]) -> ManagedIdentityEndpoint:
    """This host's managed-identity endpoint; ValueError for a hosting environment whose
    endpoint extauthz mint does not speak, or a malformed endpoint variable."""
    app_service = environ.get("IDENTITY_ENDPOINT") and environ.get("IDENTITY_HEADER")
    if app_service and not environ.get("IDENTITY_SERVER_THUMBPRINT"):
        url = environ["IDENTITY_ENDPOINT"]
        _check_http_url(url, "IDENTITY_ENDPOINT")
        return ManagedIdentityEndpoint("App Service", url, "2019-08-01", "IDENTITY_HEADER")
    for names, hosting in _UNSUPPORTED_MANAGED_IDENTITY:
        if all(environ.get(name) for name in names):
            raise ValueError(
                f"{' and '.join(names)} are set: the {hosting} managed identity is not supported "
                "by extauthz mint; use AKS workload identity (AZURE_FEDERATED_TOKEN_FILE), an "
                "App Service identity or the instance metadata service"
            )
    authority = environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or IMDS_AUTHORITY
    _check_http_url(authority, "AZURE_POD_IDENTITY_AUTHORITY_HOST")
    return ManagedIdentityEndpoint("IMDS", authority.strip("/") + IMDS_TOKEN_PATH, "2018-02-01")


def _check_http_url(value: str, name: str) -> None:
    parts = URL(value)
    if parts.scheme not in ("http", "https") or not parts.host:
        raise ValueError(f"{name}={value!r} is not an http:// or https:// URL")


def scope_to_resource(scope: str) -> str:
    """The resource a managed identity is asked for: the scope without ``/.default``, as
    azure-identity turns a scope into a resource."""
    return scope.removesuffix("/.default")


def _expiry(data: Mapping[str, Any], now: float) -> float | None:
    """``expires_in`` (IMDS, seconds, often a string) else ``expires_on`` (POSIX time)."""
    expires_at = expires_after(data.get("expires_in"), now)
    return expires_at if expires_at is not None else seconds(data.get("expires_on"))


async def managed_identity_token(
    http: HttpClient,
    endpoint: ManagedIdentityEndpoint,
    *,
    resource: str,
    client_id: str | None,
    environ: Mapping[str, str],
    now: float,
) -> AccessToken:
    """GET a token for ``resource`` from the managed identity (user-assigned when ``client_id``
    is given, as ``AZURE_CLIENT_ID`` selects one for azure-identity). Raises ExchangeError for a
    refusal, TransportError (with what to check) when the endpoint cannot be reached."""
    query = {"api-version": endpoint.api_version, "resource": resource}
    if client_id:
        query["client_id"] = client_id
    headers = {"Metadata": "true"}
    secrets = []
    if endpoint.secret_header:
        secret = environ.get(endpoint.secret_header, "")
        headers["X-IDENTITY-HEADER"] = secret
        secrets.append(secret)
    identity = f"client {client_id}" if client_id else "the system-assigned identity"
    try:
        resp = await http.request(
            "GET", URL(endpoint.url).extend_query(query), what=str(endpoint), headers=headers
        )
    except TransportError as exc:
        raise TransportError(
            f"{exc}; is this an Azure host with a managed identity? On AKS with workload "
            "identity AZURE_FEDERATED_TOKEN_FILE names the token instead"
        ) from None
    data = json_object(resp.body)
    if resp.status == 200:
        needs = "access_token and its expiry"
        return access_token(data.get("access_token"), _expiry(data, now), str(endpoint), needs)
    error = data.get("error") or data.get("statusCode") or ""
    description = data.get("error_description") or data.get("message") or ""
    detail = scrub(f"{error}: {description}" if error else str(description), secrets)
    raise ExchangeError(
        f"{endpoint} refused a token for resource {resource!r} for {identity} (HTTP "
        f"{resp.status} {detail}); the resource is the oidc/azure/ audience, and the identity "
        "must be assigned to this host (AZURE_CLIENT_ID picks a user-assigned one)",
        code=str(error),
    )

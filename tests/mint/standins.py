"""Stand-ins for the cloud services the minter talks to, speaking their real wire formats.

* AWS STS Query API (``AssumeRoleWithWebIdentity``, XML answers and ``ErrorResponse``), HTTPS
* Microsoft Entra v2 token endpoint (client-assertion grant, JSON answers and OAuth errors), HTTPS
* GCE metadata identity endpoint (``Metadata-Flavor: Google``, the token as text), plain HTTP
  as the real one
* Azure managed identity: IMDS and App Service's ``IDENTITY_ENDPOINT``, plain HTTP as the real ones
* GitHub Actions OIDC token endpoint (bearer request token, JSON ``{"count", "value"}``), HTTPS
* Google STS (OAuth 2.0 token exchange) and the IAM Credentials API (generateAccessToken), HTTPS
* an LLM upstream (HTTPS) that records what Envoy sends and verifies SigV4 signatures with
  botocore against the credentials the STS stand-in issued

All run on one event loop in a background thread, so sync tests, async tests and subprocesses can
use them alike. Each stand-in records requests and can be told to fail.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
import string
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest, HTTPHeaders  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

T = TypeVar("T")
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (the stand-ins check tokens by identity, not by signature)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "standin"}
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(claims).encode()),
            b64url(secrets.token_bytes(64)),
        ]
    )


class ServerThread:
    """An asyncio loop in a daemon thread that hosts aiohttp apps on 127.0.0.1."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._runners: list[web.AppRunner] = []

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def serve(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> int:
        async def start() -> int:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
            await site.start()
            self._runners.append(runner)
            return int(runner.addresses[0][1])

        return self.call(start())

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        self.call(cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()  # its self-pipe is a socket pair: unclosed, GC warns


class Served:
    """A stand-in served by aiohttp: ``routes`` lists (method, path, handler method name)."""

    routes: ClassVar[tuple[tuple[str, str, str], ...]]

    def app(self) -> web.Application:
        app = web.Application()
        for method, path, handler in self.routes:
            app.router.add_route(method, path, getattr(self, handler))
        return app


@dataclass(kw_only=True)
class TokenService(Served):
    """What every token-issuing stand-in keeps: the lifetimes to hand out next (else its own
    default), an outage switch, the requests it saw, when it issued, and where it listens."""

    lifetimes: collections.deque[float] = field(default_factory=collections.deque)
    outage: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    issue_times: list[float] = field(default_factory=list)
    url: str = ""

    def reset(self) -> None:
        self.lifetimes.clear()
        self.outage = False
        self.requests.clear()
        self.issue_times.clear()

    def next_lifetime(self, default: float) -> float:
        return self.lifetimes.popleft() if self.lifetimes else default


class OidcIssuer:
    """Remembers every OIDC token the stand-ins handed out, so STS and Entra can check them."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def issue(self, iss: str, aud: str, sub: str, lifetime: float = 3600) -> str:
        now = int(time.time())
        claims = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + int(lifetime)}
        token = make_jwt(claims)
        with self.lock:
            self.tokens[token] = claims
        return token

    def claims(self, token: str) -> dict[str, Any] | None:
        with self.lock:
            return self.tokens.get(token)


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@dataclass
class StsStandin(TokenService):
    """AWS STS ``AssumeRoleWithWebIdentity`` (Query API, XML)."""

    issuer: OidcIssuer
    audience: str = "sts.amazonaws.com"
    role_arn: str = "arn:aws:iam::123456789012:role/bedrock-invoke"
    # More roles and the token audience each one's trust policy accepts (reset clears them).
    trusts: dict[str, str] = field(default_factory=dict)
    default_lifetime: float = 3600
    refuse: tuple[int, str, str] | None = None
    issued: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reset(self) -> None:
        super().reset()
        self.default_lifetime = 3600
        self.refuse = None
        self.trusts.clear()
        self.issued.clear()

    def trusted_audience(self, role_arn: str) -> str | None:
        """The token audience the role's trust policy accepts; None for an unknown role."""
        if role_arn in self.trusts:
            return self.trusts[role_arn]
        return self.audience if role_arn == self.role_arn else None

    def credentials(self, access_key_id: str) -> Credentials | None:
        found = self.issued.get(access_key_id)
        if found is None:
            return None
        return Credentials(access_key_id, found["SecretAccessKey"], found["SessionToken"])

    @property
    def last(self) -> dict[str, Any]:
        return list(self.issued.values())[-1]

    @staticmethod
    def error(status: int, code: str, message: str, kind: str = "Sender") -> web.Response:
        body = (
            f'<ErrorResponse xmlns="{STS_NS}">\n  <Error>\n    <Type>{kind}</Type>\n'
            f"    <Code>{code}</Code>\n    <Message>{message}</Message>\n  </Error>\n"
            f"  <RequestId>{secrets.token_hex(8)}</RequestId>\n</ErrorResponse>\n"
        )
        return web.Response(status=status, text=body, content_type="text/xml")

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(form)
        if self.outage:
            return self.error(503, "ServiceUnavailable", "Service is unavailable.", "Receiver")
        if self.refuse is not None:
            return self.error(*self.refuse)
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != (
            "2011-06-15"
        ):
            return self.error(400, "InvalidAction", "Could not find operation.")
        for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if not form.get(name):
                return self.error(400, "MissingParameter", f"The request must contain {name}")
        audience = self.trusted_audience(form["RoleArn"])
        if audience is None:
            return self.error(
                403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"
            )
        claims = self.issuer.claims(form["WebIdentityToken"])
        if claims is None:
            return self.error(
                400,
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider, please "
                "reference AssumeRoleWithWebIdentity documentation for requirements",
            )
        if claims["aud"] != audience:
            return self.error(400, "InvalidIdentityToken", "Incorrect token audience")
        if claims["exp"] <= time.time():
            return self.error(400, "ExpiredTokenException", "Token expired")
        lifetime = self.next_lifetime(self.default_lifetime)
        expiration = datetime.fromtimestamp(math.ceil(time.time() + lifetime), UTC)
        creds = {
            "AccessKeyId": "ASIA" + _random(string.ascii_uppercase + string.digits, 16),
            "SecretAccessKey": _random(string.ascii_letters + string.digits + "/+", 40),
            "SessionToken": "IQoJb3JpZ2luX2Vj"
            + _random(string.ascii_letters + string.digits + "/+=", 300),
            "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.issued[creds["AccessKeyId"]] = creds
        self.issue_times.append(time.time())
        session = form["RoleSessionName"]
        account = form["RoleArn"].split(":")[4]
        role_name = form["RoleArn"].rsplit("/", 1)[-1]
        body = f"""<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>{claims["sub"]}</SubjectFromWebIdentityToken>
    <Audience>{claims["aud"]}</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>
      <AssumedRoleId>AROA{_random(string.ascii_uppercase, 17)}:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{creds["SessionToken"]}</SessionToken>
      <SecretAccessKey>{creds["SecretAccessKey"]}</SecretAccessKey>
      <Expiration>{creds["Expiration"]}</Expiration>
      <AccessKeyId>{creds["AccessKeyId"]}</AccessKeyId>
    </Credentials>
    <Provider>{claims["iss"]}</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{secrets.token_hex(8)}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"""
        return web.Response(text=body, content_type="text/xml")

    routes = (("POST", "/", "handle"),)


@dataclass
class EntraStandin(TokenService):
    """Entra v2 token endpoint for the client-assertion (federated credential) grant."""

    issuer: OidcIssuer
    tenant_id: str = "f3b1cf79-eba8-40c3-8120-cb26aca169c2"
    client_id: str = "91a43c21-cf21-4f34-9085-331015ea4f91"
    audience: str = "api://AzureADTokenExchange"
    scope: str = "https://cognitiveservices.azure.com/.default"
    default_lifetime: int = 3599
    issued: list[str] = field(default_factory=list)

    def reset(self) -> None:
        super().reset()
        self.default_lifetime = 3599
        self.issued.clear()

    @staticmethod
    def error(status: int, error: str, description: str) -> web.Response:
        return web.json_response(
            {
                "error": error,
                "error_description": description,
                "error_codes": [int(m[1]) for m in [re.match(r"AADSTS(\d+)", description)] if m],
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": secrets.token_hex(16),
                "correlation_id": secrets.token_hex(16),
            },
            status=status,
        )

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(form)
        if self.outage:
            return web.Response(
                status=503, text="<html>Service Unavailable</html>", content_type="text/html"
            )
        if request.match_info["tenant"] != self.tenant_id:
            return self.error(
                400,
                "invalid_request",
                f"AADSTS90002: Tenant '{request.match_info['tenant']}' not found.",
            )
        if form.get("grant_type") != "client_credentials":
            return self.error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            )
        if (
            form.get("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return self.error(400, "invalid_request", "AADSTS50027: Invalid client assertion type.")
        if form.get("client_id") != self.client_id:
            return self.error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not "
                "found in the directory.",
            )
        claims = self.issuer.claims(form.get("client_assertion", ""))
        if claims is None or claims["aud"] != self.audience:
            iss = claims["iss"] if claims else "unknown"
            return self.error(
                401,
                "invalid_client",
                "AADSTS700211: No matching federated identity record found for presented "
                f"assertion issuer '{iss}'.",
            )
        if form.get("scope") != self.scope:
            return self.error(
                400,
                "invalid_scope",
                f"AADSTS1002012: The provided value for scope {form.get('scope')} is not valid.",
            )
        lifetime = int(self.next_lifetime(self.default_lifetime))
        token = make_jwt(
            {
                "aud": "https://cognitiveservices.azure.com",
                "iss": f"https://sts.windows.net/{self.tenant_id}/",
                "appid": self.client_id,
                "exp": int(time.time()) + lifetime,
            }
        )
        self.issued.append(token)
        self.issue_times.append(time.time())
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            }
        )

    routes = (("POST", "/{tenant}/oauth2/v2.0/token", "handle"),)


@dataclass
class ManagedIdentityStandin(Served):
    """Azure's managed-identity endpoints: IMDS (``/metadata/identity/oauth2/token``, header
    ``Metadata: true``, api-version 2018-02-01, ``expires_in`` as a string) and App Service's
    ``IDENTITY_ENDPOINT`` (``/msi/token``, header ``X-IDENTITY-HEADER``, api-version 2019-08-01,
    ``expires_on``). Plain HTTP, as both are. The tokens are JWTs for ``resource``."""

    issuer: OidcIssuer
    tenant_id: str = "f3b1cf79-eba8-40c3-8120-cb26aca169c2"
    system_assigned: bool = True
    user_assigned: set[str] = field(default_factory=set)
    identity_header: str = field(default_factory=lambda: secrets.token_hex(16))
    lifetime: int = 86399
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    url: str = ""

    def reset(self) -> None:
        self.system_assigned = True
        self.user_assigned.clear()
        self.lifetime = 86399
        self.requests.clear()

    @staticmethod
    def imds_error(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    def _token(self, request: web.Request) -> tuple[str, str] | web.Response:
        """The token for the request's identity and resource, or the endpoint's error answer."""
        resource = request.query.get("resource", "")
        client_id = request.query.get("client_id", "")
        if not resource:
            return self.imds_error(400, "invalid_request", "Required audience not specified")
        if client_id and client_id not in self.user_assigned:
            return self.imds_error(400, "invalid_request", "Identity not found")
        if not client_id and not self.system_assigned:
            return self.imds_error(400, "invalid_request", "Identity not found")
        principal = client_id or "system-assigned-principal"
        token = self.issuer.issue(
            f"https://sts.windows.net/{self.tenant_id}/", resource, principal, self.lifetime
        )
        self.issued.append(token)
        return token, resource

    def _record(self, request: web.Request, endpoint: str) -> None:
        self.requests.append(
            {"endpoint": endpoint, "path": request.path, **request.query}
            | {
                f"header:{k.lower()}": v
                for k, v in request.headers.items()
                if k.lower() in ("metadata", "x-identity-header")
            }
        )

    async def imds(self, request: web.Request) -> web.Response:
        self._record(request, "imds")
        if request.headers.get("Metadata") != "true":
            return self.imds_error(400, "invalid_request", "Required metadata header not specified")
        if request.query.get("api-version") != "2018-02-01":
            return self.imds_error(
                400, "invalid_request", "Required query variable 'api-version' is missing"
            )
        found = self._token(request)
        if isinstance(found, web.Response):
            return found
        token, resource = found
        now = int(time.time())
        return web.json_response(
            {
                "access_token": token,
                "client_id": request.query.get("client_id", "system-assigned-client"),
                "expires_in": str(self.lifetime),
                "expires_on": str(now + self.lifetime),
                "ext_expires_in": str(self.lifetime),
                "not_before": str(now),
                "resource": resource,
                "token_type": "Bearer",
            }
        )

    async def app_service(self, request: web.Request) -> web.Response:
        self._record(request, "app_service")
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return web.json_response(
                {"statusCode": 401, "message": "Unauthorized request"}, status=401
            )
        if request.query.get("api-version") != "2019-08-01":
            return web.json_response(
                {"statusCode": 400, "message": "api-version not supported"}, status=400
            )
        found = self._token(request)
        if isinstance(found, web.Response):
            return found
        token, resource = found
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + self.lifetime),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": request.query.get("client_id", "system-assigned-client"),
            }
        )

    routes = (
        ("GET", "/metadata/identity/oauth2/token", "imds"),
        ("GET", "/msi/token", "app_service"),
    )

    def imds_env(self) -> dict[str, str]:
        """IMDS moved the way azure-identity allows (aad-pod-identity's variable)."""
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.url}

    def app_service_env(self) -> dict[str, str]:
        return {
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
        }


@dataclass
class GceMetadataStandin(Served):
    """The GCE metadata server's identity endpoint (plain HTTP, as the real one)."""

    issuer: OidcIssuer
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    host: str = ""

    def reset(self) -> None:
        self.requests.clear()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "audience": request.query.get("audience", ""),
                "flavor": request.headers.get("Metadata-Flavor", ""),
            }
        )
        headers = {"Metadata-Flavor": "Google"}
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(
                status=403, text="Missing required header: Metadata-Flavor\n", headers=headers
            )
        audience = request.query.get("audience", "")
        if not audience:
            return web.Response(
                status=400, text="non-empty audience parameter required\n", headers=headers
            )
        token = self.issuer.issue("https://accounts.google.com", audience, "110169484474386276334")
        self.issued.append(token)
        return web.Response(text=token, content_type="text/html", headers=headers)

    routes = (("GET", "/computeMetadata/v1/instance/service-accounts/default/identity", "handle"),)


@dataclass
class GithubOidcStandin(Served):
    """GitHub Actions' ID-token endpoint (``ACTIONS_ID_TOKEN_REQUEST_URL``)."""

    issuer: OidcIssuer
    request_token: str = field(default_factory=lambda: "ghs_" + secrets.token_hex(20))
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    url: str = ""

    def reset(self) -> None:
        self.requests.clear()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        if request.headers.get("Authorization") != f"Bearer {self.request_token}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.query.get("api-version") != "2.0":
            return web.json_response({"message": "api-version required"}, status=400)
        audience = request.query.get("audience", "https://github.com/octo-org")
        token = self.issuer.issue(
            "https://token.actions.githubusercontent.com",
            audience,
            "repo:octo-org/app:ref:refs/heads/main",
        )
        self.issued.append(token)
        return web.json_response({"count": 2240, "value": token})

    routes = (("GET", "/_apis/pipelines/workflows/1/idtoken", "handle"),)


GOOGLE_PROJECT_NUMBER = "123456789012"
GOOGLE_PROVIDER = (
    f"//iam.googleapis.com/projects/{GOOGLE_PROJECT_NUMBER}/locations/global/"
    "workloadIdentityPools/extauthz-pool/providers/workload"
)
GOOGLE_PROVIDER_AUDIENCE = "https:" + GOOGLE_PROVIDER  # a provider's default allowed audience
VERTEX_SERVICE_ACCOUNT = "vertex-invoker@extauthz-demo.iam.gserviceaccount.com"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass
class GoogleStsStandin(TokenService):
    """Google's Security Token Service ``POST /v1/token``: OAuth 2.0 token exchange (RFC 8693)
    of an OIDC token for a federated access token, for a workload identity pool provider."""

    issuer: OidcIssuer
    # pool provider (the exchange's audience) -> the token audience it accepts
    providers: dict[str, str] = field(
        default_factory=lambda: {GOOGLE_PROVIDER: GOOGLE_PROVIDER_AUDIENCE}
    )
    default_lifetime: int = 3599
    headers: list[dict[str, str]] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)  # federated token -> expiry

    def reset(self) -> None:
        super().reset()
        self.providers = {GOOGLE_PROVIDER: GOOGLE_PROVIDER_AUDIENCE}
        self.default_lifetime = 3599
        self.headers.clear()
        self.issued.clear()

    @staticmethod
    def error(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    def valid(self, token: str) -> bool:
        return self.issued.get(token, 0.0) > time.time()

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(form)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if self.outage:
            return self.error(503, "temporarily_unavailable", "The service is unavailable.")
        if request.content_type != "application/x-www-form-urlencoded":
            return self.error(400, "invalid_request", "Invalid Content-Type.")
        if form.get("grant_type") != TOKEN_EXCHANGE:
            return self.error(400, "unsupported_grant_type", "Unsupported grant type.")
        if form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return self.error(400, "invalid_request", "Invalid requested_token_type.")
        if form.get("subject_token_type") not in (
            "urn:ietf:params:oauth:token-type:jwt",
            "urn:ietf:params:oauth:token-type:id_token",
        ):
            return self.error(400, "invalid_request", "Invalid subject_token_type.")
        expected = self.providers.get(form.get("audience", ""))
        if expected is None:
            return self.error(
                400,
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid. This '
                "might either be because the pool or provider is disabled or deleted or because "
                "it doesn't exist.",
            )
        claims = self.issuer.claims(form.get("subject_token", ""))
        if claims is None:
            return self.error(400, "invalid_grant", "Unable to parse the ID Token.")
        if claims["aud"] != expected:
            return self.error(
                400,
                "invalid_grant",
                f"The audience in ID Token [{claims['aud']}] does not match the expected "
                f"audience {expected}.",
            )
        if claims["exp"] <= time.time():
            return self.error(400, "invalid_grant", "ID Token has expired.")
        lifetime = int(self.next_lifetime(self.default_lifetime))
        token = "ya29.d." + _random(string.ascii_letters + string.digits + "-_", 180)
        self.issued[token] = time.time() + lifetime
        self.issue_times.append(time.time())
        return web.json_response(
            {
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": lifetime,
            }
        )

    routes = (("POST", "/v1/token", "handle"),)


@dataclass
class IamCredentialsStandin(TokenService):
    """The IAM Credentials API's ``projects.serviceAccounts.generateAccessToken``, which takes
    the federated token (Bearer) and answers the service account's access token."""

    sts: GoogleStsStandin
    service_accounts: set[str] = field(default_factory=lambda: {VERTEX_SERVICE_ACCOUNT})
    issued: list[str] = field(default_factory=list)

    def reset(self) -> None:
        super().reset()
        self.service_accounts = {VERTEX_SERVICE_ACCOUNT}
        self.issued.clear()

    @staticmethod
    def error(code: int, status: str, message: str) -> web.Response:
        return web.json_response(
            {"error": {"code": code, "message": message, "status": status}}, status=code
        )

    def impersonation_url(self, account: str = VERTEX_SERVICE_ACCOUNT) -> str:
        return f"{self.url}/v1/projects/-/serviceAccounts/{account}:generateAccessToken"

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        record: dict[str, Any] = {
            "path": request.path,
            "authorization": request.headers.get("Authorization", ""),
            "content_type": request.content_type,
        }
        self.requests.append(record)
        if self.outage:
            return self.error(503, "UNAVAILABLE", "The service is currently unavailable.")
        account, _, method = request.match_info["account"].partition(":")
        if method != "generateAccessToken" or request.match_info["project"] != "-":
            return self.error(404, "NOT_FOUND", "Method not found.")
        bearer = record["authorization"].removeprefix("Bearer ")
        if not record["authorization"].startswith("Bearer ") or not self.sts.valid(bearer):
            return self.error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return self.error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        record["body"] = body
        if account not in self.service_accounts:
            return self.error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may "
                "not exist).",
            )
        if not isinstance(body.get("scope"), list) or not body["scope"]:
            return self.error(400, "INVALID_ARGUMENT", "Scope required.")
        match = re.fullmatch(r"(\d+)s", str(body.get("lifetime", "3600s")))
        if match is None or int(match[1]) > 3600:
            return self.error(
                400,
                "INVALID_ARGUMENT",
                "The lifetime of the token must be less than or equal to 3600 seconds.",
            )
        lifetime = self.next_lifetime(int(match[1]))
        token = "ya29.c." + _random(string.ascii_letters + string.digits + "-_", 200)
        self.issued.append(token)
        self.issue_times.append(time.time())
        expire = datetime.fromtimestamp(math.ceil(time.time() + lifetime), UTC)
        return web.json_response(
            {"accessToken": token, "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ")}
        )

    routes = (("POST", "/v1/projects/{project}/serviceAccounts/{account}", "handle"),)


_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


class _SignedHeadersSigV4(SigV4Auth):  # type: ignore[misc]
    """botocore's SigV4 over exactly the headers the signer listed, as AWS verifies it.

    botocore leaves user-agent out when it signs; Envoy signs it. A verifier follows the
    request's SignedHeaders, so this one does too.
    """

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name, value in request.headers.items():
            header_map[name.lower()] = value
        return header_map


def verify_sigv4(
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    credentials_for: Callable[[str], Credentials | None],
) -> dict[str, Any]:
    """Recompute a SigV4 signature with botocore from the headers Envoy signed."""
    match = _AUTH.match(headers.get("authorization", ""))
    if match is None:
        return {"valid": False, "why": "no SigV4 Authorization header"}
    creds = credentials_for(match["key"])
    if creds is None:
        return {"valid": False, "why": "unknown access key", "access_key_id": match["key"]}
    signed = match["signed"].split(";")
    request = AWSRequest(
        method=method,
        url=f"https://{headers['host']}{raw_path}",
        data=body,
        headers={name: headers[name] for name in signed},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = _SignedHeadersSigV4(creds, match["service"], match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    valid = hmac.compare_digest(expected, match["signature"])
    return {
        "valid": valid,
        "canonical_request": None if valid else canonical,
        "access_key_id": match["key"],
        "region": match["region"],
        "service": match["service"],
        "signed_headers": signed,
        "session_token_matches": headers.get("x-amz-security-token") == creds.token,
        "payload_hash_matches": headers.get("x-amz-content-sha256")
        == hashlib.sha256(body).hexdigest(),
    }


@dataclass
class UpstreamStandin(Served):
    """The LLM provider behind Envoy: records requests and checks their credentials."""

    sts: StsStandin
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        seen: dict[str, Any] = {
            "path": request.raw_path,
            "host": headers.get("host"),
            "authorization": headers.get("authorization"),
            "x_api_key": headers.get("x-api-key"),
            "time": time.time(),
        }
        if headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            seen["sigv4"] = verify_sigv4(
                request.method, request.raw_path, headers, body, self.sts.credentials
            )
        self.requests.append(seen)
        return web.json_response(seen)

    routes = (("*", "/{tail:.*}", "handle"),)


@dataclass
class Cloud:
    """All stand-ins, started once per test session."""

    issuer: OidcIssuer
    sts: StsStandin
    entra: EntraStandin
    gce: GceMetadataStandin
    github: GithubOidcStandin
    managed_identity: ManagedIdentityStandin
    google_sts: GoogleStsStandin
    iam: IamCredentialsStandin
    upstream: UpstreamStandin
    upstream_port: int = 0

    def reset(self) -> None:
        for standin in (
            self.sts,
            self.entra,
            self.gce,
            self.github,
            self.managed_identity,
            self.google_sts,
            self.iam,
        ):
            standin.reset()
        self.upstream.requests.clear()

    def env(self) -> dict[str, str]:
        """What a workload's environment would say, pointed at the stand-ins."""
        return {
            "GCE_METADATA_HOST": self.gce.host,
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.github.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.github.request_token,
            "AZURE_AUTHORITY_HOST": self.entra.url,
            "AZURE_CLIENT_ID": self.entra.client_id,
            "AZURE_TENANT_ID": self.entra.tenant_id,
            "AWS_ENDPOINT_URL_STS": self.sts.url,
        }

    def external_account(
        self, credential_source: dict[str, Any], *, impersonate: bool = True
    ) -> dict[str, Any]:
        """A Vertex ``vertex_credentials`` document, as ``gcloud iam workload-identity-pools
        create-cred-config`` writes it, with the endpoints moved to the stand-ins through its
        own ``token_url`` and ``service_account_impersonation_url``."""
        doc: dict[str, Any] = {
            "universe_domain": "googleapis.com",
            "type": "external_account",
            "audience": GOOGLE_PROVIDER,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": f"{self.google_sts.url}/v1/token",
            "credential_source": credential_source,
        }
        if impersonate:
            doc["service_account_impersonation_url"] = self.iam.impersonation_url()
        return doc

    def secrets(self) -> list[str]:
        """Every secret and token handed out so far (none may appear in a log)."""
        found = [
            self.github.request_token,
            self.managed_identity.identity_header,
            *self.issuer.tokens,
            *self.entra.issued,
            *self.google_sts.issued,
            *self.iam.issued,
        ]
        for creds in self.sts.issued.values():
            found += [creds["SecretAccessKey"], creds["SessionToken"]]
        return found


def start_cloud(thread: ServerThread, server_ssl: ssl.SSLContext) -> Cloud:
    issuer = OidcIssuer()
    sts = StsStandin(issuer)
    google_sts = GoogleStsStandin(issuer)
    cloud = Cloud(
        issuer=issuer,
        sts=sts,
        entra=EntraStandin(issuer),
        gce=GceMetadataStandin(issuer),
        github=GithubOidcStandin(issuer),
        managed_identity=ManagedIdentityStandin(issuer),
        google_sts=google_sts,
        iam=IamCredentialsStandin(google_sts),
        upstream=UpstreamStandin(sts),
    )
    cloud.sts.url = f"https://127.0.0.1:{thread.serve(cloud.sts.app(), server_ssl)}"
    cloud.entra.url = f"https://localhost:{thread.serve(cloud.entra.app(), server_ssl)}"
    cloud.gce.host = f"127.0.0.1:{thread.serve(cloud.gce.app())}"
    cloud.managed_identity.url = f"http://127.0.0.1:{thread.serve(cloud.managed_identity.app())}"
    port = thread.serve(cloud.github.app(), server_ssl)
    cloud.github.url = (
        f"https://localhost:{port}/_apis/pipelines/workflows/1/idtoken?api-version=2.0"
    )
    cloud.google_sts.url = f"https://127.0.0.1:{thread.serve(cloud.google_sts.app(), server_ssl)}"
    cloud.iam.url = f"https://localhost:{thread.serve(cloud.iam.app(), server_ssl)}"
    cloud.upstream_port = thread.serve(cloud.upstream.app(), server_ssl)
    return cloud


class ConnectProxy:
    """An HTTP proxy that only tunnels (``CONNECT host:port``), as corporate egress proxies do.
    It records each CONNECT and keeps every byte it relays, so a test can show it saw only
    ciphertext; with ``credentials`` ("user:password") it answers 407 to anything else."""

    def __init__(self, thread: ServerThread, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.connects: list[dict[str, str]] = []
        self.relayed = bytearray()
        self._thread = thread

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", 0)

        self._server = thread.call(start())
        self.port = int(self._server.sockets[0].getsockname()[1])

    def url(self, credentials: str | None = None) -> str:
        userinfo = f"{credentials}@" if credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def targets(self) -> set[str]:
        return {c["target"] for c in self.connects if c["answer"] == "200"}

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()

        self._thread.call(stop())

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                self.relayed += chunk
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, record: dict[str, str], status: str,
                      extra: str = "") -> None:  # fmt: skip
        record["answer"] = status.split()[0]
        writer.write(f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *lines = head.split("\r\n")
        method, target, _ = [*request_line.split(" ", 2), "", ""][:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        record = {
            "method": method,
            "target": target,
            "proxy_authorization": headers.get("proxy-authorization", ""),
        }
        self.connects.append(record)
        if method != "CONNECT":
            await self._answer(writer, record, "405 Method Not Allowed")
            return
        expected = "Basic " + base64.b64encode((self.credentials or "").encode()).decode()
        if self.credentials and record["proxy_authorization"] != expected:
            await self._answer(
                writer,
                record,
                "407 Proxy Authentication Required",
                'Proxy-Authenticate: Basic realm="egress"\r\n',
            )
            return
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except (OSError, ValueError):
            await self._answer(writer, record, "502 Bad Gateway")
            return
        record["answer"] = "200"
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(self._relay(reader, up_writer), self._relay(up_reader, writer))


class Blackhole:
    """A service that is down the worst way: it accepts TCP connections and never answers, so
    every call holds its connection until the caller's timeout."""

    def __init__(self, thread: ServerThread) -> None:
        self._thread = thread
        self._held: list[asyncio.StreamWriter] = []

        async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)

        async def start() -> asyncio.Server:
            return await asyncio.start_server(hold, "127.0.0.1", 0)

        self._server = thread.call(start())
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in self._held:
                writer.close()

        self._thread.call(stop())

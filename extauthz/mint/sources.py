"""Workload OIDC token sources: LiteLLM's ``oidc/<provider>/<audience>`` secret references.

Each provider reads a token exactly where LiteLLM's ``get_secret`` does (reference §7):

==============  ===========================================================  ===========
provider        where the token comes from                                   cached for
==============  ===========================================================  ===========
google          GCE metadata ``…/service-accounts/default/identity?audience``  3540 s
circleci        env ``CIRCLE_OIDC_TOKEN`` (audience ignored)                  no
circleci_v2     env ``CIRCLE_OIDC_TOKEN_V2`` (audience ignored)               no
github          GET ``$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…``, JSON value  295 s
azure           the file named by ``AZURE_FEDERATED_TOKEN_FILE`` (AKS)          no
                else the managed identity (IMDS or App Service), resource      half its life
                ``<audience>``, as azure-identity asks it
file            the file at path ``<audience>``                               no
env             env var ``<audience>``                                        no
env_path        the file whose path is in env var ``<audience>``              no
==============  ===========================================================  ===========

Endpoints can be moved the way the real clients allow: ``GCE_METADATA_HOST`` (or the older
``GCE_METADATA_ROOT``) as google-auth does, ``ACTIONS_ID_TOKEN_REQUEST_URL`` itself, and
``IDENTITY_ENDPOINT`` / ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` as azure-identity does. A cached
token is never reused within a minute of its own ``exp``. Files are re-read on every use, because
projected service-account tokens are rotated in place by the kubelet.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from yarl import URL

from extauthz.mint.answers import json_object
from extauthz.mint.azure import managed_identity_endpoint, managed_identity_token, scope_to_resource
from extauthz.mint.errors import TokenSourceError
from extauthz.mint.redact import unverified_claims
from extauthz.mint.transport import HttpClient

PREFIX = "oidc/"
PROVIDERS = ("google", "circleci", "circleci_v2", "github", "azure", "file", "env", "env_path")
CACHE_SECONDS = {"google": 3540.0, "github": 295.0}
EXP_MARGIN_SECONDS = 60.0
MSAL_HALF_LIFE_FROM = 7200.0
MSAL_EXPIRY_MARGIN = 300.0
MAX_TOKEN_BYTES = 64 * 1024
DEFAULT_GCE_METADATA_HOST = "metadata.google.internal"


@dataclass(frozen=True, slots=True)
class OidcRef:
    """A parsed ``oidc/<provider>/<audience>``; the audience may itself contain slashes."""

    provider: str
    audience: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.provider}/{self.audience}"


def is_oidc_ref(value: object) -> bool:
    """True for a string that starts with ``oidc/``."""
    return isinstance(value, str) and value.startswith(PREFIX)


def parse_oidc_ref(value: str) -> OidcRef:
    """Split ``oidc/<provider>/<audience>``; raise ValueError with the fix for a bad one."""
    if not is_oidc_ref(value):
        raise ValueError(f"{value!r} is not an oidc/<provider>/<audience> reference")
    provider, _, audience = value[len(PREFIX) :].partition("/")
    if provider not in PROVIDERS:
        raise ValueError(
            f"unknown OIDC provider {provider!r} in {value!r}; use one of {', '.join(PROVIDERS)}"
        )
    return OidcRef(provider, audience)


def required_env(ref: OidcRef) -> tuple[str, ...]:
    """The environment variables a provider cannot work without."""
    match ref.provider:
        case "circleci":
            return ("CIRCLE_OIDC_TOKEN",)
        case "circleci_v2":
            return ("CIRCLE_OIDC_TOKEN_V2",)
        case "github":
            return ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        case "env" | "env_path":
            return (ref.audience,) if ref.audience else ()
        case _:
            return ()


def ref_problems(ref: OidcRef, environ: Mapping[str, str]) -> list[str]:
    """What stops ``ref`` from ever working in this environment (checked once, at start)."""
    problems = []
    if ref.provider in ("google", "env", "env_path", "file") and not ref.audience:
        what = {"google": "an audience", "file": "a path"}.get(ref.provider, "a variable name")
        problems.append(f"{ref} needs {what} after the provider: oidc/{ref.provider}/…")
    for name in required_env(ref):
        if not environ.get(name):
            problems.append(f"{ref} needs environment variable {name}, which is not set")
    if ref.provider == "azure" and not environ.get("AZURE_FEDERATED_TOKEN_FILE"):
        try:
            managed_identity_endpoint(environ)
        except ValueError as exc:
            problems.append(f"{ref}: AZURE_FEDERATED_TOKEN_FILE is not set and {exc}")
        if not scope_to_resource(ref.audience):
            problems.append(
                f"{ref} needs an audience when AZURE_FEDERATED_TOKEN_FILE is not set: the "
                "resource to ask the managed identity a token for (oidc/azure/api://…)"
            )
    return problems


def gce_metadata_host(environ: Mapping[str, str]) -> str:
    """Where the GCE metadata server is, as google-auth finds it."""
    return (
        environ.get("GCE_METADATA_HOST")
        or environ.get("GCE_METADATA_ROOT")
        or DEFAULT_GCE_METADATA_HOST
    )


def plausible_path(value: str) -> bool:
    """Short, no whitespace, not a JWT: safe to show as the path it is meant to be (a value
    that fails this may be the secret itself, put where a path was expected)."""
    return (
        len(value) <= 1024 and not any(c.isspace() for c in value) and not unverified_claims(value)
    )


def shown_path(path: str, env_name: str | None) -> str:
    """``path`` quoted for a message; a value read from env ``env_name`` is shown only when it
    looks like a path, since a variable meant to name a token file sometimes holds the token."""
    if env_name is None:
        return repr(path)
    if "/" in path and plausible_path(path):
        return f"{path!r} (from {env_name})"
    return (
        f"named by {env_name}, whose value does not look like a path (is it the token itself? "
        f"then write oidc/env/{env_name})"
    )


def read_token_file(path: str, what: str, *, env_name: str | None = None) -> str:
    """The stripped text of a token file, re-read on every call; TokenSourceError naming
    ``what`` (a reference or a config key) and the path, never the file's content."""
    shown = shown_path(path, env_name)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        hint = ""
        if env_name is None and not os.path.isabs(path):
            hint = f"; the path is relative to {os.getcwd()!r}"
            if what.startswith(PREFIX):
                hint += ": for an absolute path write oidc/file//…"
        raise TokenSourceError(
            f"{what}: cannot read the token file {shown} ({exc.strerror}){hint}"
        ) from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise TokenSourceError(f"{what}: token file {shown} is larger than {MAX_TOKEN_BYTES} bytes")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise TokenSourceError(f"{what}: token file {shown} is not UTF-8 text") from None


def _env(environ: Mapping[str, str], name: str, ref: OidcRef) -> str:
    value = environ.get(name, "")
    if not value:
        raise TokenSourceError(f"{ref}: environment variable {name} is not set or empty")
    return value


class OidcTokens:
    """Gets the OIDC token for a reference, caching per provider as LiteLLM does.

    Concurrent requests for the same reference share one fetch.
    """

    def __init__(
        self, http: HttpClient, environ: Mapping[str, str], clock: Callable[[], float]
    ) -> None:
        self._http = http
        self._environ = environ
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, ref: OidcRef) -> str:
        """The token for ``ref``; raises TokenSourceError or TransportError, never returns ''."""
        key = str(ref)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
            token, ttl = await self._fetch(ref)
            if not token:
                raise TokenSourceError(f"{ref}: the token source gave an empty token")
            if ttl > 0:
                until = self._clock() + ttl
                exp = unverified_claims(token).get("exp")
                if isinstance(exp, int | float):
                    until = min(until, float(exp) - EXP_MARGIN_SECONDS)
                self._cache[key] = (token, until)
            return token

    def forget(self, ref: OidcRef) -> None:
        """Drop a cached token, e.g. after a service refused it."""
        self._cache.pop(str(ref), None)

    async def _fetch(self, ref: OidcRef) -> tuple[str, float]:
        """The token and how many seconds it may be reused (0: fetched on every use)."""
        env = self._environ
        match ref.provider:
            case "google":
                return await self._google(ref), CACHE_SECONDS["google"]
            case "github":
                return await self._github(ref), CACHE_SECONDS["github"]
            case "circleci":
                return _env(env, "CIRCLE_OIDC_TOKEN", ref).strip(), 0.0
            case "circleci_v2":
                return _env(env, "CIRCLE_OIDC_TOKEN_V2", ref).strip(), 0.0
            case "azure" if env.get("AZURE_FEDERATED_TOKEN_FILE"):
                path = env["AZURE_FEDERATED_TOKEN_FILE"]
                return read_token_file(path, str(ref), env_name="AZURE_FEDERATED_TOKEN_FILE"), 0.0
            case "azure":
                return await self._managed_identity(ref)
            case "file":
                return read_token_file(ref.audience, str(ref)), 0.0
            case "env":
                return _env(env, ref.audience, ref).strip(), 0.0
            case "env_path":
                path = _env(env, ref.audience, ref)
                return read_token_file(path, str(ref), env_name=ref.audience), 0.0
        raise TokenSourceError(f"{ref}: unsupported OIDC provider {ref.provider!r}")

    async def _managed_identity(self, ref: OidcRef) -> tuple[str, float]:
        """A managed-identity token for the resource ``<audience>``, reused as MSAL reuses it:
        for half its life when that is two hours or more, else until five minutes before it
        expires."""
        try:
            endpoint = managed_identity_endpoint(self._environ)
        except ValueError as exc:
            raise TokenSourceError(f"{ref}: {exc}") from None
        now = self._clock()
        access = await managed_identity_token(
            self._http,
            endpoint,
            resource=scope_to_resource(ref.audience),
            client_id=self._environ.get("AZURE_CLIENT_ID") or None,
            environ=self._environ,
            now=now,
        )
        lifetime = access.expires_at - now
        ttl = lifetime / 2 if lifetime >= MSAL_HALF_LIFE_FROM else lifetime - MSAL_EXPIRY_MARGIN
        return access.token.reveal(), max(0.0, ttl)

    async def _google(self, ref: OidcRef) -> str:
        host = gce_metadata_host(self._environ)
        url = URL(
            f"http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
        ).with_query(audience=ref.audience)
        what = f"the GCE metadata server at {host}"
        resp = await self._http.request(
            "GET", url, what=what, headers={"Metadata-Flavor": "Google"}
        )
        text = resp.body.decode("utf-8", "replace").strip()
        if resp.status != 200:
            raise TokenSourceError(f"{ref}: {what} answered HTTP {resp.status}: {text[:200]!r}")
        return text

    async def _github(self, ref: OidcRef) -> str:
        base = _env(self._environ, "ACTIONS_ID_TOKEN_REQUEST_URL", ref)
        bearer = _env(self._environ, "ACTIONS_ID_TOKEN_REQUEST_TOKEN", ref)
        url = URL(base)
        if ref.audience:
            url = url.extend_query(audience=ref.audience)
        what = f"the GitHub Actions OIDC endpoint at {url.origin()}"
        resp = await self._http.request(
            "GET",
            url,
            what=what,
            headers={
                "Authorization": f"Bearer {bearer}",
                "Accept": "application/json; api-version=2.0",
            },
        )
        if resp.status != 200:
            raise TokenSourceError(f"{ref}: {what} answered HTTP {resp.status}")
        value = json_object(resp.body).get("value")
        if not isinstance(value, str) or not value:
            raise TokenSourceError(f"{ref}: {what} answered without a JSON 'value' token")
        return value

"""Google Cloud workload identity federation, for Vertex AI: a workload OIDC token in, a Google
access token out, as google-auth's ``identity_pool.Credentials`` gets one (what LiteLLM uses for a
``vertex_credentials`` document of ``"type": "external_account"``).

1. The subject token comes from the document's ``credential_source``: google-auth's ``file`` or
   ``url`` (with ``format`` text or json), or ``oidc: oidc/<provider>/<audience>``, any of the
   minter's token references (our addition; google-auth does not read it).
2. Google's Security Token Service exchanges it (OAuth 2.0 token exchange, RFC 8693) for a
   federated access token, the ``audience`` being the workload identity pool provider.
3. With ``service_account_impersonation_url``, the IAM Credentials API's ``generateAccessToken``
   turns that into the service account's own access token.

The result is written as ``Authorization: Bearer <token>`` for Envoy's ``credential_injector``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from yarl import URL

from extauthz.mint.answers import (
    AccessToken,
    access_token,
    expires_after,
    json_object,
    oauth_error,
)
from extauthz.mint.errors import ExchangeError, TokenSourceError
from extauthz.mint.redact import Secret, describe_token, scrub
from extauthz.mint.sources import OidcRef, parse_oidc_ref, read_token_file, ref_problems
from extauthz.mint.transport import HttpClient

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
REQUESTED_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
)
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# google-auth asks STS for the IAM scope when the federated token is only used to impersonate
IAM_SCOPE = "https://www.googleapis.com/auth/iam"
DEFAULT_UNIVERSE_DOMAIN = "googleapis.com"
DEFAULT_LIFETIME_SECONDS = 3600
MIN_LIFETIME_SECONDS, MAX_LIFETIME_SECONDS = 600, 43200
_SERVICE_ACCOUNT = re.compile(r"/serviceAccounts/(?P<email>[^/:]+):generateAccessToken$")
_SOURCE_KINDS = ("oidc", "file", "url")
_NOT_SPOKEN = {
    "environment_id": "AWS-sourced credentials (environment_id)",
    "executable": "executable-sourced credentials",
    "certificate": "X.509 certificate credentials",
}
_POOL_HINT = (
    "; the workload identity pool provider must trust this issuer, list this audience among its "
    "allowed audiences (by default https://iam.googleapis.com/<the provider's name>) and pass "
    "its attribute condition"
)


@dataclass(frozen=True, slots=True)
class FileSubject:
    """google-auth's ``credential_source.file``: the token is the file's text or a JSON field."""

    path: str
    field: str | None = None

    def __str__(self) -> str:
        return f"credential_source.file {self.path}"


@dataclass(frozen=True, slots=True)
class UrlSubject:
    """google-auth's ``credential_source.url``: GET with ``headers``; text or a JSON field."""

    url: str
    headers: tuple[tuple[str, Secret], ...] = ()
    field: str | None = None

    def __str__(self) -> str:
        return f"credential_source.url {_shown_url(self.url)}"


SubjectSource = OidcRef | FileSubject | UrlSubject


def _shown_url(url: str) -> str:
    """``url`` for a message or /status: without a password or a query, which may be secrets."""
    parts = URL(url)
    return str(parts.with_user(None).with_query(None)) if parts.absolute else url


@dataclass(frozen=True, slots=True)
class ExternalAccount:
    """The parts of an ``external_account`` document the exchange needs."""

    audience: str
    subject_token_type: str
    token_url: str
    subject: SubjectSource
    impersonation_url: str | None = None
    service_account: str | None = None
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS

    def __str__(self) -> str:
        chain = f"{self.subject} -> Google STS {self.audience}"
        return chain + (f" -> {self.service_account}" if self.service_account else "")


def _string(doc: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{key}: must be a non-empty string")
        return None
    return value.strip()


def _https(value: str, path: str, problems: list[str]) -> str:
    parts = URL(value)
    if parts.scheme != "https" or not parts.host:
        problems.append(f"{path}: {value!r} must be an https:// URL (a token is sent to it)")
    return value


def _subject(
    source: object, where: str, environ: Mapping[str, str], problems: list[str]
) -> SubjectSource | None:
    where = f"{where}.credential_source"
    if not isinstance(source, Mapping):
        problems.append(f"{where}: must be a mapping with one of {', '.join(_SOURCE_KINDS)}")
        return None
    for key, what in _NOT_SPOKEN.items():
        if key in source:
            problems.append(
                f"{where}.{key}: {what} are not supported by extauthz mint; use oidc, file or url"
            )
            return None
    kinds = [k for k in _SOURCE_KINDS if source.get(k) is not None]
    if len(kinds) != 1:
        problems.append(
            f"{where}: needs exactly one of {', '.join(_SOURCE_KINDS)}"
            + (f", not {' and '.join(kinds)}" if kinds else "")
        )
        return None
    (kind,) = kinds
    value = source[kind]
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{kind}: must be a non-empty string")
        return None
    if kind == "oidc":
        try:
            ref = parse_oidc_ref(value.strip())
        except ValueError as exc:
            problems.append(f"{where}.oidc: {exc}")
            return None
        found = ref_problems(ref, environ)
        problems.extend(f"{where}.oidc: {p}" for p in found)
        return None if found else ref
    field = _format_field(source.get("format"), f"{where}.format", problems)
    if kind == "file":
        return FileSubject(value, field)
    parts = URL(value)
    if parts.scheme not in ("http", "https") or not parts.host:
        problems.append(f"{where}.url: {_shown_url(value)!r} must be an http:// or https:// URL")
        return None
    headers = source.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        problems.append(f"{where}.headers: must map header names to strings")
        return None
    return UrlSubject(value, tuple((k, Secret(v)) for k, v in headers.items()), field)


def _format_field(fmt: object, where: str, problems: list[str]) -> str | None:
    """None for ``text`` (the default), the field name for ``json``."""
    if fmt is None:
        return None
    kind = fmt.get("type", "text") if isinstance(fmt, Mapping) else None
    if kind == "text":
        return None
    if kind == "json" and isinstance(fmt, Mapping):
        field = fmt.get("subject_token_field_name")
        if isinstance(field, str) and field:
            return field
        problems.append(f"{where}.subject_token_field_name: needed for the json format")
        return None
    problems.append(f"{where}: type must be text or json")
    return None


def parse_external_account(
    doc: Mapping[str, Any], where: str, environ: Mapping[str, str], problems: list[str]
) -> ExternalAccount | None:
    """Read an ``external_account`` document; every problem is recorded under ``where``.key."""
    kind = doc.get("type")
    if kind != "external_account":
        why = {
            "service_account": "a service account key is a long-lived secret",
            "authorized_user": "user credentials are a long-lived refresh token",
        }.get(str(kind), "it is not an external_account document")
        problems.append(
            f"{where}.type: {kind!r}: {why}; extauthz mint mints Vertex AI tokens through "
            "workload identity federation (type external_account)"
        )
        return None
    for key, why in (
        ("client_secret", "an OAuth client secret is a long-lived secret"),
        ("workforce_pool_user_project", "workforce pools are for people, not workloads"),
    ):
        if doc.get(key) is not None:
            problems.append(f"{where}.{key}: not supported ({why})")
    audience = _string(doc, "audience", where, problems)
    if audience is None and "audience" not in doc:
        problems.append(
            f"{where}.audience: missing; it names the workload identity pool provider "
            "(//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/"
            "<pool>/providers/<provider>)"
        )
    token_type = _string(doc, "subject_token_type", where, problems)
    if token_type not in SUBJECT_TOKEN_TYPES:
        problems.append(
            f"{where}.subject_token_type: {token_type!r}; the OIDC token sources give "
            f"{' or '.join(SUBJECT_TOKEN_TYPES)}"
        )
    universe = _string(doc, "universe_domain", where, problems) or DEFAULT_UNIVERSE_DOMAIN
    token_url = _string(doc, "token_url", where, problems) or f"https://sts.{universe}/v1/token"
    _https(token_url, f"{where}.token_url", problems)
    impersonation = _string(doc, "service_account_impersonation_url", where, problems)
    service_account = None
    if impersonation is not None:
        _https(impersonation, f"{where}.service_account_impersonation_url", problems)
        match = _SERVICE_ACCOUNT.search(URL(impersonation).path)
        if match is None:
            problems.append(
                f"{where}.service_account_impersonation_url: does not end in "
                "/serviceAccounts/<email>:generateAccessToken"
            )
        else:
            service_account = match["email"]
    lifetime = _lifetime(doc.get("service_account_impersonation"), where, problems)
    subject = _subject(doc.get("credential_source"), where, environ, problems)
    if audience is None or token_type not in SUBJECT_TOKEN_TYPES or subject is None:
        return None
    return ExternalAccount(
        audience=audience,
        subject_token_type=token_type,
        token_url=token_url,
        subject=subject,
        impersonation_url=impersonation,
        service_account=service_account,
        lifetime_seconds=lifetime,
    )


def _lifetime(options: object, where: str, problems: list[str]) -> int:
    """``service_account_impersonation.token_lifetime_seconds``, google-auth's default 3600."""
    if options is not None and not isinstance(options, Mapping):
        problems.append(f"{where}.service_account_impersonation: must be a mapping")
        return DEFAULT_LIFETIME_SECONDS
    value = (options or {}).get("token_lifetime_seconds", DEFAULT_LIFETIME_SECONDS)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_LIFETIME_SECONDS <= value <= MAX_LIFETIME_SECONDS
    ):
        problems.append(
            f"{where}.service_account_impersonation.token_lifetime_seconds: must be whole "
            f"seconds in [{MIN_LIFETIME_SECONDS}, {MAX_LIFETIME_SECONDS}], not {value!r}"
        )
        return DEFAULT_LIFETIME_SECONDS
    return value


def _token_from(text: str, field: str | None, what: str) -> str:
    if field is None:
        return text.strip()
    value = json_object(text.encode()).get(field)
    if not isinstance(value, str) or not value:
        raise TokenSourceError(f"{what}: no string field {field!r} in the JSON answer")
    return value


async def read_subject(http: HttpClient, source: FileSubject | UrlSubject) -> str:
    """The subject token from google-auth's ``file`` or ``url`` credential source (never
    cached, as google-auth reads it on every refresh)."""
    if isinstance(source, FileSubject):
        text = read_token_file(source.path, str(source))
        return _token_from(text, source.field, str(source))
    what = str(source)
    headers = {k: v.reveal() for k, v in source.headers}
    resp = await http.request("GET", URL(source.url), what=what, headers=headers)
    if resp.status != 200:
        raise TokenSourceError(f"{what} answered HTTP {resp.status}")
    return _token_from(resp.body.decode("utf-8", "replace"), source.field, what)


async def exchange_subject_token(
    http: HttpClient, account: ExternalAccount, subject_token: str, *, now: float
) -> AccessToken:
    """POST the token exchange to Google STS; ExchangeError naming STS's error and the
    subject's unverified aud/iss/sub (never the token) on refusal."""
    what = f"Google STS at {URL(account.token_url).origin()}"
    resp = await http.request(
        "POST",
        account.token_url,
        what=what,
        headers={"Accept": "application/json"},
        form={
            "grant_type": GRANT_TYPE,
            "audience": account.audience,
            "scope": IAM_SCOPE if account.impersonation_url else CLOUD_PLATFORM_SCOPE,
            "requested_token_type": REQUESTED_TOKEN_TYPE,
            "subject_token": subject_token,
            "subject_token_type": account.subject_token_type,
        },
    )
    data = json_object(resp.body)
    if resp.status == 200:
        expires_at = expires_after(data.get("expires_in"), now)
        needs = "access_token and expires_in"
        return access_token(data.get("access_token"), expires_at, what, needs)
    refusal = oauth_error(data, [subject_token])
    if refusal is None:
        raise ExchangeError(f"{what} answered HTTP {resp.status} without an OAuth error document")
    error, detail = refusal
    raise ExchangeError(
        f"{what} refused the token exchange for {account.audience} (HTTP {resp.status} {error}: "
        f"{detail}); {describe_token(subject_token)}{_POOL_HINT}",
        code=error,
    )


def _rfc3339(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


async def generate_access_token(
    http: HttpClient, account: ExternalAccount, federated_token: str
) -> AccessToken:
    """POST ``generateAccessToken`` to the IAM Credentials API with the federated token;
    ExchangeError naming IAM's status and message on refusal."""
    url = account.impersonation_url or ""
    what = f"IAM Credentials at {URL(url).origin()}"
    resp = await http.request(
        "POST",
        url,
        what=what,
        headers={"Authorization": f"Bearer {federated_token}", "Accept": "application/json"},
        json_body={
            "scope": [CLOUD_PLATFORM_SCOPE],
            "lifetime": f"{account.lifetime_seconds}s",
        },
    )
    data = json_object(resp.body)
    if resp.status == 200:
        needs = "accessToken and an RFC 3339 expireTime"
        return access_token(data.get("accessToken"), _rfc3339(data.get("expireTime")), what, needs)
    error = data.get("error")
    if not isinstance(error, dict):
        raise ExchangeError(f"{what} answered HTTP {resp.status} without a Google API error")
    status, message = str(error.get("status", "")), str(error.get("message", ""))
    hint = ""
    if status == "PERMISSION_DENIED":
        hint = (
            "; the pool's principal (principal://… or principalSet://…) needs "
            f"roles/iam.workloadIdentityUser on {account.service_account}"
        )
    raise ExchangeError(
        f"{what} refused generateAccessToken for {account.service_account} (HTTP "
        f"{resp.status} {status}: {scrub(message, [federated_token])}){hint}",
        code=status,
    )

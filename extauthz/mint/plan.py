"""Turn a LiteLLM config's ``model_list`` into the credentials to mint. No network, no clock; the
only file read is a ``vertex_credentials`` file.

An entry yields a credential when its ``litellm_params`` carry one:

* ``aws_web_identity_token`` + ``aws_role_name`` + ``aws_session_name`` (each falling back to env
  ``AWS_WEB_IDENTITY_TOKEN`` / ``AWS_ROLE_NAME`` / ``AWS_SESSION_NAME``; the env fallbacks alone
  apply to ``bedrock/`` models) → STS web identity → ``NAME.aws_credentials``;
* ``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``) → static
  ``NAME.aws_credentials``;
* ``azure_ad_token: oidc/…`` → Entra client assertion → ``NAME.sds.yaml`` with ``Bearer <token>``
  (any other ``azure_ad_token`` is a static bearer token);
* ``vertex_credentials`` holding an ``external_account`` document → Google STS (and IAM
  Credentials) → ``NAME.sds.yaml`` with ``Bearer <token>``;
* ``api_key`` (usually ``os.environ/NAME``) → ``NAME.sds.yaml`` with the raw key.

Every problem is collected and reported at once, each under its key path
(``model_list[3].litellm_params.aws_role_name: …``). Our own settings are read from
``extauthz.mint`` only; the rest of the file belongs to other readers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from extauthz.config.envref import is_env_ref, resolve_env_refs
from extauthz.config.yamlfile import read_yaml
from extauthz.errors import ConfigError
from extauthz.mint.aws import sts_endpoint_for_region
from extauthz.mint.azure import DEFAULT_AUTHORITY_HOST, DEFAULT_SCOPE
from extauthz.mint.google import ExternalAccount, parse_external_account
from extauthz.mint.redact import Secret
from extauthz.mint.sinks import AWS_SUFFIX, SDS_SUFFIX, safe_name
from extauthz.mint.sources import (
    OidcRef,
    is_oidc_ref,
    parse_oidc_ref,
    plausible_path,
    ref_problems,
)

# The shape of a role ARN only: STS is the authority on which partitions, accounts and roles exist.
_ROLE_ARN = re.compile(r"^arn:[a-z][a-z0-9-]*:iam::(?P<account>[^:/\s]+):role/[\w+=,.@/-]{1,512}$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$")
_WEB_IDENTITY_KEYS = ("aws_web_identity_token", "aws_role_name", "aws_session_name")
_SDS_KEYS = ("azure_ad_token", "api_key", "vertex_credentials")  # each writes NAME.sds.yaml
MAX_CREDENTIALS_FILE_BYTES = 1 << 20
_WEB_IDENTITY_ENV = {
    "aws_web_identity_token": "AWS_WEB_IDENTITY_TOKEN",
    "aws_role_name": "AWS_ROLE_NAME",
    "aws_session_name": "AWS_SESSION_NAME",
}
SETTINGS_KEYS = ("ca_file", "timeout_seconds")
MAX_TIMEOUT_SECONDS = 300.0
DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class MintSettings:
    """``extauthz.mint``: our own knobs. ``timeout_seconds`` bounds each HTTP call."""

    ca_file: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS


class _File:
    """A credential written to ``NAME`` + ``suffix``."""

    __slots__ = ()
    name: str
    suffix: ClassVar[str]

    @property
    def filename(self) -> str:
        """The file this credential lives in."""
        return self.name + self.suffix


class _AwsFile(_File):
    __slots__ = ()
    suffix = AWS_SUFFIX


class _SdsFile(_File):
    __slots__ = ()
    suffix = SDS_SUFFIX


@dataclass(frozen=True, slots=True)
class AwsWebIdentitySpec(_AwsFile):
    """Bedrock: exchange ``token`` at STS for the role, write ``NAME.aws_credentials``."""

    name: str
    where: str
    token: OidcRef
    role_arn: str
    session_name: str
    sts_endpoint: str
    kind = "aws_web_identity"

    @property
    def source(self) -> str:
        """Where the credential comes from, for /status (never a secret)."""
        return f"{self.token} -> STS {self.role_arn}"


@dataclass(frozen=True, slots=True)
class AwsStaticSpec(_AwsFile):
    """Bedrock with fixed keys: write them once to ``NAME.aws_credentials``."""

    name: str
    where: str
    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None
    kind = "aws_static"

    @property
    def source(self) -> str:
        """Where the credential comes from, for /status (never a secret)."""
        return f"{self.where}.litellm_params.aws_access_key_id"


@dataclass(frozen=True, slots=True)
class AzureEntraSpec(_SdsFile):
    """Azure OpenAI: exchange ``token`` at Entra, write ``Bearer <access token>`` to SDS."""

    name: str
    where: str
    token: OidcRef
    client_id: str
    tenant_id: str
    authority_host: str
    scope: str
    kind = "azure_entra"

    @property
    def source(self) -> str:
        """Where the credential comes from, for /status (never a secret)."""
        return f"{self.token} -> Entra tenant {self.tenant_id} client {self.client_id}"


@dataclass(frozen=True, slots=True)
class StaticSecretSpec(_SdsFile):
    """A fixed secret (``api_key``, or a non-OIDC ``azure_ad_token``) written once to SDS."""

    name: str
    where: str
    value: Secret
    origin: str
    kind = "static"

    @property
    def source(self) -> str:
        """Where the credential comes from, for /status (never a secret)."""
        return self.origin


@dataclass(frozen=True, slots=True)
class GoogleVertexSpec(_SdsFile):
    """Vertex AI: workload identity federation (Google STS, optionally IAM Credentials), written
    as ``Bearer <access token>`` to SDS."""

    name: str
    where: str
    account: ExternalAccount
    project: str | None = None
    location: str | None = None
    kind = "gcp_workload_identity"

    @property
    def source(self) -> str:
        """Where the credential comes from, for /status (never a secret)."""
        project = f" for project {self.project}" if self.project else ""
        return f"{self.account}{project}"


CredentialSpec = (
    AwsWebIdentitySpec | AwsStaticSpec | AzureEntraSpec | GoogleVertexSpec | StaticSecretSpec
)


@dataclass(frozen=True, slots=True)
class MintPlan:
    """Everything the minter will do, decided before any network call."""

    settings: MintSettings
    credentials: tuple[CredentialSpec, ...]
    warnings: tuple[str, ...] = ()


def _https_url(value: str, path: str, problems: list[str]) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        problems.append(f"{path}: {value!r} must be an https:// URL (the OIDC token is sent to it)")
    return value.rstrip("/")


class _Entry:
    """One ``model_list`` item with helpers that resolve and record problems under its path."""

    def __init__(
        self,
        index: int,
        params: Mapping[str, Any],
        environ: Mapping[str, str],
        problems: list[str],
        warnings: list[str],
    ) -> None:
        self.where = f"model_list[{index}]"
        self.params = params
        self.environ = environ
        self.problems = problems
        self.warnings = warnings

    def path(self, key: str) -> str:
        return f"{self.where}.litellm_params.{key}"

    def get(self, key: str, env: str | None = None) -> str | None:
        """The param (``os.environ/`` resolved), else env ``env``; must be a non-empty string."""
        raw = self.params.get(key)
        if raw is None:
            return self.environ.get(env) or None if env else None
        value = resolve_env_refs(raw, self.environ, self.path(key), self.problems)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{self.path(key)}: must be a non-empty string")
            return None
        return value.strip()

    def oidc(self, key: str, value: str) -> OidcRef | None:
        if not is_oidc_ref(value):
            return None
        try:
            ref = parse_oidc_ref(value)
        except ValueError as exc:
            self.problems.append(f"{self.path(key)}: {exc}")
            return None
        self.problems.extend(f"{self.path(key)}: {p}" for p in ref_problems(ref, self.environ))
        return ref


def _aws_web_identity(entry: _Entry, name: str) -> AwsWebIdentitySpec | None:
    values = {k: entry.get(k, _WEB_IDENTITY_ENV[k]) for k in _WEB_IDENTITY_KEYS}
    missing = [k for k, v in values.items() if v is None]
    for key in missing:
        if entry.params.get(key) is None:
            entry.problems.append(
                f"{entry.path(key)}: missing (and {_WEB_IDENTITY_ENV[key]} is not set); the "
                "web-identity exchange needs aws_web_identity_token, aws_role_name and "
                "aws_session_name"
            )
    if missing:
        return None
    token_value, role, session = (values[k] or "" for k in _WEB_IDENTITY_KEYS)
    key = "aws_web_identity_token"
    ref = entry.oidc(key, token_value)
    if ref is None and not is_oidc_ref(token_value):
        entry.problems.append(
            f"{entry.path(key)}: must be an oidc/<provider>/<audience> reference (for a token "
            "in a file write oidc/file/<path>)"
        )
    arn = _ROLE_ARN.match(role)
    if arn is None:
        entry.problems.append(
            f"{entry.path('aws_role_name')}: {role!r} is not a role ARN; write "
            "arn:aws:iam::<account>:role/<name>"
        )
    elif not _ACCOUNT_ID.match(arn["account"]):
        entry.warnings.append(
            f"{entry.path('aws_role_name')}: the account id {arn['account']!r} in {role} is not "
            "12 digits, as AWS account ids are; STS will say whether the role exists"
        )
    if not _SESSION_NAME.match(session):
        entry.problems.append(
            f"{entry.path('aws_session_name')}: {session!r} must be 2-64 characters of "
            "letters, digits and +=,.@_-"
        )
    endpoint = entry.get("aws_sts_endpoint")
    endpoint_path = entry.path("aws_sts_endpoint")
    if endpoint is None and entry.environ.get("AWS_ENDPOINT_URL_STS"):
        endpoint, endpoint_path = entry.environ["AWS_ENDPOINT_URL_STS"], "AWS_ENDPOINT_URL_STS"
    if endpoint is None:
        region = (
            entry.get("aws_region_name")
            or entry.environ.get("AWS_REGION")
            or entry.environ.get("AWS_DEFAULT_REGION")
        )
        endpoint = sts_endpoint_for_region(region)
    endpoint = _https_url(endpoint, endpoint_path, entry.problems)
    if ref is None:
        return None
    return AwsWebIdentitySpec(name, entry.where, ref, role, session, endpoint)


def _aws_static(entry: _Entry, name: str) -> AwsStaticSpec | None:
    key_id = entry.get("aws_access_key_id")
    secret = entry.get("aws_secret_access_key")
    session = entry.get("aws_session_token")
    if key_id is None or secret is None:
        absent = "aws_secret_access_key" if key_id is not None else "aws_access_key_id"
        if entry.params.get(absent) is None:
            entry.problems.append(
                f"{entry.path(absent)}: missing; static AWS keys need both "
                "aws_access_key_id and aws_secret_access_key"
            )
        return None
    return AwsStaticSpec(
        name, entry.where, key_id, Secret(secret), Secret(session) if session else None
    )


def _azure(entry: _Entry, name: str, token_value: str) -> AzureEntraSpec | None:
    ref = entry.oidc("azure_ad_token", token_value)
    client_id = entry.get("client_id", "AZURE_CLIENT_ID")
    tenant_id = entry.get("tenant_id", "AZURE_TENANT_ID")
    for key, env, value in (
        ("client_id", "AZURE_CLIENT_ID", client_id),
        ("tenant_id", "AZURE_TENANT_ID", tenant_id),
    ):
        if value is None and entry.params.get(key) is None:
            entry.problems.append(
                f"{entry.path(key)}: missing (and {env} is not set); the Entra exchange needs "
                "the app's client and tenant IDs"
            )
    if tenant_id is not None and not _TENANT.match(tenant_id):
        entry.problems.append(
            f"{entry.path('tenant_id')}: {tenant_id!r} is not a tenant ID or domain"
        )
    authority = entry.environ.get("AZURE_AUTHORITY_HOST") or DEFAULT_AUTHORITY_HOST
    if "://" not in authority:  # azure-identity accepts a bare host name
        authority = "https://" + authority
    authority = _https_url(authority, "AZURE_AUTHORITY_HOST", entry.problems)
    scope = entry.get("azure_scope") or entry.environ.get("AZURE_SCOPE") or DEFAULT_SCOPE
    if ref is None or client_id is None or tenant_id is None:
        return None
    return AzureEntraSpec(name, entry.where, ref, client_id, tenant_id, authority, scope)


def read_credentials_file(path: str) -> str:
    """A ``vertex_credentials`` file's text (relative paths from the working directory, as in
    LiteLLM); OSError or ValueError with the reason."""
    with open(path, "rb") as f:
        raw = f.read(MAX_CREDENTIALS_FILE_BYTES + 1)
    if len(raw) > MAX_CREDENTIALS_FILE_BYTES:
        raise ValueError(f"larger than {MAX_CREDENTIALS_FILE_BYTES} bytes")
    return raw.decode("utf-8")


def _is_base64_json(value: str) -> bool:
    try:
        decoded = base64.b64decode(value.replace("-", "+").replace("_", "/") + "==", validate=True)
    except ValueError:
        return False
    return decoded.lstrip().startswith(b"{")


def _vertex_document(entry: _Entry, value: object) -> tuple[dict[str, Any] | None, str]:
    """``vertex_credentials`` as LiteLLM reads it: a mapping, a JSON string, or the path of a
    JSON file. Returns the document and, for a file, `` (in PATH)`` for messages."""
    key = entry.path("vertex_credentials")
    origin = ""
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        if _is_base64_json(value):
            entry.problems.append(
                f"{key}: is base64-encoded JSON; give the JSON itself or the path of its file"
            )
            return None, origin
        # A value that is neither JSON nor a plausible path may be a secret: never shown.
        shown = repr(value) if plausible_path(value) else "(not shown)"
        origin = f" (in {shown})"
        try:
            value = read_credentials_file(value)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            entry.problems.append(
                f"{key}: cannot read the credentials file {shown} ({reason}); a relative "
                "path is from the working directory"
            )
            return None, origin
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            entry.problems.append(f"{key}: not valid JSON{origin} ({exc})")
            return None, origin
    if not isinstance(value, dict):
        entry.problems.append(
            f"{key}: must be an external_account document (a mapping, JSON text or the path of "
            "a JSON file)"
        )
        return None, origin
    return value, origin


def _vertex(entry: _Entry, name: str) -> GoogleVertexSpec | None:
    key = "vertex_credentials"
    value = resolve_env_refs(entry.params[key], entry.environ, entry.path(key), entry.problems)
    if value is None:
        return None
    doc, origin = _vertex_document(entry, value)
    if doc is None:
        return None
    found: list[str] = []
    account = parse_external_account(doc, entry.path(key), entry.environ, found)
    entry.problems.extend(p + origin for p in found)
    project, location = entry.get("vertex_project"), entry.get("vertex_location")
    if account is None or found:
        return None
    return GoogleVertexSpec(name, entry.where, account, project, location)


def _entry_specs(entry: _Entry, name: str) -> list[CredentialSpec]:
    params, environ = entry.params, entry.environ
    specs: list[CredentialSpec | None] = []
    web_identity = any(params.get(k) is not None for k in _WEB_IDENTITY_KEYS)
    static_aws = any(
        params.get(k) is not None for k in ("aws_access_key_id", "aws_secret_access_key")
    )
    if (
        not web_identity
        and not static_aws
        and str(params.get("model", "")).startswith("bedrock/")
        and all(environ.get(v) for v in _WEB_IDENTITY_ENV.values())
    ):
        web_identity = True
    if web_identity and static_aws:
        entry.problems.append(
            f"{entry.path('aws_access_key_id')}: set either static AWS keys or "
            "aws_web_identity_token/aws_role_name/aws_session_name, not both"
        )
    elif web_identity:
        specs.append(_aws_web_identity(entry, name))
    elif static_aws:
        specs.append(_aws_static(entry, name))

    ad_token = params.get("azure_ad_token")
    api_key = params.get("api_key")
    bearer_keys = [k for k in _SDS_KEYS if params.get(k) is not None]
    if len(bearer_keys) > 1:
        entry.problems.append(
            f"{entry.path(bearer_keys[1])}: set only one of {' or '.join(bearer_keys)} (each "
            f"would be written to {name}{SDS_SUFFIX})"
        )
    elif params.get("vertex_credentials") is not None:
        specs.append(_vertex(entry, name))
    elif ad_token is not None:
        value = entry.get("azure_ad_token")
        if value is not None and is_oidc_ref(value):
            specs.append(_azure(entry, name, value))
        elif value is not None:
            origin = ad_token if is_env_ref(ad_token) else entry.path("azure_ad_token")
            specs.append(StaticSecretSpec(name, entry.where, Secret(f"Bearer {value}"), origin))
    elif api_key is not None:
        value = entry.get("api_key")
        if value is not None and is_oidc_ref(value):
            entry.problems.append(
                f"{entry.path('api_key')}: an oidc/ reference is not an API key; use "
                "azure_ad_token (Azure) or aws_web_identity_token (Bedrock)"
            )
        elif value is not None:
            origin = api_key if is_env_ref(api_key) else entry.path("api_key")
            specs.append(StaticSecretSpec(name, entry.where, Secret(value), origin))
    return [s for s in specs if s is not None]


def _settings(
    config: Mapping[str, Any], environ: Mapping[str, str], problems: list[str]
) -> MintSettings:
    section = config.get("extauthz")
    if section is None:
        return MintSettings()
    if not isinstance(section, dict):
        problems.append("extauthz: must be a mapping")
        return MintSettings()
    mint = section.get("mint")
    if mint is None:
        return MintSettings()
    if not isinstance(mint, dict):
        problems.append("extauthz.mint: must be a mapping")
        return MintSettings()
    for key in mint:
        if key not in SETTINGS_KEYS:
            problems.append(
                f"extauthz.mint.{key}: unknown setting; known ones are {', '.join(SETTINGS_KEYS)}"
            )
    mint = resolve_env_refs(mint, environ, "extauthz.mint", problems)
    ca_file = mint.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        problems.append("extauthz.mint.ca_file: must be a path to a PEM file")
        ca_file = None
    timeout: Any = mint.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, str):
        with contextlib.suppress(ValueError):
            timeout = float(timeout)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_SECONDS
    ):
        problems.append(
            f"extauthz.mint.timeout_seconds: must be a number of seconds in (0, "
            f"{MAX_TIMEOUT_SECONDS:g}], not {timeout!r}"
        )
        timeout = DEFAULT_TIMEOUT_SECONDS
    return MintSettings(ca_file=ca_file, timeout_seconds=float(timeout))


def _model_list(config: Mapping[str, Any], warnings: list[str]) -> Any:
    """``model_list``; else a top-level key spelt with a space or hyphen (seed 003's Azure AD →
    Bedrock example says ``model list:``), read with a warning, since LiteLLM and
    ``extauthz serve`` read only ``model_list``."""
    if "model_list" in config:
        found = config["model_list"]
        look_alikes = [k for k in config if k != "model_list" and _is_model_list_spelling(k)]
        warnings.extend(
            f"{key!r}: ignored; this file also has model_list, which is the one read"
            for key in look_alikes
        )
        return [] if found is None else found
    for key, value in config.items():
        if _is_model_list_spelling(key):
            warnings.append(
                f"{key!r}: read as model_list; LiteLLM and extauthz serve read only "
                "model_list, so rename the key"
            )
            return [] if value is None else value
    return []


def _is_model_list_spelling(key: object) -> bool:
    return isinstance(key, str) and re.sub(r"[\s-]+", "_", key.strip()).lower() == "model_list"


def plan_from_config(
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    source: str = "config",
) -> MintPlan:
    """The credentials to mint; raise ConfigError listing every problem, each with its path."""
    problems: list[str] = []
    warnings: list[str] = []
    settings = _settings(config, environ, problems)
    model_list = _model_list(config, warnings)
    if not isinstance(model_list, list):
        problems.append("model_list: must be a list of {model_name, litellm_params} entries")
        model_list = []
    specs: list[CredentialSpec] = []
    owners: dict[str, str] = {}
    for index, item in enumerate(model_list):
        where = f"model_list[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a mapping with model_name and litellm_params")
            continue
        model_name = item.get("model_name")
        params = item.get("litellm_params")
        if params is None:
            continue
        if not isinstance(params, dict):
            problems.append(f"{where}.litellm_params: must be a mapping")
            continue
        entry = _Entry(index, params, environ, problems, warnings)
        named = isinstance(model_name, str) and bool(model_name)
        before = len(problems)
        found = _entry_specs(entry, safe_name(str(model_name)) if named else "_")
        if not named:
            if found or len(problems) > before:
                problems.append(
                    f"{where}.model_name: missing; it names the credential files for this entry"
                )
            continue
        for spec in found:
            other = owners.get(spec.filename)
            if other is not None:
                problems.append(
                    f"{where}.model_name: {model_name!r} writes {spec.filename}, as {other} "
                    "does; give the entries distinct model_name values"
                )
                continue
            owners[spec.filename] = where
            specs.append(spec)
    if not problems and not specs:
        problems.append(
            "model_list: no entry has a credential to mint (aws_web_identity_token, "
            "aws_access_key_id, azure_ad_token, vertex_credentials or api_key in litellm_params)"
        )
    if problems:
        raise ConfigError(problems, source)
    return MintPlan(settings=settings, credentials=tuple(specs), warnings=tuple(warnings))


def load_plan(path: str | Path, environ: Mapping[str, str]) -> MintPlan:
    """Read a LiteLLM config file and plan it; raises ConfigError naming the file."""
    return plan_from_config(read_yaml(path), environ, str(path))

"""AWS STS ``AssumeRoleWithWebIdentity`` over the Query API, as LiteLLM's Bedrock path calls it.

The call is unsigned (the web identity token is the credential), sent as a form POST to the
configured endpoint. Answers are XML, parsed with the standard library after a size cap and a
refusal of any DTD, so a hostile or broken endpoint cannot expand entities.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from extauthz.mint.errors import ExchangeError
from extauthz.mint.redact import Secret, describe_token, scrub
from extauthz.mint.transport import HttpClient

STS_VERSION = "2011-06-15"
DEFAULT_DURATION_SECONDS = 3600
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_SECRET_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable, no whitespace: safe in an INI line
_TRUST_HINT = (
    "; the role's trust policy must name an IAM OIDC identity provider for this iss and allow "
    "this aud (and sub)"
)
_HINTS = {
    "InvalidIdentityToken": _TRUST_HINT,
    "IDPRejectedClaim": _TRUST_HINT,
    "AccessDenied": _TRUST_HINT,
    "ExpiredTokenException": "; the OIDC token had expired when STS saw it (check clocks)",
}


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Temporary (or static) AWS credentials; ``expires_at`` is a POSIX time or None."""

    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None
    expires_at: float | None
    assumed_role_arn: str = ""


def sts_endpoint_for_region(region: str | None) -> str:
    """The regional STS endpoint (the global one without a region), as the AWS SDKs build it."""
    if not region:
        return "https://sts.amazonaws.com"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sts.{region}.{suffix}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(body: bytes) -> ET.Element | None:
    """Parse a small XML document with no DTD; None when it is not one."""
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in body.lower():
        return None
    try:
        return ET.fromstring(body)  # noqa: S314 - size-capped by HttpClient, DTDs refused above
    except ET.ParseError:
        return None


def _child(parent: ET.Element | None, name: str) -> ET.Element | None:
    if parent is None:
        return None
    for child in parent:
        if _local(child.tag) == name:
            return child
    return None


def _text(parent: ET.Element | None, name: str) -> str:
    node = _child(parent, name)
    return (node.text or "").strip() if node is not None else ""


def parse_sts_error(body: bytes) -> tuple[str, str, str]:
    """``(Code, Message, RequestId)`` from an STS ``ErrorResponse``; empty strings if absent."""
    root = _parse_xml(body)
    if root is None or _local(root.tag) != "ErrorResponse":
        return ("", "", "")
    error = _child(root, "Error")
    return (_text(error, "Code"), _text(error, "Message"), _text(root, "RequestId"))


def parse_assume_role_response(body: bytes) -> AwsCredentials:
    """Credentials from an ``AssumeRoleWithWebIdentityResponse``; ExchangeError if malformed."""
    root = _parse_xml(body)
    if root is None or _local(root.tag) != "AssumeRoleWithWebIdentityResponse":
        raise ExchangeError("STS answered 200 without an AssumeRoleWithWebIdentityResponse")
    result = _child(root, "AssumeRoleWithWebIdentityResult")
    creds = _child(result, "Credentials")
    key_id = _text(creds, "AccessKeyId")
    secret = _text(creds, "SecretAccessKey")
    session = _text(creds, "SessionToken")
    expiration = _text(creds, "Expiration")
    if not (key_id and secret and session and expiration):
        raise ExchangeError(
            "STS answered without AccessKeyId, SecretAccessKey, SessionToken and Expiration"
        )
    if not _ACCESS_KEY_ID.match(key_id) or not (
        _SECRET_CHARS.match(secret) and _SECRET_CHARS.match(session)
    ):
        raise ExchangeError("STS answered credentials with unexpected characters")
    try:
        expires = datetime.fromisoformat(expiration)
    except ValueError:
        raise ExchangeError(f"STS answered an unreadable Expiration {expiration[:40]!r}") from None
    if expires.tzinfo is None:
        raise ExchangeError(f"STS answered an Expiration without a time zone {expiration!r}")
    return AwsCredentials(
        access_key_id=key_id,
        secret_access_key=Secret(secret),
        session_token=Secret(session),
        expires_at=expires.timestamp(),
        assumed_role_arn=_text(_child(result, "AssumedRoleUser"), "Arn"),
    )


async def assume_role_with_web_identity(
    http: HttpClient,
    *,
    endpoint: str,
    role_arn: str,
    session_name: str,
    web_identity_token: str,
    duration_seconds: int = DEFAULT_DURATION_SECONDS,
) -> AwsCredentials:
    """Exchange an OIDC token for temporary credentials.

    Raises ExchangeError for a refusal (its message has STS's code and message and the token's
    unverified aud/iss/sub, never the token) and TransportError when STS cannot be reached.
    """
    what = f"STS at {endpoint}"
    resp = await http.request(
        "POST",
        endpoint,
        what=what,
        headers={"Accept": "text/xml"},
        form={
            "Action": "AssumeRoleWithWebIdentity",
            "Version": STS_VERSION,
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "WebIdentityToken": web_identity_token,
            "DurationSeconds": str(duration_seconds),
        },
    )
    if resp.status == 200:
        return parse_assume_role_response(resp.body)
    code, message, request_id = parse_sts_error(resp.body)
    if not code:
        raise ExchangeError(f"{what} answered HTTP {resp.status} without an STS error document")
    detail = scrub(message, [web_identity_token])
    rid = f", RequestId {request_id}" if request_id else ""
    raise ExchangeError(
        f"{what} refused AssumeRoleWithWebIdentity for {role_arn} (HTTP {resp.status} {code}: "
        f"{detail}{rid}); {describe_token(web_identity_token)}{_HINTS.get(code, '')}",
        code=code,
    )

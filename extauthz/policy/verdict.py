"""A decision rendered for an HTTP hop: headers to set and remove, status, body, metadata.

Shared by every Envoy adapter (gRPC and HTTP mode) so they answer byte-for-byte alike.
The deny body shape is a client contract: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from extauthz.policy.compiled import Policy
from extauthz.policy.credentials import CREDENTIAL_HEADERS
from extauthz.policy.decide import PASSTHROUGH
from extauthz.policy.types import Allow, Decision, Deny, Reason

REASON_HEADER = "x-extauthz-reason"
ERROR_TYPE = "auth_error"


class Verdict(NamedTuple):
    """What an adapter sends back to Envoy, free of protocol types.

    A NamedTuple: one is made for every new caller's first answer and every deny, and a frozen
    dataclass's ``__init__`` costs several times more. ``metadata`` is read, never changed.
    """

    allowed: bool
    status: int
    reason: Reason
    headers: tuple[tuple[str, str], ...] = ()  # allow: upstream headers; deny: client headers
    remove: tuple[str, ...] = ()  # allow only: upstream headers to drop
    metadata: Mapping[str, str] = MappingProxyType({})
    body: str = ""


def deny_body(status: int, message: str) -> str:
    """The OpenAI-style error body every deny carries."""
    return json.dumps({"error": {"message": message, "type": ERROR_TYPE, "code": str(status)}})


def render(decision: Decision, policy: Policy) -> Verdict:
    """Turn a decision into headers, status, body and metadata."""
    if isinstance(decision, Deny):
        headers = [("content-type", "application/json"), (REASON_HEADER, decision.reason.value)]
        if decision.status == 401:
            headers.append(("www-authenticate", 'Bearer error="invalid_token"'))
        headers.extend(decision.extra_headers)
        metadata = {"decision": "deny", "reason": decision.reason.value}
        if decision.identity is not None:
            metadata.update(
                _identity_metadata(decision.identity.user_id, decision.identity.team_id)
            )
        return Verdict(
            allowed=False,
            status=decision.status,
            reason=decision.reason,
            headers=tuple(headers),
            metadata=metadata,
            body=deny_body(decision.status, decision.message),
        )
    return _render_allow(decision, policy)


def _identity_metadata(user_id: str | None, team_id: str | None) -> dict[str, str]:
    out = {}
    if user_id is not None:
        out["user_id"] = user_id
    if team_id is not None:
        out["team_id"] = team_id
    return out


def _render_allow(allow: Allow, policy: Policy) -> Verdict:
    ident = allow.identity
    names = policy.headers
    values = (
        (names.user_id, "user_id", ident.user_id),
        (names.team_id, "team_id", ident.team_id),
        (names.org_id, "org_id", ident.org_id),
        (names.end_user_id, "end_user_id", ident.end_user_id),
        (names.user_role, "role", allow.role.value if allow.role else None),
        (names.user_email, None, ident.email),
    )
    headers: list[tuple[str, str]] = []
    remove: list[str] = []
    metadata: dict[str, str] = {"decision": "allow"}
    for header, meta_key, value in values:
        if value is None:
            remove.append(header)  # never pass a client-sent copy through
        else:
            headers.append((header, value))
            if meta_key is not None:
                metadata[meta_key] = value
    if allow.model is not None:
        metadata["model"] = allow.model
    if (
        policy.remove_credential_headers
        and ident.kind != PASSTHROUGH
        and not allow.keep_credentials
    ):
        remove.extend(CREDENTIAL_HEADERS)
    return Verdict(
        allowed=True,
        status=200,
        reason=allow.reason,
        headers=tuple(headers),
        remove=tuple(remove),
        metadata=metadata,
    )

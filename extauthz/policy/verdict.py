"""A decision rendered for an HTTP hop: headers to set and remove, status, body, metadata.

Shared by every Envoy adapter (gRPC and HTTP mode) so they answer byte-for-byte alike.
The deny body shape is a client contract: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

from extauthz.model import (
    PASSTHROUGH,
    Allow,
    Decision,
    Deny,
    Role,
    Verdict,
    deny_verdict,
)
from extauthz.policy.compiled import Policy


def credential_headers(policy: Policy) -> tuple[str, ...]:
    """Every header a credential may come in: LiteLLM's, and ``litellm_key_header_name``
    (derived once per policy, ``Gate.credential_headers``)."""
    return policy.gate.credential_headers


_ROLE_NAMES = {role: role.value for role in Role}  # ``Enum.value`` is a Python-level property


def render(decision: Decision, policy: Policy) -> Verdict:
    """Turn a decision into headers, status, body and metadata."""
    if isinstance(decision, Deny):
        return deny_verdict(decision)
    return _render_allow(decision, policy)


def _render_allow(allow: Allow, policy: Policy) -> Verdict:
    ident = allow.identity
    names = policy.headers
    values = (
        (names.user_id, "user_id", ident.user_id),
        (names.team_id, "team_id", ident.team_id),
        (names.org_id, "org_id", ident.org_id),
        (names.end_user_id, "end_user_id", ident.end_user_id),
        (names.user_role, "role", _ROLE_NAMES[allow.role] if allow.role else None),
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
    if allow.team_source is not None:
        metadata["team_source"] = allow.team_source
    if (
        policy.remove_credential_headers
        and ident.kind != PASSTHROUGH
        and not allow.keep_credentials
    ):
        remove.extend(credential_headers(policy))
    # by position (allowed, status, reason, headers, remove, metadata): one per new caller
    return Verdict(True, 200, allow.reason, tuple(headers), tuple(remove), metadata)

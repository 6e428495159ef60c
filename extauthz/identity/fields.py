"""From verified claims to the caller's ``Identity``: which claims carry which attribute.

The ``*_jwt_field`` settings name the claims; the rules are LiteLLM's (the user id falls back to
the email, a missing team takes ``team_id_default``), ids have one canonical form
(``claims.canonical_id``), and the email gate's reading of the address is made here, once per
token, because identities are cached with the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from extauthz.identity.claims import (
    ClaimValueError,
    canonical_id,
    plain_id,
    read_claim,
    scopes_of,
    string_claim,
    string_set_claim,
)
from extauthz.identity.emails import EmailCheck, check_email
from extauthz.identity.roles import RoleRules, read_role_claims
from extauthz.model import JWT, Deny, Identity, Reason


@dataclass(frozen=True, slots=True)
class ClaimField:
    """A configured claim name and its parsed path (see ``identity.claims``)."""

    name: str
    path: tuple[str, ...]
    # An ``issuers`` entry's field falls back to the global one when its claim is absent or
    # empty (LiteLLM's ``_apply_issuer_claim_mappings``).
    fallback: ClaimField | None = None


@dataclass(frozen=True, slots=True)
class ClaimFields:
    """Which claims carry which identity attribute (``*_jwt_field`` settings)."""

    user_id: ClaimField | None = None
    team_id: ClaimField | None = None
    team_ids: ClaimField | None = None
    team_alias: ClaimField | None = None
    org_id: ClaimField | None = None
    end_user_id: ClaimField | None = None
    email: ClaimField | None = None
    roles: ClaimField | None = None


class ClaimRules(Protocol):
    """What reading an identity needs of the policy (``Policy`` has these attributes)."""

    @property
    def fields(self) -> ClaimFields: ...

    @property
    def team_id_default(self) -> str | None: ...

    @property
    def email_domains(self) -> frozenset[str] | None: ...

    @property
    def role_rules(self) -> RoleRules: ...


NO_EMAIL_CHECK = EmailCheck(None)  # no email gate: the address is an attribute, not judged


def _claim(claims: Mapping[str, Any], f: ClaimField | None) -> str | None:
    if f is None:
        return None
    if f.fallback is not None and read_claim(claims, f.name, f.path) in (None, ""):
        f = f.fallback
    value = claims.get(f.name)  # ``read_claim``'s first look
    if isinstance(value, str) and plain_id(value):
        return value  # the common case: two calls fewer per claim
    return string_claim(claims, f.name, f.path)


MAX_TEAMS_PER_TOKEN = 256


def team_list_claim(claims: Mapping[str, Any], f: ClaimField | None) -> tuple[str, ...]:
    """``team_ids_jwt_field``: the token's teams in claim order, each id in canonical form. A
    string is one team (LiteLLM would iterate its characters); ``ClaimValueError`` for an
    entry that is no id or a list longer than ``MAX_TEAMS_PER_TOKEN``."""
    if f is None:
        return ()
    value = read_claim(claims, f.name, f.path)
    if f.fallback is not None and value in (None, ""):
        f = f.fallback  # an ``issuers`` entry's own field, absent: the global one
        value = read_claim(claims, f.name, f.path)
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if len(values) > MAX_TEAMS_PER_TOKEN:
        raise ClaimValueError(f"claim {f.name!r} holds more than {MAX_TEAMS_PER_TOKEN} teams")
    ids = (canonical_id(v, f"claim {f.name!r}") for v in values)
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def identity_from_claims(claims: Mapping[str, Any], policy: ClaimRules) -> Identity | Deny:
    """Read the identity attributes the policy names; 401 if a claim cannot be carried safely."""
    fields = policy.fields
    try:
        email = _claim(claims, fields.email)
        claimed_user_id = _claim(claims, fields.user_id)
        user_id = claimed_user_id or email  # LiteLLM falls back to the email (attribution only)
        claimed_team = _claim(claims, fields.team_id)
        team_id = claimed_team or policy.team_id_default
        team_ids = team_list_claim(claims, fields.team_ids)
        team_alias = _claim(claims, fields.team_alias)
        org_id = _claim(claims, fields.org_id)
        end_user_id = _claim(claims, fields.end_user_id)
    except ClaimValueError as exc:
        return Deny(401, Reason.MALFORMED_TOKEN, f"{exc}; such a value cannot be forwarded")
    roles = (
        frozenset()
        if fields.roles is None
        else string_set_claim(claims, fields.roles.name, fields.roles.path)
    )
    sub = claims.get("sub")
    # The email gate's address parse happens here, once per token: identities are cached.
    email_check = NO_EMAIL_CHECK if policy.email_domains is None else check_email(claims, email)
    # Positional, in ``Identity``'s field order (pinned by test_cold_fastpaths): one
    # is built per new token, and 23 keywords cost ~10k instructions more than positions.
    return Identity(
        JWT,  # kind
        user_id,
        team_id,
        org_id,
        end_user_id,
        email,
        scopes_of(claims),  # scopes
        roles,
        sub if isinstance(sub, str) else None,  # subject
        email_check.domain,  # email_domain
        email_check.problem,  # email_problem
        claimed_user_id is None and email is not None,  # user_id_from_email
        team_ids,
        team_alias,
        claimed_team is None and team_id is not None,  # team_id_defaulted
        None,  # issuer: set by the verifier for an ``issuers`` entry
        False,  # userinfo
        *read_role_claims(claims, policy.role_rules),  # RoleClaims: mapped_role … synced_from
    )

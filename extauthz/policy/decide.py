"""The decision function: who the caller is and what they ask for, against the policy.

Pure and synchronous, in two steps: ``admit`` (everything but the body, reusable per caller
and path) and ``judge_body``. Order of checks (each a deny with its own reason and status):
role (403) → blocked team / end user (403) → email domain (403) → route (403) →
readable model (400) → cut body when the model matters (413) → model allowed (403).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extauthz.identity.claims import ClaimValueError, scopes_of, string_claim, string_set_claim
from extauthz.policy.compiled import ClaimField, ModelRule, Policy
from extauthz.policy.credentials import ADMIN_API_PATHS, routes_to_admin_api
from extauthz.policy.models import read_models
from extauthz.policy.types import Allow, Decision, Deny, Identity, Reason, RequestView, Role
from extauthz.state.protocol import StateSnapshot

MASTER_KEY = "master_key"
PASSTHROUGH = "passthrough"
JWT = "jwt"


def _claim(claims: Mapping[str, Any], f: ClaimField | None) -> str | None:
    return None if f is None else string_claim(claims, f.name, f.path)


def identity_from_claims(claims: Mapping[str, Any], policy: Policy) -> Identity | Deny:
    """Read the identity attributes the policy names; 401 if a claim cannot be carried safely."""
    fields = policy.fields
    try:
        email = _claim(claims, fields.email)
        user_id = _claim(claims, fields.user_id) or email  # LiteLLM falls back to the email
        team_id = _claim(claims, fields.team_id) or policy.team_id_default
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
    return Identity(
        kind=JWT,
        user_id=user_id,
        team_id=team_id,
        org_id=org_id,
        end_user_id=end_user_id,
        email=email,
        scopes=scopes_of(claims),
        roles=roles,
        subject=sub if isinstance(sub, str) else None,
    )


def resolve_role(identity: Identity, policy: Policy) -> Role | None:
    """LiteLLM's role order: admin scope, then team id, then user role (or user id)."""
    if identity.kind == MASTER_KEY:
        return Role.PROXY_ADMIN
    if policy.admin_scope in identity.scopes:
        return Role.PROXY_ADMIN
    if identity.team_id is not None:
        return Role.TEAM
    if policy.user_allowed_roles is not None:
        # Deliberate difference: with an allow-list, a user id alone is not enough.
        return Role.INTERNAL_USER if identity.roles & policy.user_allowed_roles else None
    if identity.user_id is not None:
        return Role.INTERNAL_USER
    return None


def _no_role_message(policy: Policy) -> str:
    f = policy.fields
    parts = [f"no admin scope {policy.admin_scope!r}"]
    parts.append(f"no team id in claim {f.team_id.name!r}" if f.team_id else "team detection off")
    if policy.user_allowed_roles is not None and f.roles is not None:
        parts.append(
            f"no role from {', '.join(sorted(policy.user_allowed_roles))} in claim {f.roles.name!r}"
        )
    elif f.user_id is not None:
        parts.append(f"no user id in claim {f.user_id.name!r}")
    else:
        parts.append("no user_id_jwt_field configured")
    return "the token maps to no role (" + "; ".join(parts) + ")"


def email_allowed(email: str | None, domains: frozenset[str]) -> bool:
    """The email-domain gate: the text after the last ``@``, case-insensitive, exact domain."""
    if email is None or "@" not in email:
        return False
    return email.rpartition("@")[2].lower() in domains


@dataclass(frozen=True, slots=True)
class Admission:
    """A caller let onto a route, before the body is read.

    A function of (identity, path, policy, state) only, so the authorizer can reuse it for the
    same caller and path until the policy or the state snapshot changes.
    """

    identity: Identity
    role: Role | None
    rule: ModelRule | None  # the role's model allow-list; None: any model
    read_body: bool = True  # False for passthrough keys: the body is not ours to judge
    admin_api: bool = False  # the (decoded) path is one of the sidecar's admin API paths


def admit(path: str, identity: Identity, policy: Policy, state: StateSnapshot) -> Admission | Deny:
    """Everything decided without the body: role, blocks, email domain, route."""
    if identity.kind == PASSTHROUGH:
        return Admission(identity, None, None, read_body=False)
    role = resolve_role(identity, policy)
    if role is None:
        return Deny(403, Reason.NO_ROLE, _no_role_message(policy), identity)
    if identity.team_id is not None and identity.team_id in state.blocked_teams:
        return Deny(
            403,
            Reason.TEAM_BLOCKED,
            f"team {identity.team_id!r} is blocked; an admin can lift it with POST /team/unblock",
            identity,
            role,
        )
    if identity.end_user_id is not None and identity.end_user_id in state.blocked_end_users:
        return Deny(
            403,
            Reason.END_USER_BLOCKED,
            f"end user {identity.end_user_id!r} is blocked; an admin can lift it with "
            "POST /customer/unblock",
            identity,
            role,
        )
    if (
        role is not Role.PROXY_ADMIN
        and policy.email_domains is not None
        and not email_allowed(identity.email, policy.email_domains)
    ):
        shown = identity.email or "none"
        return Deny(
            403,
            Reason.EMAIL_DOMAIN_NOT_ALLOWED,
            f"email domain not allowed (email: {shown}); allowed: "
            + ", ".join(sorted(policy.email_domains)),
            identity,
            role,
        )
    if identity.kind != MASTER_KEY:
        routes = policy.role_routes.get(role)
        narrowed = policy.role_permission_routes.get(role)
        if (
            routes is None
            or not routes.matches(path)
            or (narrowed is not None and not narrowed.matches(path))
        ):
            return Deny(
                403,
                Reason.ROUTE_NOT_ALLOWED,
                f"role {role.value} may not call {path[:200]}; see {_route_setting(role)} "
                "and general_settings.role_permissions",
                identity,
                role,
            )
    rule = None if identity.kind == MASTER_KEY else policy.role_models.get(role)
    return Admission(identity, role, rule, admin_api=path in ADMIN_API_PATHS)


def judge_body(admission: Admission, request: RequestView, path: str, query: str) -> Decision:
    """The body's part: a readable model (400), not cut when it matters (413), allowed (403)."""
    identity, role, rule = admission.identity, admission.role, admission.rule
    if not admission.read_body:
        return Allow(identity, role)
    read = read_models(
        path,
        query,
        request.method,
        request.headers.get("content-type"),
        request.body,
        request.body_cut,
    )
    if read.error is not None:
        return Deny(400, Reason.BAD_BODY, read.error, identity, role)
    if rule is not None:
        if read.cut:
            return Deny(
                413,
                Reason.BODY_CUT,
                "the request body is larger than the authorization buffer, so its model cannot "
                "be checked; send a smaller body or raise with_request_body.max_request_bytes "
                "in Envoy's ext_authz filter",
                identity,
                role,
            )
        for model in read.models:
            if not rule.allows(model):
                return Deny(
                    403,
                    Reason.MODEL_NOT_ALLOWED,
                    f"role {role.value if role else None} may not use model {model!r}; "
                    "allowed: " + (", ".join(rule.entries) or "(none)"),
                    identity,
                    role,
                )
    return Allow(
        identity,
        role,
        read.models[0] if read.models else None,
        # Kept only for a target Envoy routes to the admin API as sent (the decoded path
        # naming it is not enough: Envoy routes an escaped spelling to the upstream).
        keep_credentials=admission.admin_api and routes_to_admin_api(request.path),
    )


def decide(
    request: RequestView,
    path: str,
    query: str,
    identity: Identity,
    policy: Policy,
    state: StateSnapshot,
) -> Decision:
    """Decide one request whose path was validated and whose caller was authenticated."""
    admitted = admit(path, identity, policy, state)
    if isinstance(admitted, Deny):
        return admitted
    return judge_body(admitted, request, path, query)


def _route_setting(role: Role) -> str:
    return {
        Role.PROXY_ADMIN: "general_settings.litellm_jwtauth.admin_allowed_routes",
        Role.TEAM: "general_settings.litellm_jwtauth.team_allowed_routes",
        Role.INTERNAL_USER: "extauthz.internal_user_allowed_routes",
    }[role]

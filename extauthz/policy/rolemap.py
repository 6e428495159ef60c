"""Where the role settings act in ``decide.admit``, as LiteLLM's ``authorize_jwt`` acts.

The mappings are read with the identity (``identity.roles``); what they do to the decision is
here, so ``decide`` stays a list of checks:
- a ``role_mappings`` proxy_admin acts as an internal_user (``acting_role``);
- the object id replaces the team id of a ``team`` caller and the user id of an
  ``internal_user`` (LiteLLM: ``if rbac_role and object_id``);
- ``jwt_litellm_role_map`` → ``proxy_admin`` under ``sync_user_role_and_teams`` promotes a caller
  LiteLLM has a user row for (one with a user id): LiteLLM syncs the row's role and then treats
  the request as a proxy admin's, with no route check; the role's ``role_permissions`` (checked
  before, in ``check_rbac_role``) still apply;
- ``scope_mappings`` grant models (and routes) to every JWT caller, admins included.
"""

from __future__ import annotations

from extauthz.model import JWT, Identity, Role
from extauthz.policy.compiled import Policy
from extauthz.policy.scopes import ScopeGrant


def with_object_id(identity: Identity, role: Role) -> Identity:
    """The object id becomes the team id (team) or the user id (internal_user)."""
    if identity.object_id is None:
        return identity
    if role is Role.TEAM:
        return identity._replace(team_id=identity.object_id)
    if role is Role.INTERNAL_USER:
        return identity._replace(user_id=identity.object_id, user_id_from_email=False)
    return identity


def header_teams(
    claimed: Identity, named: Identity, blocked: frozenset[str]
) -> tuple[str, ...] | None:
    """The teams ``x-litellm-team-id`` may name when the object id replaced the team: LiteLLM
    allows the team claim (``team_id_jwt_field``), not the object id, and then uses the header's
    team. None: no replacement, the header may name only the token's team. A blocked team may
    not be named."""
    if claimed.team_id == named.team_id:
        return None
    team = claimed.team_id
    return () if team is None or team in blocked else (team,)


def acting_role(identity: Identity, rbac_role: Role, admin_scope: str) -> Role:
    """The role a caller acts as: ``role_mappings`` → proxy_admin makes no admin in LiteLLM
    (its admin check reads only ``admin_jwt_scope``); such a caller goes on as an
    internal_user without an id (the object id is not applied to it), as it does there, held to
    the internal_user's routes and to proxy_admin's ``role_permissions`` (``check_rbac_role``)."""
    mapped_admin = identity.kind == JWT and admin_scope not in identity.scopes
    if rbac_role is Role.PROXY_ADMIN and mapped_admin:
        return Role.INTERNAL_USER
    return rbac_role


UNNAMED = (
    "no user or team id in the token and general_settings.enforce_rbac is true (LiteLLM: \"No "
    "user or team id found in token\"); set object_id_jwt_field, user_id_jwt_field or "
    "team_id_jwt_field so callers are named"
)


def unnamed(identity: Identity, role: Role) -> bool:
    """A non-admin with neither a user nor a team id: refused under general_settings'
    enforce_rbac (LiteLLM's validate_object_id; a role_mappings team without object id)."""
    return role is not Role.PROXY_ADMIN and identity.user_id is None and identity.team_id is None


def promoted(identity: Identity, role: Role) -> bool:
    """A proxy admin by ``jwt_litellm_role_map`` (sync on): a caller LiteLLM keeps a user row
    for, i.e. one with a user id, whose IdP roles map to proxy_admin."""
    return (
        identity.synced_role is Role.PROXY_ADMIN
        and role is not Role.PROXY_ADMIN
        and identity.user_id is not None
    )


def scope_grant(identity: Identity, policy: Policy) -> ScopeGrant | None:
    """What ``scope_mappings`` grant this caller (None: not configured, or not a JWT)."""
    if policy.scope_rules is None or identity.kind != JWT:
        return None
    return policy.scope_rules.grant(identity.scopes)


def scope_route_refusal(grant: ScopeGrant, path: str) -> str:
    scopes = ", ".join(grant.matched) or "none of the mapped scopes"
    return (
        f"the token's scopes ({scopes}) grant no route matching {path[:200]}; see "
        "general_settings.litellm_jwtauth.scope_mappings[].routes"
    )


def describe(policy: Policy) -> list[str]:
    """For ``extauthz check-config``: what the role and scope mappings do."""
    lines: list[str] = []
    rules = policy.role_rules
    if rules.mappings:
        pairs = ", ".join(f"{role} → {internal.value}" for role, internal in rules.mappings)
        lines.append(f"role mappings (claim {rules.roles_field}, first match wins): {pairs}")
    if rules.object_id_field:
        lines.append(
            f"object id claim {rules.object_id_field}: the team id of a team, the user id of "
            "an internal_user"
        )
    if rules.role_map:
        pairs = ", ".join(f"{g.pattern} → {g.role.value}" for g in rules.role_map)
        lines.append(
            f"jwt_litellm_role_map (claim {rules.roles_field}, synced, first match wins): "
            f"{pairs}; proxy_admin promotes a caller with a user id"
        )
    if policy.scope_rules is not None:
        for m in policy.scope_rules.mappings:
            models = "no models" if not m.models else "models " + ", ".join(m.models)
            routes = "" if m.routes is None else "; routes " + ", ".join(m.routes)
            lines.append(f"scope {m.scope}: {models}{routes}")
        if policy.scope_rules.routed:
            lines.append("scope routes enforced: a caller may call only its scopes' routes")
    return lines


def explain(identity: Identity, policy: Policy) -> dict[str, str]:
    """For ``extauthz explain``: which mapping matched, which role and id resulted, which
    scopes granted which models and routes."""
    out: dict[str, str] = {}
    if identity.mapped_role is not None:
        out["role_mapping"] = f"{identity.mapped_from} -> {identity.mapped_role.value}"
    if identity.object_id is not None:
        out["object_id"] = identity.object_id
    if identity.synced_role is not None:
        out["jwt_litellm_role_map"] = f"{identity.synced_from} -> {identity.synced_role.value}"
    if identity.role_problem is not None:
        out["role_problem"] = identity.role_problem
    grant = scope_grant(identity, policy)
    if grant is not None:
        out["scope_mappings"] = grant.describe() + (
            ""
            if grant.routes is None
            else "; routes " + (", ".join(e for r in grant.routes for e in r) or "(none)")
        )
    return out

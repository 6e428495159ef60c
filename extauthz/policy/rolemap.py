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


def acting_role(identity: Identity, rbac_role: Role, admin_scope: str) -> Role:
    """The role a caller acts as: ``role_mappings`` → proxy_admin makes no admin in LiteLLM
    (its admin check reads only ``admin_jwt_scope``); such a caller goes on as an
    internal_user without an id (the object id is not applied to it), as it does there."""
    mapped_admin = identity.kind == JWT and admin_scope not in identity.scopes
    if rbac_role is Role.PROXY_ADMIN and mapped_admin:
        return Role.INTERNAL_USER
    return rbac_role


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

"""Where the role settings act in ``decide.admit``, as LiteLLM's ``authorize_jwt`` acts.

The mappings are read with the identity (``identity.roles``); what they do to the decision is
here, so ``decide`` stays a list of checks:
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

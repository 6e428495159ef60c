"""Compile the role and scope mapping keys of ``litellm_jwtauth``, reporting every problem.

``role_mappings``/``object_id_jwt_field``/``jwt_litellm_role_map`` become ``RoleRules``
(identity/roles.py) and ``scope_mappings`` ``ScopeRules`` (policy/scopes.py). LiteLLM's own
config checks are kept (object id needs role mappings; scope mappings need
``enforce_scope_based_access``), plus ours: a mapping with no claim to read, a role extauthz
cannot act on, and ``enforce_scope_based_access`` with nothing to enforce are refused.
"""

from __future__ import annotations

from extauthz.config.schema import JwtAuthSettings
from extauthz.identity.claims import parse_field_path
from extauthz.identity.roles import NO_ROLE_RULES, GlobRole, RoleRules
from extauthz.model import LITELLM_USER_ROLES, Role
from extauthz.policy.routes import RouteError, compile_routes
from extauthz.policy.scopes import ScopeMapping, ScopeRules

_WHERE = "general_settings.litellm_jwtauth"
# Of LiteLLM's user roles, only these two change a decision here.
SYNCED_ROLES = {"proxy_admin": Role.PROXY_ADMIN, "internal_user": Role.INTERNAL_USER}


def role_rules(jwt: JwtAuthSettings, problems: list[str], warnings: list[str]) -> RoleRules:
    """``roles_jwt_field``, ``role_mappings``, ``object_id_jwt_field``, ``jwt_litellm_role_map``."""
    if jwt.role_mappings and jwt.roles_jwt_field is None:
        problems.append(
            f"{_WHERE}.role_mappings needs roles_jwt_field (the claim holding the IdP roles, "
            "e.g. 'roles' for Entra ID app roles)"
        )
    if jwt.object_id_jwt_field is not None and jwt.role_mappings is None:
        problems.append(
            f"{_WHERE}.object_id_jwt_field needs role_mappings: the mapped role says whether "
            "the object id is a team id or a user id (LiteLLM refuses it alone too)"
        )
    if jwt.jwt_litellm_role_map and jwt.roles_jwt_field is None:
        problems.append(
            f"{_WHERE}.jwt_litellm_role_map needs roles_jwt_field (the claim holding the IdP "
            "roles or groups, e.g. 'groups' for Okta)"
        )
    mappings: list[tuple[str, Role]] = []
    seen: set[str] = set()
    for i, m in enumerate(jwt.role_mappings or ()):
        if m.role in seen:
            warnings.append(
                f"{_WHERE}.role_mappings[{i}]: role {m.role!r} is mapped earlier; the first "
                "mapping wins, this one is never used"
            )
            continue
        seen.add(m.role)
        if m.internal_role == "proxy_admin":
            warnings.append(
                f"{_WHERE}.role_mappings[{i}]: internal_role proxy_admin makes no admin in "
                "LiteLLM 1.108.7 (its admin check reads only admin_jwt_scope); such callers go "
                "on as internal users without an id, here as there. Use admin_jwt_scope for admins"
            )
        mappings.append((m.role, Role(m.internal_role)))
    globs = _role_map(jwt, problems, warnings)
    if jwt.roles_jwt_field is not None and not (mappings or jwt.jwt_litellm_role_map):
        warnings.append(
            f"{_WHERE}.roles_jwt_field: no effect without role_mappings or jwt_litellm_role_map"
        )
    rules = RoleRules(
        roles_field=jwt.roles_jwt_field,
        roles_path=parse_field_path(jwt.roles_jwt_field) if jwt.roles_jwt_field else (),
        mappings=tuple(mappings),
        object_id_field=jwt.object_id_jwt_field,
        object_id_path=parse_field_path(jwt.object_id_jwt_field)
        if jwt.object_id_jwt_field
        else (),
        role_map=globs,
    )
    return rules if rules.active else NO_ROLE_RULES


def _role_map(
    jwt: JwtAuthSettings, problems: list[str], warnings: list[str]
) -> tuple[GlobRole, ...]:
    if jwt.sync_user_role_and_teams:
        warnings.append(
            f"{_WHERE}.sync_user_role_and_teams: LiteLLM writes the mapped role and the token's "
            "teams into its database; here only the role's effect on this request is applied "
            "(jwt_litellm_role_map → proxy_admin); team memberships and roles already in "
            "LiteLLM's database are not known to extauthz"
        )
    out: list[GlobRole] = []
    for i, m in enumerate(jwt.jwt_litellm_role_map or ()):
        where = f"{_WHERE}.jwt_litellm_role_map[{i}].litellm_role"
        if m.litellm_role not in LITELLM_USER_ROLES:
            problems.append(
                f"{where}: unknown role {m.litellm_role!r}; LiteLLM's user roles are "
                + ", ".join(LITELLM_USER_ROLES)
            )
        elif m.litellm_role not in SYNCED_ROLES:
            problems.append(
                f"{where}: {m.litellm_role!r} is not supported by extauthz (its route rules are "
                "LiteLLM's UI roles); map to proxy_admin or internal_user, or remove the entry"
            )
        else:
            out.append(GlobRole.of(m.jwt_role, SYNCED_ROLES[m.litellm_role]))
    if out and not jwt.sync_user_role_and_teams:
        warnings.append(
            f"{_WHERE}.jwt_litellm_role_map: no effect on access without "
            "sync_user_role_and_teams: true (LiteLLM also reads it at UI SSO login, which "
            "extauthz does not serve)"
        )
        return ()
    return tuple(out)


def scope_rules(
    jwt: JwtAuthSettings,
    model_globs: bool,
    model_names: tuple[str, ...],
    problems: list[str],
    warnings: list[str],
) -> ScopeRules | None:
    """``scope_mappings`` with ``enforce_scope_based_access``: both or neither."""
    if jwt.scope_mappings is not None and not jwt.enforce_scope_based_access:
        problems.append(
            f"{_WHERE}.scope_mappings needs enforce_scope_based_access: true (LiteLLM refuses "
            "scope_mappings without it); set it, or remove scope_mappings"
        )
        return None
    if jwt.enforce_scope_based_access and not jwt.scope_mappings:
        problems.append(
            f"{_WHERE}.enforce_scope_based_access is true but there are no scope_mappings to "
            "enforce; add scope_mappings: [{scope, models}] or remove it"
        )
        return None
    if not jwt.scope_mappings:
        return None
    mappings = []
    for i, m in enumerate(jwt.scope_mappings):
        routes = None
        if m.routes is not None:
            try:
                routes = compile_routes(m.routes)
            except RouteError as exc:
                problems.append(f"{_WHERE}.scope_mappings[{i}].routes: {exc}")
        models = None if m.models is None else tuple(m.models)
        unknown = [x for x in models or () if "*" not in x and x not in model_names]
        if unknown and model_names:
            warnings.append(
                f"{_WHERE}.scope_mappings[{i}].models: {', '.join(unknown)} not in model_list "
                "(granted anyway)"
            )
        mappings.append(ScopeMapping(m.scope, models, routes))
    return ScopeRules(tuple(mappings), globs=model_globs)

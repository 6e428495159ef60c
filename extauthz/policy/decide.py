"""The decision function: who the caller is and what they ask for, against the policy.

Pure and synchronous, in two steps: ``admit`` (everything but the body, reusable per caller
and path) and ``judge_body``. Order of checks (each a deny with its own reason and status):
usable roles claim / object id (401) → role (403) → team claim when one is configured (403) →
a user or team id under general_settings.enforce_rbac (403) → blocked team / end user (403) →
email domain (403) → admin-only route (403) → route, and the scopes' routes (403) → readable
model (400) → the team the request runs as (``policy.teams``: x-litellm-team-id among the
token's teams, a registered team, 403) → cut body when the model matters (413) → model allowed
by the role, by the scopes and by the team (403) → ``user`` named, under
general_settings.enforce_user_param (401, ``policy.userparam``). Role and scope mappings act
through ``policy.rolemap``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from extauthz.model import (
    JWT,
    MASTER_KEY,
    OAUTH2,
    PASSTHROUGH,
    Allow,
    Decision,
    Deny,
    Identity,
    Reason,
    RequestView,
    Role,
)
from extauthz.policy import rolemap, userparam
from extauthz.policy.admin_paths import ADMIN_API_PATHS, routes_to_admin_api
from extauthz.policy.catalog import ModelCatalog
from extauthz.policy.compiled import ModelRule, Policy, TeamRules
from extauthz.policy.models import MAX_JSON_CONTAINERS, MAX_JSON_ITEMS, ModelRead, read_models
from extauthz.policy.overrides import NO_OAUTH2_ROLE, oauth2_role
from extauthz.policy.routes import compile_routes
from extauthz.policy.scopes import ScopeGrant
from extauthz.policy.teams import (
    TEAM_HEADER,
    choose_team,
    runs_of,
    team_refusal,
    team_rule,
)
from extauthz.state.protocol import StateSnapshot

# LLM API routes (where general_settings.completion_model replaces the caller's model) and
# provider pass-through routes (provider-native requests whose model we do not read).
_LLM_ROUTES = compile_routes(["openai_routes", "anthropic_routes", "google_routes"])
_PASS_THROUGH = compile_routes(["passthrough_routes_wildcard"])
_UNREAD_PROVIDER_ROUTE = (
    "provider pass-through routes carry the model in provider-specific places the "
    "authorization service does not read; a role with a model list may not use them"
)


def resolve_role(identity: Identity, policy: Policy) -> Role | None:
    """The role a caller acts as (the admin API asks this): a ``role_mappings`` proxy_admin is
    none (``rolemap.acting_role``)."""
    role = rbac_role(identity, policy)
    return None if role is None else rolemap.acting_role(identity, role, policy.admin_scope)


def named(identity: Identity, policy: Policy) -> tuple[Identity, Role | None]:
    """The caller as ``admit`` names it (the object id applied by its RBAC role) and the role
    it acts as (None: no role). For callers without an admission: the admin API's, and a
    token ``admit`` refuses before naming its caller (a ``role_problem``)."""
    rbac = rbac_role(identity, policy)
    if rbac is None:
        return identity, None
    identity = rolemap.with_object_id(identity, rbac)
    return identity, rolemap.acting_role(identity, rbac, policy.admin_scope)


def rbac_role(identity: Identity, policy: Policy) -> Role | None:
    """LiteLLM's role order (get_rbac_role): admin scope, then team id, then user role (or
    user id), then role_mappings."""
    if identity.kind == MASTER_KEY:
        return Role.PROXY_ADMIN
    if identity.kind == OAUTH2:  # routing_overrides: the introspection answer's caller
        return oauth2_role(identity)
    if policy.admin_scope in identity.scopes:
        return Role.PROXY_ADMIN
    if identity.team_id is not None:
        return Role.TEAM
    if policy.user_allowed_roles is not None:
        # Deliberate difference: with an allow-list, a user id alone is not enough.
        if identity.roles & policy.user_allowed_roles:
            return Role.INTERNAL_USER
    elif identity.user_id is not None and not identity.user_id_from_email:
        # LiteLLM's role reads the user id claim alone (get_rbac_role); the email fallback
        # names whom spend is attributed to but makes no internal_user.
        return Role.INTERNAL_USER
    return identity.mapped_role  # role_mappings come last (identity.roles)


def _no_role_message(policy: Policy) -> str:
    f = policy.fields
    parts = [f"no admin scope {policy.admin_scope!r}"]
    parts.append(
        f"no team id in claim {f.team_id.name!r}"
        if f.team_id
        else "team detection off (set team_id_jwt_field, e.g. client_id, to make OAuth "
        "clients teams)"
    )
    if policy.user_allowed_roles is not None and f.roles is not None:
        parts.append(
            f"no role from {', '.join(sorted(policy.user_allowed_roles))} in claim {f.roles.name!r}"
        )
    elif f.user_id is not None:
        parts.append(f"no user id in claim {f.user_id.name!r}")
    else:
        parts.append("no user_id_jwt_field configured")
    return "the token maps to no role (" + "; ".join(parts) + ")"


def email_refusal(identity: Identity, domains: frozenset[str]) -> str | None:
    """Why the email-domain gate refuses this caller (None: it passes). The address must be
    valid, not said to be unverified, and its domain exactly one of ``domains`` (any case)."""
    if identity.email_domain is not None and identity.email_domain in domains:
        return None
    if identity.email_problem is not None:
        return identity.email_problem
    if identity.email_domain is None:  # an identity whose email was never checked
        return "the token's email was not checked" if identity.email else "the token has no email"
    return f"{identity.email!r} is on domain {identity.email_domain!r}"


@dataclass(slots=True)
class Admission:
    """A caller let onto a route, before the body is read.

    A function of (identity, path, policy, state) only, so the authorizer can reuse it for the
    same caller and path until the policy or the state snapshot changes. Never changed once
    made (``replace`` makes a new one): threads share it through the authorizer's memo. Not
    ``frozen``: a frozen init's ``object.__setattr__`` per field cost ~2 µs of a new caller's
    ~4 µs admit; and not a NamedTuple, whose field reads (every request, in ``judge_body``)
    cost more than a slot's.
    """

    identity: Identity
    role: Role | None
    rule: ModelRule | None  # the role's model allow-list; None: any model
    read_body: bool = True  # False for passthrough keys: the body is not ours to judge
    admin_api: bool = False  # the (decoded) path is one of the sidecar's admin API paths
    catalog: ModelCatalog | None = None  # how names resolve (with a rule)
    forced: tuple[str, ...] = ()  # models the upstream runs on this route whatever is asked
    steering: str | None = None  # why this route cannot be checked (with a rule)
    teams: TeamRules | None = None  # a non-admin JWT caller: its team is chosen per request
    team_route: bool = False  # the TEAM role may call this path (with teams)
    scope: ScopeGrant | None = None  # what scope_mappings grant this caller (a second rule)
    promoted: bool = False  # a proxy_admin by jwt_litellm_role_map (policy.rolemap.promoted)
    header_teams: tuple[str, ...] | None = None  # x-litellm-team-id may name (None: the team)
    user_param: bool = False  # enforce_user_param applies to this path (for a POST)


def admit(path: str, identity: Identity, policy: Policy, state: StateSnapshot) -> Admission | Deny:
    """Everything decided without the body: role, blocks, email domain, route."""
    if identity.kind == PASSTHROUGH:
        return Admission(identity, None, None, read_body=False)
    if identity.role_problem is not None and policy.admin_scope not in identity.scopes:
        return Deny(401, Reason.MALFORMED_TOKEN, identity.role_problem, identity)
    rbac = rbac_role(identity, policy)
    if rbac is None:
        why = NO_OAUTH2_ROLE if identity.kind == OAUTH2 else _no_role_message(policy)
        return Deny(403, Reason.NO_ROLE, why, identity)
    claimed = identity
    identity = rolemap.with_object_id(identity, rbac)
    header_teams = rolemap.header_teams(claimed, identity, state.blocked_teams)
    role = rolemap.acting_role(identity, rbac, policy.admin_scope)
    promoted = rolemap.promoted(identity, role)
    if role is Role.PROXY_ADMIN and identity.team_id is not None:
        # LiteLLM's admin identity carries no team (check_admin_access returns team_id=None).
        identity = identity._replace(team_id=None)
    elif (
        role is not Role.PROXY_ADMIN
        and identity.team_id is None
        and policy.fields.team_id is not None
        and policy.refuse_missing_team
        and identity.kind != OAUTH2  # the team claim is a JWT's, not introspection's
        and identity.team_alias is None  # an alias claim may name the team (policy.teams)
    ):
        # LiteLLM: with team_id_jwt_field set, a non-admin token without the claim (and no
        # team_id_default) is refused, "No team found in token".
        return Deny(
            403,
            Reason.NO_TEAM,
            f"no team found in the token: claim {policy.fields.team_id.name!r} "
            "(team_id_jwt_field) is missing or empty; set "
            "general_settings.litellm_jwtauth.team_id_default for tokens without a team, or "
            "extauthz.missing_team_claim: as_user to let them go on as users",
            identity,
            role,
        )
    if policy.require_caller_id and rolemap.unnamed(identity, role):
        return Deny(403, Reason.NO_ROLE, rolemap.UNNAMED, identity, role)
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
    if role is not Role.PROXY_ADMIN and policy.email_domains is not None:
        refusal = email_refusal(identity, policy.email_domains)
        if refusal is not None:
            return Deny(
                403,
                Reason.EMAIL_DOMAIN_NOT_ALLOWED,
                f"email domain not allowed: {refusal}; allowed domains: "
                + ", ".join(sorted(policy.email_domains)),
                identity,
                role,
            )
    if role is not Role.PROXY_ADMIN and path in policy.gate.admin_only_routes:
        # LiteLLM's custom_admin_only_route_check: exact paths, every non-admin caller.
        return Deny(
            403,
            Reason.ADMIN_ONLY_ROUTE,
            f"route {path[:200]} is admin-only (general_settings.admin_only_routes) and this "
            f"caller is {role.value}",
            identity,
            role,
        )
    if identity.kind != MASTER_KEY:
        routes = policy.role_routes.get(role)
        narrowed = policy.role_permission_routes.get(rbac)  # LiteLLM's check_rbac_role
        if (
            routes is None
            or not (promoted or routes.matches(path))
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
    grant = rolemap.scope_grant(identity, policy)
    if grant is not None and not grant.allows_route(path):
        refusal = rolemap.scope_route_refusal(grant, path)
        return Deny(403, Reason.ROUTE_NOT_ALLOWED, refusal, identity, role)
    rule = None if identity.kind == MASTER_KEY else policy.role_models.get(rbac)
    admin_api = path in ADMIN_API_PATHS
    teams = (
        policy.team_rules
        if identity.kind in (JWT, OAUTH2) and role is not Role.PROXY_ADMIN
        else None
    )
    team_routes = policy.role_routes.get(Role.TEAM)
    team_route = teams is not None and team_routes is not None and team_routes.matches(path)
    llm_route = _LLM_ROUTES.matches(path)
    user_param = policy.gate.enforce_user_param and userparam.applies(path)
    restricted = rule is not None or grant is not None  # some model list applies
    forced = policy.catalog.forced if llm_route and (restricted or teams is not None) else ()
    steering = (
        None
        if not restricted or llm_route or not _PASS_THROUGH.matches(path)
        else _UNREAD_PROVIDER_ROUTE
    )
    # By position, in field order (pinned by test_cold_fastpaths): one per new caller, and
    # keywords cost more than the fields' construction.
    return Admission(
        identity,
        role,
        rule,
        True,  # read_body
        admin_api,
        policy.catalog,
        forced,
        steering,
        teams,
        team_route,
        grant,  # scope
        promoted,
        header_teams,
        user_param,
    )


def judge_body(
    admission: Admission,
    request: RequestView,
    path: str,
    query: str,
    read: ModelRead | None = None,
    state: StateSnapshot | None = None,
) -> Decision:
    """The body's part: readable models (400), all of them known (413, 403), all allowed (403).

    "All of them" is every model the upstream may run for this request: those the request
    names anywhere LiteLLM reads one (see ``read_models``), each followed through the gateway's
    aliases and fallbacks (``ModelCatalog.runs``), plus a model the config forces.
    """
    identity, role, rule = admission.identity, admission.role, admission.rule
    if not admission.read_body:
        return Allow(identity, role)
    if read is None:  # else read already (large bodies: in the worker process)
        headers = request.headers
        read = read_models(
            path,
            query,
            request.method,
            headers.get("content-type"),
            request.body,
            request.body_cut,
            headers.get("x-litellm-model"),
        )
    if read.error is not None:
        return Deny(400, Reason.BAD_BODY, read.error, identity, role)
    team_rules = admission.teams
    team_source = None
    if team_rules is not None:
        team_source = team_rules.claim_source(identity)
        snapshot = state or _NO_STATE
        header = request.headers.get(TEAM_HEADER)
        if (
            header
            or snapshot.teams
            or identity.team_ids
            or identity.team_alias is not None
            or team_rules.enforce
        ):
            catalog = admission.catalog or _NO_CATALOG
            team_runs = runs_of(read.models + admission.forced, catalog)
            choice = choose_team(
                identity,
                header,
                team_runs,
                team_rules,
                admission.team_route,
                snapshot,
                role,
                catalog.model_names,
                admission.header_teams,
            )
            if isinstance(choice, Deny):
                return choice
            team_source = choice.why if choice.team_id is not None else None
            if choice.team_id != identity.team_id:
                identity = identity._replace(team_id=choice.team_id)
                admission = replace(admission, identity=identity)
                if choice.team_id in snapshot.blocked_teams:
                    return Deny(
                        403,
                        Reason.TEAM_BLOCKED,
                        f"team {choice.team_id!r} is blocked; an admin can lift it with "
                        "POST /team/unblock",
                        identity,
                        role,
                    )
            if choice.entry is not None and team_rule(choice.entry.models) is not None:
                refused = _refuse_unknown(admission, read.cut, read.complex, read.steering)
                if refused is None:
                    refused = team_refusal(choice, team_runs, identity, role, catalog.model_names)
                if refused is not None:
                    return refused
    scope = admission.scope
    if scope is None:  # no list comprehension: this runs on every request
        rules: tuple[ModelRule, ...] = () if rule is None else (rule,)
    else:
        rules = (scope.rule,) if rule is None else (rule, scope.rule)
    if rules:
        if read.cut or read.complex or read.steering is not None or admission.steering is not None:
            refused = _refuse_unknown(admission, read.cut, read.complex, read.steering)
            if refused is not None:
                return refused
        catalog = admission.catalog or _NO_CATALOG
        for model in read.models + admission.forced:
            for runs in catalog.runs(model):
                for r in rules:
                    if not r.allows(runs):
                        return _model_denied(admission, r, model, runs)
    if admission.user_param and request.method.upper() == "POST":
        missing = userparam.refusal(read, identity, role)
        if missing is not None:
            return missing
    # Positional, in Allow's field order: keywords cost a NamedTuple ~3k instructions more.
    return Allow(
        identity,
        Role.PROXY_ADMIN if admission.promoted else role,
        read.models[0] if read.models else None,
        Reason.ALLOWED,
        # keep_credentials: only for a target Envoy routes to the admin API as sent (the
        # decoded path naming it is not enough: Envoy routes an escaped spelling upstream).
        admission.admin_api and routes_to_admin_api(request.path),
        team_source,
    )


_NO_CATALOG = ModelCatalog()
_NO_STATE = StateSnapshot()


def _refuse_unknown(
    admission: Admission, cut: bool, complex_body: bool, steering: str | None
) -> Deny | None:
    """A restricted caller's request whose models cannot all be known: 413 or 403."""
    identity, role = admission.identity, admission.role
    if cut:
        return Deny(
            413,
            Reason.BODY_CUT,
            "the request body is larger than the authorization buffer, so its model cannot "
            "be checked; send a smaller body or raise with_request_body.max_request_bytes "
            "in Envoy's ext_authz filter",
            identity,
            role,
        )
    if complex_body:
        return Deny(
            413,
            Reason.BODY_TOO_COMPLEX,
            f"the request body holds more than {MAX_JSON_CONTAINERS:,} JSON objects and arrays "
            f"or {MAX_JSON_ITEMS:,} values, more than the authorization service reads to find "
            "its model; send a simpler body",
            identity,
            role,
        )
    message = admission.steering or steering
    if message is not None:
        return Deny(403, Reason.MODEL_UNCHECKABLE, message, identity, role)
    return None


def _model_denied(admission: Admission, rule: ModelRule, asked: str, runs: str) -> Deny:
    role = admission.role
    who = f"role {role.value if role else None}"
    if admission.scope is not None and rule is admission.scope.rule:
        who = f"the token ({admission.scope.describe()}; scope_mappings)"
    allowed = "allowed: " + (", ".join(rule.entries) or "(none)")
    if runs in admission.forced:
        message = (
            f"the gateway runs {runs!r} for every completion (general_settings.completion_model) "
            f"and {who} may not use it; {allowed}"
        )
    elif runs == asked:
        message = f"{who} may not use model {asked!r}; {allowed}"
    else:
        message = (
            f"model {asked!r} may run {runs!r} through the gateway's aliases or fallbacks, and "
            f"{who} may not use {runs!r}; {allowed}"
        )
    return Deny(403, Reason.MODEL_NOT_ALLOWED, message, admission.identity, role)


def decide(
    request: RequestView,
    path: str,
    query: str,
    identity: Identity,
    policy: Policy,
    state: StateSnapshot,
) -> Decision:
    """Decide one request whose path was validated and whose caller was authenticated (the
    authorizer calls ``admit``, remembered, and ``judge_body`` itself)."""
    admitted = admit(path, identity, policy, state)
    if isinstance(admitted, Deny):
        return admitted
    return judge_body(admitted, request, path, query, None, state)


def _route_setting(role: Role) -> str:
    return {
        Role.PROXY_ADMIN: "general_settings.litellm_jwtauth.admin_allowed_routes",
        Role.TEAM: "general_settings.litellm_jwtauth.team_allowed_routes",
        Role.INTERNAL_USER: "extauthz.internal_user_allowed_routes",
    }[role]

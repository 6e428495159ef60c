"""Turn a parsed policy file into a ``Policy``, reporting every problem at once.

``compile_policy`` is pure (the environment is an argument); ``load_policy_file`` adds the read.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from extauthz.config import rolemaps
from extauthz.config.catalog import build_catalog, reach_warnings
from extauthz.config.envref import resolve_env_refs
from extauthz.config.gate import compile_gate
from extauthz.config.overrides import compile_overrides
from extauthz.config.providers import (
    CompiledProviders,
    claim_field,
    compile_providers,
    load_custom_validate,
)
from extauthz.config.schema import (
    IGNORED_JWTAUTH,
    KNOWN_TOP_LEVEL,
    REFUSED_GENERAL,
    REFUSED_JWTAUTH,
    ExtauthzSettings,
    GeneralSettings,
    JwtAuthSettings,
    ModelEntry,
)
from extauthz.config.settings import KeySettings, ServeSettings
from extauthz.config.yamlfile import read_yaml
from extauthz.errors import ConfigError
from extauthz.identity.claims import ClaimValueError, canonical_id
from extauthz.identity.emails import email_domain
from extauthz.identity.fields import ClaimFields
from extauthz.identity.jwks import split_urls
from extauthz.identity.tokens import TokenRules
from extauthz.model import Role
from extauthz.policy.compiled import (
    HeaderNames,
    ModelRule,
    Policy,
)
from extauthz.policy.routes import RouteError, RouteSet, compile_routes

GENERAL_KEYS = frozenset(GeneralSettings.model_fields)
JWTAUTH_KEYS = frozenset(JwtAuthSettings.model_fields)


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A compiled policy, how to run it, and the warnings worth one log line each."""

    policy: Policy
    settings: ServeSettings
    warnings: tuple[str, ...]


def _suggest(key: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_off(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


def _validate(model: type[BaseModel], data: Any, prefix: str, problems: list[str]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = prefix
            for part in err["loc"]:
                loc += f"[{part}]" if isinstance(part, int) else f".{part}"
            got = err.get("input")
            hint = "" if err["type"] == "missing" else f" (got {type(got).__name__})"
            problems.append(f"{loc}: {err['msg']}{hint}")
        return None


def _routes(entries: list[str], where: str, problems: list[str]) -> RouteSet | None:
    try:
        return compile_routes(entries)
    except RouteError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _env_list(value: str | list[str] | None, env: str | None) -> frozenset[str]:
    if value is None:
        value = [v.strip() for v in (env or "").split(",") if v.strip()]
    return frozenset([value] if isinstance(value, str) else value)


class _Sections(NamedTuple):
    """The validated sections a policy is compiled from."""

    general: GeneralSettings
    ours: ExtauthzSettings
    model_names: tuple[str, ...]


_JWT_WHERE = "general_settings.litellm_jwtauth"


def compile_policy(
    data: Mapping[str, Any], environ: Mapping[str, str], source: str = "config"
) -> LoadedPolicy:
    """Validate a parsed config and compile it. Raises ConfigError listing every problem.

    Phases: read the sections, then the routes per role, the role permissions, how claims map
    to a caller, the runtime settings and the model catalog; every problem of every phase is
    collected before the policy is refused.
    """
    problems: list[str] = []
    warnings: list[str] = []
    sections = _read_sections(data, environ, problems, warnings)
    if sections is None:
        raise ConfigError(problems, source)
    role_routes = _role_routes(sections, problems)
    perm_routes, role_models = _role_permissions(sections, problems, warnings)
    fields, team_id_default, email_domains = _claim_rules(sections, problems)
    providers = compile_providers(
        sections.general.enable_jwt_auth,
        sections.general.litellm_jwtauth,
        sections.ours,
        fields,
        team_id_default,
        email_domains,
        problems,
    )
    jwt_settings = sections.general.litellm_jwtauth
    roles = rolemaps.role_rules(jwt_settings, problems, warnings)
    scopes = rolemaps.scope_rules(
        jwt_settings, sections.ours.model_globs, sections.model_names, problems, warnings
    )
    settings = _serve_settings(sections, environ, problems, warnings, providers)
    overrides, introspection = compile_overrides(
        sections.general.enable_jwt_auth,
        jwt_settings,
        sections.ours,
        environ,
        problems,
        sections.general.enable_oauth2_auth,
    )
    settings = replace(settings, keys=replace(settings.keys, introspection=introspection))
    validator = load_custom_validate(sections.general.litellm_jwtauth, source, problems)
    catalog = build_catalog(data, sections.general.completion_model, problems, warnings)
    warnings.extend(reach_warnings(catalog, role_models))
    identity_headers = sections.ours.headers.model_dump().values()
    gate = compile_gate(sections.general, sections.ours, identity_headers, problems, warnings)
    if problems:
        raise ConfigError(problems, source)

    general, ours = sections.general, sections.ours
    jwt = general.litellm_jwtauth
    policy = Policy(
        enable_jwt_auth=general.enable_jwt_auth,
        master_key=general.master_key,
        admin_scope=jwt.admin_jwt_scope,
        fields=fields,
        team_id_default=team_id_default,
        refuse_missing_team=ours.missing_team_claim == "refuse",
        user_allowed_roles=None
        if jwt.user_allowed_roles is None
        else frozenset(jwt.user_allowed_roles),
        require_caller_id=general.enforce_rbac,
        email_domains=email_domains,
        role_rules=roles,
        scope_rules=scopes,
        role_routes=role_routes,
        role_permission_routes=perm_routes,
        role_models=role_models,
        user_id_upsert=jwt.user_id_upsert,
        team_id_upsert=jwt.team_id_upsert,
        enforce_team_models=jwt.enforce_team_based_model_access,
        non_jwt_passthrough=ours.non_jwt_tokens == "passthrough",
        remove_credential_headers=ours.remove_credential_headers,
        shadow_mode=ours.shadow_mode,
        metadata_on_deny=ours.metadata_on_deny,
        headers=HeaderNames(**ours.headers.model_dump()),
        token_rules=TokenRules(
            audiences=_env_list(ours.audience, environ.get("JWT_AUDIENCE")),
            issuers=_env_list(ours.issuer, environ.get("JWT_ISSUER")),
            leeway=ours.leeway_seconds,
            require_exp=ours.require_exp,
            max_token_bytes=ours.max_token_bytes,
            providers=providers.token_rules,
        ),
        model_names=sections.model_names,
        catalog=catalog,
        gate=gate,
        source=source,
        # roles and their mappings are global: every provider's tokens are read with them
        issuer_claims={k: replace(c, role_rules=roles) for k, c in providers.claims.items()},
        custom_validate=validator,
        routing_overrides=overrides,
        enable_oauth2_auth=general.enable_oauth2_auth,
    )
    return LoadedPolicy(policy, settings, tuple(warnings))


def _read_sections(
    data: Mapping[str, Any],
    environ: Mapping[str, str],
    problems: list[str],
    warnings: list[str],
) -> _Sections | None:
    """The top level, general_settings, litellm_jwtauth, extauthz and model_list, validated.

    None when general_settings cannot be read at all (nothing else can be checked then).
    """
    ignored_top = sorted(str(k) for k in data if k not in KNOWN_TOP_LEVEL)
    if ignored_top:
        warnings.append("ignored top-level keys (not used by extauthz): " + ", ".join(ignored_top))

    general_raw = data.get("general_settings") or {}
    ours_raw = data.get("extauthz") or {}
    if not isinstance(general_raw, dict):
        problems.append("general_settings: must be a mapping")
        general_raw = {}
    if not isinstance(ours_raw, dict):
        problems.append("extauthz: must be a mapping")
        ours_raw = {}
    # Resolve os.environ/ references only where we read them: an unset variable in a key we
    # ignore (database_url, the minter's section) must not stop the sidecar.
    ours_raw = {
        k: v if k == "mint" else resolve_env_refs(v, environ, f"extauthz.{k}", problems)
        for k, v in ours_raw.items()
    }

    ignored_general: list[str] = []
    for key, value in general_raw.items():
        if key in REFUSED_GENERAL and not _is_off(value):
            problems.append(
                f"general_settings.{key}: not supported by extauthz, and it would change who "
                f"gets in ({REFUSED_GENERAL[key]}); remove it"
            )
        elif key not in GENERAL_KEYS and key not in REFUSED_GENERAL:
            ignored_general.append(str(key))
    if ignored_general:
        warnings.append(
            "ignored general_settings keys (not read by extauthz): "
            + ", ".join(sorted(ignored_general))
        )
    general_raw = {
        k: resolve_env_refs(v, environ, f"general_settings.{k}", problems)
        for k, v in general_raw.items()
        if k in GENERAL_KEYS
    }

    jwt_raw = general_raw.get("litellm_jwtauth")
    if jwt_raw is None:
        general_raw.pop("litellm_jwtauth", None)
    elif isinstance(jwt_raw, dict):
        kept: dict[str, Any] = {}
        for key, value in jwt_raw.items():
            where = f"general_settings.litellm_jwtauth.{key}"
            if key in JWTAUTH_KEYS:
                kept[key] = value
            elif key in REFUSED_JWTAUTH:
                if not _is_off(value):
                    problems.append(
                        f"{where}: LiteLLM option not implemented by extauthz "
                        f"({REFUSED_JWTAUTH[key]}); it would change who gets in, so the policy "
                        "is refused. Remove it or set it to null"
                    )
            elif key in IGNORED_JWTAUTH:
                warnings.append(f"{where}: ignored (it does not affect decisions here)")
            else:
                problems.append(f"{where}: unknown key{_suggest(str(key), JWTAUTH_KEYS)}")
        general_raw["litellm_jwtauth"] = kept

    ours_model = _validate(ExtauthzSettings, ours_raw, "extauthz", problems)
    general = _validate(GeneralSettings, general_raw, "general_settings", problems)
    models_raw = data.get("model_list") or []
    model_names: list[str] = []
    if not isinstance(models_raw, list):
        problems.append("model_list: must be a list of {model_name, litellm_params}")
    else:
        for i, entry in enumerate(models_raw):
            m = _validate(ModelEntry, entry, f"model_list[{i}]", problems)
            if m is not None:
                model_names.append(m.model_name)

    if general is None:
        return None
    # Keep checking with defaults so every problem is reported in one run.
    ours: ExtauthzSettings = ours_model if ours_model is not None else ExtauthzSettings()
    return _Sections(general, ours, tuple(model_names))


def _role_routes(sections: _Sections, problems: list[str]) -> dict[Role, RouteSet]:
    """Each role's allowed routes (LiteLLM's settings, ours for internal_user)."""
    jwt = sections.general.litellm_jwtauth
    role_routes: dict[Role, RouteSet] = {}
    for role, entries, where in (
        (Role.PROXY_ADMIN, jwt.admin_allowed_routes, f"{_JWT_WHERE}.admin_allowed_routes"),
        (Role.TEAM, jwt.team_allowed_routes, f"{_JWT_WHERE}.team_allowed_routes"),
        (
            Role.INTERNAL_USER,
            sections.ours.internal_user_allowed_routes,
            "extauthz.internal_user_allowed_routes",
        ),
    ):
        rs = _routes(entries, where, problems)
        if rs is not None:
            role_routes[role] = rs
    return role_routes


def _role_permissions(
    sections: _Sections, problems: list[str], warnings: list[str]
) -> tuple[dict[Role, RouteSet], dict[Role, ModelRule]]:
    """``role_permissions``: the routes that narrow a role and its model allow-list."""
    ours, model_names = sections.ours, sections.model_names
    perm_routes: dict[Role, RouteSet] = {}
    role_models: dict[Role, ModelRule] = {}
    seen_roles: set[str] = set()
    for i, perm in enumerate(sections.general.role_permissions):
        where = f"general_settings.role_permissions[{i}]"
        if perm.role in seen_roles:
            problems.append(f"{where}.role: role {perm.role!r} appears twice; merge the entries")
            continue
        seen_roles.add(perm.role)
        role = Role(perm.role)
        if perm.routes is not None:
            rs = _routes(perm.routes, f"{where}.routes", problems)
            if rs is not None:
                perm_routes[role] = rs
        if perm.models is not None:
            role_models[role] = ModelRule(tuple(perm.models), globs=ours.model_globs)
            starred = [m for m in perm.models if "*" in m]
            if starred and not ours.model_globs:
                warnings.append(
                    f"{where}.models: {', '.join(starred)}: '*' is a literal character here, as "
                    "in LiteLLM (an exact model name); set extauthz.model_globs: true to make it "
                    "a wildcard"
                )
            unknown = [m for m in perm.models if "*" not in m and m not in model_names]
            if unknown and model_names:
                warnings.append(
                    f"{where}.models: {', '.join(unknown)} not in model_list (allowed anyway)"
                )

    return perm_routes, role_models


def _claim_rules(
    sections: _Sections, problems: list[str]
) -> tuple[ClaimFields, str | None, frozenset[str] | None]:
    """Which claims carry which attribute, the default team, and the email-domain gate."""
    jwt = sections.general.litellm_jwtauth
    jwt_where = _JWT_WHERE
    if (jwt.user_roles_jwt_field is None) != (jwt.user_allowed_roles is None):
        problems.append(
            f"{jwt_where}: user_roles_jwt_field and user_allowed_roles must be set together "
            "(the field says where roles are, the list which roles make an internal_user)"
        )

    domains = jwt.user_allowed_email_domain
    email_domains: frozenset[str] | None = None
    if domains is not None:
        values = [domains] if isinstance(domains, str) else domains
        named = [d.strip().lstrip("@") for d in values if d.strip()]
        checked = {d: email_domain(d) for d in named}  # in the form addresses' domains take
        email_domains = frozenset(filter(None, checked.values()))
        problems.extend(
            f"{jwt_where}.user_allowed_email_domain: {d!r} is not a domain an email address "
            "can have (one exact domain per entry, no wildcards)"
            for d, ascii_domain in checked.items()
            if ascii_domain is None
        )
        if not named:
            problems.append(
                f"{jwt_where}.user_allowed_email_domain: empty; name a domain or remove it"
            )
        if jwt.user_email_jwt_field is None:
            problems.append(
                f"{jwt_where}.user_allowed_email_domain needs user_email_jwt_field "
                "(the claim that holds the email, usually 'email')"
            )

    team_id_default = None
    try:  # the default team is an id like any a token carries: one canonical form
        team_id_default = canonical_id(jwt.team_id_default, f"{jwt_where}.team_id_default")
    except ClaimValueError as exc:
        problems.append(str(exc))

    fields = ClaimFields(
        user_id=claim_field(jwt.user_id_jwt_field),
        team_id=claim_field(jwt.team_id_jwt_field),
        team_ids=claim_field(jwt.team_ids_jwt_field),
        team_alias=claim_field(jwt.team_alias_jwt_field),
        org_id=claim_field(jwt.org_id_jwt_field),
        end_user_id=claim_field(jwt.end_user_id_jwt_field),
        email=claim_field(jwt.user_email_jwt_field),
        roles=claim_field(jwt.user_roles_jwt_field),
    )
    return fields, team_id_default, email_domains


def _serve_settings(
    sections: _Sections,
    environ: Mapping[str, str],
    problems: list[str],
    warnings: list[str],
    providers: CompiledProviders,
) -> ServeSettings:
    """How the sidecar runs: signing keys, the check deadline, reloads; and the credential
    checks that do not fit a single section (master key, keys for JWT auth)."""
    general, ours = sections.general, sections.ours
    jwt = general.litellm_jwtauth
    if general.master_key is not None and len(general.master_key) < 8:
        problems.append(
            "general_settings.master_key: shorter than 8 characters; use a long random key"
        )

    urls = split_urls(ours.public_key_url or environ.get("JWT_PUBLIC_KEY_URL", ""))
    some_keys = urls or providers.key_urls or jwt.oidc_userinfo_enabled
    if general.enable_jwt_auth and not some_keys:
        problems.append(
            "general_settings.enable_jwt_auth is true but no signing keys are configured: export "
            "JWT_PUBLIC_KEY_URL (a JWKS or OpenID discovery URL, or file://) or set "
            "extauthz.public_key_url"
        )
    if (
        not general.enable_jwt_auth
        and not general.enable_oauth2_auth
        and general.master_key is None
        and ours.non_jwt_tokens == "reject"
    ):
        warnings.append(
            "enable_jwt_auth is false and there is no master_key: every request will be refused"
        )
    if general.enable_oauth2_auth and general.master_key is not None:
        warnings.append(  # LiteLLM would send it to the introspection endpoint (authorizer.py)
            "general_settings.enable_oauth2_auth: the master key is refused on LLM API, info and "
            "/lens routes (LiteLLM introspects every non-JWT token there); use it elsewhere"
        )

    return ServeSettings(
        keys=KeySettings(
            urls=urls,
            ttl=jwt.public_key_ttl,
            refetch_interval=ours.jwks_refetch_interval_seconds,
            fetch_timeout=ours.jwks_fetch_timeout_seconds,
            token_cache_size=ours.token_cache_size,
            token_cache_max_age=ours.token_cache_max_age_seconds,
            issuers=providers.key_urls,
            userinfo_endpoint=jwt.oidc_userinfo_endpoint if jwt.oidc_userinfo_enabled else None,
            userinfo_cache_ttl=jwt.oidc_userinfo_cache_ttl,
        ),
        check_timeout=ours.check_timeout_seconds,
        reload_interval=ours.reload_interval_seconds,
    )


def load_policy_file(path: str, environ: Mapping[str, str]) -> LoadedPolicy:
    """Read, validate and compile a policy file. Raises ConfigError."""
    return compile_policy(read_yaml(path), environ, path)

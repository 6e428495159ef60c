"""Role mappings (Entra app roles, Okta groups), the object id, and scope mappings (issue 16):
config checks, the decisions, and hostile claims. LiteLLM's agreement is test_differential's."""

from __future__ import annotations

import asyncio
import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz.cli import main
from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.devtokens import sign_token
from extauthz.errors import ConfigError
from extauthz.identity.fields import identity_from_claims
from extauthz.identity.roles import GlobRole, RoleRules, read_role_claims
from extauthz.model import Allow, Deny, Identity, Reason, RequestView, Role
from extauthz.policy import rolemap
from extauthz.policy.compiled import Policy
from extauthz.policy.decide import decide, named, resolve_role
from extauthz.state.protocol import StateSnapshot
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk, rsa_key

ENV = {"JWT_PUBLIC_KEY_URL": "https://idp.example/jwks"}
MODELS = """
model_list:
  - {model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}
  - {model_name: gpt-4o-mini, litellm_params: {model: openai/gpt-4o-mini}}
  - {model_name: claude, litellm_params: {model: anthropic/claude}}
"""
ENTRA = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth:
    roles_jwt_field: roles
    role_mappings:
      - {role: litellm.api.consumer, internal_role: team}
      - {role: litellm.api.user, internal_role: internal_user}
    object_id_jwt_field: oid
    enforce_rbac: true
  role_permissions:
    - {role: team, models: [gpt-4o-mini]}
"""
OKTA_GROUPS = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth:
    user_id_jwt_field: sub
    roles_jwt_field: groups
    jwt_litellm_role_map:
      - {jwt_role: "litellm-admins-*", litellm_role: proxy_admin}
      - {jwt_role: "litellm-*", litellm_role: internal_user}
    sync_user_role_and_teams: true
  role_permissions:
    - {role: internal_user, models: [gpt-4o-mini]}
"""
OKTA_SCOPES = (
    MODELS
    + """
litellm_settings:
  model_alias_map: {fast: gpt-4o}
router_settings:
  fallbacks: [{gpt-4o-mini: [claude]}]
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth:
    admin_jwt_scope: litellm-proxy-admin
    admin_allowed_routes: [openai_routes, management_routes]
    user_id_jwt_field: sub
    scope_mappings:
      - {scope: litellm.models.gpt, models: [gpt-4o]}
      - {scope: litellm.models.mini, models: [gpt-4o-mini]}
      - {scope: litellm.models.claude, models: [claude]}
    enforce_scope_based_access: true
"""
)


def policy_of(text: str) -> Policy:
    return compile_policy(parse_yaml(text), ENV).policy


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_policy(parse_yaml(text), ENV)
    return info.value.problems


def call(
    policy: Policy,
    claims: dict[str, Any],
    path: str = "/v1/chat/completions",
    model: str | None = "gpt-4o-mini",
    headers: dict[str, str] | None = None,
) -> Allow | Deny:
    identity = identity_from_claims(claims, policy)
    if isinstance(identity, Deny):
        return identity
    body = b"" if model is None else json.dumps({"model": model, "messages": []}).encode()
    request = RequestView(
        "POST", path, {"content-type": "application/json", **(headers or {})}, body
    )
    return decide(request, path, "", identity, policy, StateSnapshot())


def allowed(decision: Allow | Deny) -> Allow:
    assert isinstance(decision, Allow), decision
    return decision


def denied(decision: Allow | Deny, reason: Reason, status: int = 403) -> Deny:
    assert isinstance(decision, Deny), decision
    assert (decision.reason, decision.status) == (reason, status), decision
    return decision


# --- config -----------------------------------------------------------------------------------
JWT = "general_settings: {enable_jwt_auth: true, litellm_jwtauth: %s}"


@pytest.mark.parametrize(
    "jwtauth,needle",
    [
        (
            "{role_mappings: [{role: a, internal_role: team}]}",
            "role_mappings needs roles_jwt_field",
        ),
        ("{object_id_jwt_field: oid}", "object_id_jwt_field needs role_mappings"),
        (
            "{roles_jwt_field: roles, role_mappings: [{role: a, internal_role: superuser}]}",
            "role_mappings[0].internal_role",
        ),
        ("{roles_jwt_field: roles, role_mappings: [{role: a}]}", "role_mappings[0].internal_role"),
        ("{roles_jwt_field: roles, role_mappings: [{role: '', internal_role: team}]}", "[0].role"),
        (
            "{roles_jwt_field: g, jwt_litellm_role_map: [{jwt_role: '*', litellm_role: boss}]}",
            "unknown role 'boss'",
        ),
        (
            "{roles_jwt_field: g, jwt_litellm_role_map: "
            "[{jwt_role: '*', litellm_role: proxy_admin_viewer}]}",
            "'proxy_admin_viewer' is not supported by extauthz",
        ),
        (
            "{jwt_litellm_role_map: [{jwt_role: '*', litellm_role: proxy_admin}]}",
            "jwt_litellm_role_map needs roles_jwt_field",
        ),
        (
            "{scope_mappings: [{scope: s, models: [m]}]}",
            "scope_mappings needs enforce_scope_based_access: true",
        ),
        ("{enforce_scope_based_access: true}", "no scope_mappings to enforce"),
        (
            "{enforce_scope_based_access: true, scope_mappings: "
            "[{scope: s, routes: [nope_routes]}]}",
            "scope_mappings[0].routes",
        ),
        (
            "{enforce_scope_based_access: true, scope_mappings: [{scope: s, model: [m]}]}",
            "scope_mappings[0].model",
        ),
    ],
)
def test_config_problems_name_the_key(jwtauth: str, needle: str) -> None:
    problems = problems_of(JWT % jwtauth)
    assert any(needle in p for p in problems), problems


def test_mapping_keys_are_no_longer_refused() -> None:
    for text in (ENTRA, OKTA_GROUPS, OKTA_SCOPES):
        compile_policy(parse_yaml(text), ENV)


def test_empty_and_idle_mapping_keys_are_harmless() -> None:
    loaded = compile_policy(
        parse_yaml(JWT % "{role_mappings: [], jwt_litellm_role_map: [], roles_jwt_field: roles}"),
        ENV,
    )
    assert any("roles_jwt_field: no effect" in w for w in loaded.warnings)


def test_role_map_without_sync_warns_and_grants_nothing() -> None:
    text = OKTA_GROUPS.replace("sync_user_role_and_teams: true", "sync_user_role_and_teams: false")
    loaded = compile_policy(parse_yaml(text), ENV)
    assert any("without sync_user_role_and_teams" in w for w in loaded.warnings)
    admin = {"sub": "u1", "groups": ["litellm-admins-prod"]}
    denied(call(loaded.policy, admin, "/key/generate", None), Reason.ROUTE_NOT_ALLOWED)


def test_scope_models_not_in_model_list_warn() -> None:
    text = OKTA_SCOPES.replace("models: [claude]}", "models: [claude, cluade]}")
    loaded = compile_policy(parse_yaml(text), ENV)
    assert any("scope_mappings[2].models: cluade not in model_list" in w for w in loaded.warnings)


def test_sync_warns_that_the_database_part_is_not_applied() -> None:
    loaded = compile_policy(parse_yaml(OKTA_GROUPS), ENV)
    assert any("LiteLLM's database are not known" in w for w in loaded.warnings)


# --- Entra ID app roles → team / internal_user, the object id -----------------------------------
def test_entra_app_role_makes_a_team_named_by_the_object_id() -> None:
    policy = policy_of(ENTRA)
    token = {"oid": "6e1a-oid", "roles": ["litellm.api.consumer"], "sub": "s"}
    allow = allowed(call(policy, token))
    assert allow.role is Role.TEAM and allow.identity.team_id == "6e1a-oid"
    assert allow.identity.mapped_from == "litellm.api.consumer"
    denied(call(policy, token, model="gpt-4o"), Reason.MODEL_NOT_ALLOWED)
    # x-litellm-team-id may name only a team claim (LiteLLM's allowed teams), never the oid
    denied(call(policy, token, headers={"x-litellm-team-id": "6e1a-oid"}), Reason.TEAM_NOT_ALLOWED)
    denied(call(policy, token, headers={"x-litellm-team-id": "other"}), Reason.TEAM_NOT_ALLOWED)


def test_the_team_header_may_select_the_team_claim_over_the_object_id() -> None:
    """LiteLLM: with team_id_jwt_field and an object id, the team is the oid, and a header naming
    the claim's team selects that team instead (a blocked one may not be named)."""
    policy = policy_of(ENTRA.replace("enforce_rbac: true", "team_id_jwt_field: azp"))
    token = {"azp": "app-1", "oid": "o1", "roles": []}
    assert allowed(call(policy, token)).identity.team_id == "o1"
    chosen = allowed(call(policy, token, headers={"x-litellm-team-id": "app-1"}))
    assert chosen.identity.team_id == "app-1" and chosen.role is Role.TEAM
    denied(call(policy, token, headers={"x-litellm-team-id": "o1"}), Reason.TEAM_NOT_ALLOWED)
    identity = identity_from_claims(token, policy)
    assert isinstance(identity, Identity)
    request = RequestView(
        "POST", "/v1/chat/completions", {"x-litellm-team-id": "app-1"}, b'{"model": "m"}'
    )
    blocked = StateSnapshot(frozenset({"app-1"}))
    decision = decide(request, "/v1/chat/completions", "", identity, policy, blocked)
    assert isinstance(decision, Deny) and decision.reason is Reason.TEAM_NOT_ALLOWED


def test_entra_user_role_makes_the_object_id_the_user_id() -> None:
    allow = allowed(call(policy_of(ENTRA), {"oid": "u-oid", "roles": ["litellm.api.user"]}))
    assert allow.role is Role.INTERNAL_USER and allow.identity.user_id == "u-oid"


def test_the_first_mapping_in_config_order_wins() -> None:
    token = {"oid": "x", "roles": ["litellm.api.user", "litellm.api.consumer"]}
    assert allowed(call(policy_of(ENTRA), token)).role is Role.TEAM


def test_a_user_id_claim_comes_before_the_mapping_and_the_object_id_replaces_it() -> None:
    policy = policy_of(ENTRA.replace("enforce_rbac: true", "user_id_jwt_field: sub"))
    allow = allowed(call(policy, {"sub": "s1", "oid": "o1", "roles": ["litellm.api.consumer"]}))
    assert allow.role is Role.INTERNAL_USER and allow.identity.user_id == "o1"


def test_a_team_claim_is_replaced_by_the_object_id() -> None:
    policy = policy_of(ENTRA.replace("enforce_rbac: true", "team_id_jwt_field: azp"))
    allow = allowed(call(policy, {"azp": "app-1", "oid": "o1", "roles": []}))
    assert allow.role is Role.TEAM and allow.identity.team_id == "o1"


def test_a_mapped_team_without_object_id_has_no_team_id() -> None:
    allow = allowed(call(policy_of(ENTRA), {"roles": ["litellm.api.consumer"]}))
    assert allow.role is Role.TEAM and allow.identity.team_id is None
    # ... and with team_id_jwt_field set it is refused, as LiteLLM's "No team found in token"
    policy = policy_of(ENTRA.replace("enforce_rbac: true", "team_id_jwt_field: azp"))
    denied(call(policy, {"roles": ["litellm.api.consumer"]}), Reason.NO_TEAM)


def test_general_settings_enforce_rbac_refuses_a_caller_without_ids() -> None:
    """LiteLLM's validate_object_id: a mapped team without object id names nobody."""
    text = ENTRA.replace("    enforce_rbac: true\n", "").replace(
        "  role_permissions:", "  enforce_rbac: true\n  role_permissions:"
    )
    policy = policy_of(text)
    deny = denied(call(policy, {"roles": ["litellm.api.consumer"]}), Reason.NO_ROLE)
    assert "No user or team id found in token" in deny.message
    allowed(call(policy, {"oid": "o", "roles": ["litellm.api.consumer"]}))
    # litellm_jwtauth.enforce_rbac alone does not ask for an id (LiteLLM reads general_settings')
    allowed(call(policy_of(ENTRA), {"roles": ["litellm.api.consumer"]}))


def test_an_unmapped_app_role_is_no_role() -> None:
    denied(call(policy_of(ENTRA), {"oid": "o", "roles": ["Directory.Read"]}), Reason.NO_ROLE)


def test_a_mapped_proxy_admin_is_no_admin_as_in_litellm() -> None:
    text = ENTRA.replace(
        "internal_role: internal_user}", "internal_role: internal_user}\n"
        "      - {role: litellm.api.admin, internal_role: proxy_admin}"
    )
    loaded = compile_policy(parse_yaml(text), ENV)
    assert any("makes no admin" in w for w in loaded.warnings)
    token = {"oid": "adm", "roles": ["litellm.api.admin"]}
    allow = allowed(call(loaded.policy, token))
    assert allow.role is Role.INTERNAL_USER and allow.identity.user_id is None
    denied(call(loaded.policy, token, "/key/generate", None), Reason.ROUTE_NOT_ALLOWED)
    # held to proxy_admin's role_permissions (LiteLLM's check_rbac_role), not internal_user's
    perms = compile_policy(
        parse_yaml(
            text.replace(
                "    - {role: team, models: [gpt-4o-mini]}",
                "    - {role: internal_user, models: [gpt-4o]}\n"
                "    - {role: proxy_admin, models: [claude]}",
            )
        ),
        ENV,
    ).policy
    allowed(call(perms, token, model="claude"))
    denied(call(perms, token, model="gpt-4o"), Reason.MODEL_NOT_ALLOWED)
    # ... nor of the sidecar's admin API, which asks resolve_role
    identity = identity_from_claims(token, loaded.policy)
    assert isinstance(identity, Identity)
    assert resolve_role(identity, loaded.policy) is Role.INTERNAL_USER


# --- hostile claims -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "roles,needle",
    [
        ({"litellm.api.consumer": True}, "is an object"),
        (42, "is a number"),
        (True, "is a boolean"),
        (["litellm.api.consumer", {"nested": ["x"]}], "not a string"),
        ([["litellm.api.consumer"]], "not a string"),
    ],
)
def test_a_roles_claim_of_the_wrong_type_refuses_the_token(roles: Any, needle: str) -> None:
    deny = denied(call(policy_of(ENTRA), {"oid": "o", "roles": roles}), Reason.MALFORMED_TOKEN, 401)
    assert needle in deny.message and "roles_jwt_field" in deny.message


def test_a_roles_string_is_one_role_never_its_characters() -> None:
    allow = allowed(call(policy_of(ENTRA), {"oid": "o", "roles": "litellm.api.consumer"}))
    assert allow.role is Role.TEAM
    rules = RoleRules("roles", ("roles",), role_map=(GlobRole.of("?", Role.PROXY_ADMIN),))
    assert read_role_claims({"roles": "abc"}, rules).synced_role is None


def test_an_admin_by_scope_is_not_refused_for_a_malformed_roles_claim() -> None:
    text = ENTRA.replace("enforce_rbac: true", "admin_jwt_scope: admin")
    allow = allowed(call(policy_of(text), {"scope": "admin", "roles": 7}, "/key/generate", None))
    assert allow.role is Role.PROXY_ADMIN


def test_a_huge_roles_list_is_read_whole() -> None:
    roles = [f"group-{i}" for i in range(20_000)] + ["litellm.api.consumer"]
    allow = allowed(call(policy_of(ENTRA), {"oid": "o", "roles": roles}))
    assert allow.role is Role.TEAM


@pytest.mark.parametrize(
    "oid,needle",
    [
        (["a", "b"], "is a list"),
        ({"id": "a"}, "is an object"),
        (" padded ", "whitespace"),
        ("a\x00b", "control character"),
        ("x" * 2000, "longer than 1024"),
        (1.5, "float"),
    ],
)
def test_an_object_id_without_canonical_form_refuses_the_token(oid: Any, needle: str) -> None:
    token = {"oid": oid, "roles": ["litellm.api.consumer"]}
    deny = denied(call(policy_of(ENTRA), token), Reason.MALFORMED_TOKEN, 401)
    assert needle in deny.message and "object_id_jwt_field" in deny.message
    assert str(oid) not in deny.message  # never quoted


@pytest.mark.parametrize("oid,team", [(4242, "4242"), (0, None), ("", None), (None, None)])
def test_object_ids_that_are_numbers_or_empty(oid: Any, team: str | None) -> None:
    allow = allowed(call(policy_of(ENTRA), {"oid": oid, "roles": ["litellm.api.consumer"]}))
    assert allow.identity.team_id == team


# --- jwt_litellm_role_map: globs, precedence, the synced proxy_admin ------------------------------
def test_an_okta_admin_group_makes_a_proxy_admin_with_every_route() -> None:
    policy = policy_of(OKTA_GROUPS)
    admin = {"sub": "00u1", "groups": ["Everyone", "litellm-admins-prod"]}
    allow = allowed(call(policy, admin, "/key/generate", None))
    assert allow.role is Role.PROXY_ADMIN and allow.identity.synced_from == (
        "litellm-admins-prod ~ litellm-admins-*"
    )
    # role_permissions of its role (internal_user, from the user id) still apply, as in LiteLLM
    denied(call(policy, admin, model="gpt-4o"), Reason.MODEL_NOT_ALLOWED)


def test_an_okta_member_group_changes_nothing() -> None:
    policy = policy_of(OKTA_GROUPS)
    member = {"sub": "00u2", "groups": ["litellm-users"]}
    assert allowed(call(policy, member)).role is Role.INTERNAL_USER
    denied(call(policy, member, "/key/generate", None), Reason.ROUTE_NOT_ALLOWED)


def test_an_admin_group_without_a_user_id_is_no_admin() -> None:
    denied(call(policy_of(OKTA_GROUPS), {"groups": ["litellm-admins-x"]}), Reason.NO_ROLE)


def rules_of(*entries: tuple[str, Role]) -> RoleRules:
    return RoleRules("g", ("g",), role_map=tuple(GlobRole.of(p, r) for p, r in entries))


def test_globs_are_fnmatch_case_sensitive_first_mapping_wins() -> None:
    rules = rules_of(("*-admins", Role.PROXY_ADMIN), ("team-?", Role.INTERNAL_USER))
    assert read_role_claims({"g": ["team-1", "x-admins"]}, rules).synced_role is Role.PROXY_ADMIN
    assert read_role_claims({"g": ["team-1"]}, rules).synced_role is Role.INTERNAL_USER
    assert read_role_claims({"g": ["X-ADMINS", "team-12"]}, rules).synced_role is None
    klass = rules_of(("[ab]dmin", Role.PROXY_ADMIN))
    assert read_role_claims({"g": ["admin"]}, klass).synced_role is Role.PROXY_ADMIN
    assert read_role_claims({"g": ["cdmin"]}, klass).synced_role is None


def test_a_pathological_glob_is_answered() -> None:
    """Star runs compile to atomic groups (fnmatch.translate): no catastrophic backtracking."""
    rules = rules_of(("*a*a*a*a*a*a*a*a*a*a*a*a*b", Role.PROXY_ADMIN))
    roles = ["a" * 1000 + "c"] * 1 + [f"{'a' * 30}{i}" for i in range(1000)]
    assert read_role_claims({"g": roles}, rules).synced_role is None


# --- scope_mappings -----------------------------------------------------------------------------
def test_okta_scopes_grant_their_models_only() -> None:
    policy = policy_of(OKTA_SCOPES)
    token = {"sub": "00u", "scp": ["litellm.models.mini", "litellm.models.claude"]}
    allowed(call(policy, token, model="gpt-4o-mini"))  # and its fallback, claude
    deny = denied(call(policy, token, model="gpt-4o"), Reason.MODEL_NOT_ALLOWED)
    assert "litellm.models.mini" in deny.message and "scope_mappings" in deny.message
    allowed(call(policy, {"sub": "00u", "scope": "litellm.models.gpt"}, model="gpt-4o"))
    openid = {"sub": "00u", "scope": "openid"}
    denied(call(policy, openid, model="gpt-4o"), Reason.MODEL_NOT_ALLOWED)
    allowed(call(policy, {"sub": "00u", "scope": "openid"}, "/v1/models", None))  # no model


def test_a_scope_cannot_reach_an_ungranted_model_through_aliases_or_fallbacks() -> None:
    policy = policy_of(OKTA_SCOPES)
    gpt = {"sub": "00u", "scope": "litellm.models.gpt litellm.models.mini"}
    deny = denied(call(policy, gpt, model="gpt-4o-mini"), Reason.MODEL_NOT_ALLOWED)
    assert "'claude'" in deny.message  # the router fallback gpt-4o-mini -> claude
    every = {"sub": "00u", "scope": "litellm.models.gpt litellm.models.mini litellm.models.claude"}
    allowed(call(policy, every, model="gpt-4o-mini"))
    mini = {"sub": "00u", "scope": "litellm.models.mini litellm.models.claude"}
    denied(call(policy, mini, model="fast"), Reason.MODEL_NOT_ALLOWED)  # alias to gpt-4o
    denied(
        call(policy, every, model="gpt-4o", headers={"x-litellm-model": "elsewhere"}),
        Reason.MODEL_NOT_ALLOWED,
    )


def test_scopes_bind_admins_too() -> None:
    policy = policy_of(OKTA_SCOPES)
    admin = {"sub": "root", "scope": "litellm-proxy-admin litellm.models.claude"}
    denied(call(policy, admin, model="gpt-4o"), Reason.MODEL_NOT_ALLOWED)
    allowed(call(policy, admin, "/key/generate", None))


def test_scope_routes_are_enforced_once_any_mapping_names_routes() -> None:
    text = OKTA_SCOPES.replace(
        "{scope: litellm.models.claude, models: [claude]}",
        "{scope: litellm.models.claude, models: [claude], routes: [/v1/messages]}",
    )
    policy = policy_of(text)
    claude = {"sub": "u", "scope": "litellm.models.claude"}
    allowed(call(policy, claude, "/v1/messages", "claude"))
    deny = denied(call(policy, claude, "/v1/chat/completions", "claude"), Reason.ROUTE_NOT_ALLOWED)
    assert "scope_mappings[].routes" in deny.message
    gpt = {"sub": "u", "scope": "litellm.models.gpt"}  # its mapping names no routes: none
    denied(call(policy, gpt, "/v1/chat/completions", "gpt-4o"), Reason.ROUTE_NOT_ALLOWED)


def test_scopes_do_not_apply_to_the_master_key() -> None:
    policy = compile_policy(
        parse_yaml(OKTA_SCOPES.replace("enable_jwt_auth: true", "enable_jwt_auth: true\n"
                                       "  master_key: sk-long-enough-key")),
        ENV,
    ).policy
    request = RequestView("POST", "/v1/chat/completions", {}, b'{"model": "claude"}')
    decision = decide(
        request, "/v1/chat/completions", "", Identity(kind="master_key"), policy, StateSnapshot()
    )
    assert isinstance(decision, Allow)


# --- check-config and explain say what each mapping did ------------------------------------------
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "example,needles",
    [
        (
            "entra-app-roles.yaml",
            [
                "litellm.api.consumer → team, litellm.api.user → internal_user",
                "object id claim oid",
            ],
        ),
        (
            "okta-groups-scopes.yaml",
            [
                "litellm-admins-* → proxy_admin, litellm-* → internal_user",
                "scope litellm.models.mini: models gpt-4o-mini",
            ],
        ),
    ],
)
def test_check_config_shows_the_mappings(
    example: str, needles: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setenv("JWT_PUBLIC_KEY_URL", "https://idp.example/jwks")
    monkeypatch.setenv("JWT_AUDIENCE", "api://x")
    assert main(["check-config", str(EXAMPLES / example)]) == 0
    out = capsys.readouterr().out
    for needle in needles:
        assert needle in out, out


def test_explain_says_which_mapping_matched_and_what_scopes_granted() -> None:
    text = OKTA_GROUPS.replace(
        "sync_user_role_and_teams: true",
        "sync_user_role_and_teams: true\n    enforce_scope_based_access: true\n"
        "    scope_mappings: [{scope: s.mini, models: [gpt-4o-mini], routes: [openai_routes]}]",
    )
    policy = policy_of(text)
    identity = identity_from_claims(
        {"sub": "u", "groups": ["litellm-admins-1"], "scope": "s.mini"}, policy
    )
    assert isinstance(identity, Identity)
    assert rolemap.explain(identity, policy) == {
        "jwt_litellm_role_map": "litellm-admins-1 ~ litellm-admins-* -> proxy_admin",
        "scope_mappings": "scopes s.mini grant models gpt-4o-mini; routes openai_routes",
    }
    entra = policy_of(ENTRA)
    consumer = identity_from_claims({"oid": "o1", "roles": ["litellm.api.consumer"]}, entra)
    assert isinstance(consumer, Identity)
    assert rolemap.explain(consumer, entra) == {
        "role_mapping": "litellm.api.consumer -> team",
        "object_id": "o1",
    }


def test_explain_command_shows_the_mappings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """`extauthz explain` on the Entra example: the mapping that matched and the oid it named."""
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(rsa_jwk())))
    monkeypatch.setenv("JWT_PUBLIC_KEY_URL", keys.as_uri())
    monkeypatch.setenv("JWT_AUDIENCE", "api://x")
    claims = {"oid": "6e1a", "roles": ["litellm.api.consumer"], "aud": "api://x"}
    args = ["explain", "--config", str(EXAMPLES / "entra-app-roles.yaml")]
    args += ["--token", sign_token(rsa_key("a"), claims), "--path", "/v1/chat/completions"]
    assert main([*args, "--body", '{"model": "gpt-4o"}']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["role"] == "team" and out["set_headers"]["x-auth-team-id"] == "6e1a"
    assert out["mappings"] == {"role_mapping": "litellm.api.consumer -> team", "object_id": "6e1a"}


def test_user_id_upsert_records_the_user_the_object_id_names() -> None:
    """LiteLLM upserts the user row of the object id (authorize_jwt sets user_id = oid)."""
    from extauthz.admin.state import StateRuntime

    policy = policy_of(ENTRA.replace("enforce_rbac: true", "user_id_upsert: true"))
    identity = identity_from_claims({"oid": "u-oid", "roles": ["litellm.api.user"]}, policy)
    assert isinstance(identity, Identity)
    runtime = StateRuntime("memory://")
    runtime.note_identity(*named(identity, policy), policy)

    async def recorded() -> Any:
        await runtime.recorder.flush()
        return await runtime.store.get_user("u-oid")

    assert asyncio.run(recorded()) is not None


async def test_upserts_take_the_caller_and_role_admit_worked_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through a real check: the user the object id names is recorded from what ``admit``
    worked out, and a repeat request (its admission remembered) works out no role at all
    (``note_identity`` worked it out twice on every request)."""
    from extauthz.admin import state as state_module
    from extauthz.admin.state import StateRuntime
    from extauthz.authorizer import Authorizer
    from extauthz.identity.jwks import JwksSource
    from extauthz.identity.verifier import TokenVerifier
    from extauthz.policy import decide as decide_module

    policy = policy_of(ENTRA.replace("enforce_rbac: true", "user_id_upsert: true"))

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    runtime = StateRuntime("memory://")
    verifier = TokenVerifier(source, policy.token_rules, clock=lambda: NOW)
    auth = Authorizer(policy, verifier, on_identity=runtime.note_identity)
    token = rs_token({"oid": "u-oid", "roles": ["litellm.api.user"]})
    request = RequestView("GET", "/v1/models", {"authorization": f"Bearer {token}"}, b"")
    worked_out: list[Identity] = []
    real = decide_module.rbac_role

    def counted(identity: Identity, policy: Policy) -> Role | None:
        worked_out.append(identity)
        return real(identity, policy)

    monkeypatch.setattr(decide_module, "rbac_role", counted)
    monkeypatch.setattr(state_module, "rbac_role", counted, raising=False)  # where it was
    first = await auth.authorize(request)
    assert isinstance(first, Allow) and first.identity.user_id == "u-oid"
    worked_out.clear()
    assert await auth.authorize(request) == first
    assert worked_out == []
    await runtime.recorder.flush()
    assert await runtime.store.get_user("u-oid") is not None


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.text(alphabet="ab*?[]!-.", max_size=12),
    roles=st.lists(st.text(alphabet="ab-.[]*?", max_size=10), max_size=5),
)
def test_globs_match_as_litellms_fnmatch(pattern: str, roles: list[str]) -> None:
    """Any pattern, any roles: matched exactly when LiteLLM's fnmatch.fnmatch matches (Linux)."""
    rules = rules_of((pattern, Role.PROXY_ADMIN))
    expected = any(fnmatch.fnmatch(r, pattern) for r in roles)
    assert (read_role_claims({"g": roles}, rules).synced_role is not None) == expected

"""The decision table: every deny reason and the role/route/model combinations of the seeds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.identity.fields import identity_from_claims
from extauthz.model import MASTER_KEY, Allow, Deny, Identity, Reason, RequestView, Role
from extauthz.policy.compiled import Policy
from extauthz.policy.decide import decide, resolve_role
from extauthz.state.protocol import StateSnapshot

ENV = {"JWT_PUBLIC_KEY_URL": "file:///dev/null"}

# Seed 000, Azure AD shape: roles claim at the top level.
AZURE = """
general_settings:
  enable_jwt_auth: True
  litellm_jwtauth:
    user_roles_jwt_field: "roles"
    user_allowed_roles: ["basic_user"]
    enforce_rbac: true
  role_permissions:
    - role: internal_user
      models: ["anthropic-claude"]
model_list:
  - model_name: anthropic-claude
    litellm_params: {model: claude-3-5-haiku-20241022}
  - model_name: openai-gpt-4o
    litellm_params: {model: gpt-4o}
"""
# Seed 000, Keycloak shape: roles under resource_access.<client>.roles.
KEYCLOAK = AZURE.replace('"roles"', '"resource_access.litellm-test-client-id.roles"')
# Seed 002: admin scope, team/user/org/end-user fields.
SPEND = """
general_settings:
  enable_jwt_auth: True
  master_key: sk-1234-long-enough
  litellm_jwtauth:
    admin_jwt_scope: "litellm-proxy-admin"
    team_id_jwt_field: "client_id"
    user_id_jwt_field: "sub"
    org_id_jwt_field: "org_id"
    end_user_id_jwt_field: "customer_id"
    user_email_jwt_field: "email"
  role_permissions:
    - role: team
      models: ["gpt-4o", "claude-*"]
"""
EMAIL = """
general_settings:
  enable_jwt_auth: True
  litellm_jwtauth:
    user_id_jwt_field: sub
    user_email_jwt_field: email
    user_allowed_email_domain: ["Example.com", "@corp.io"]
"""
NARROW = """
general_settings:
  enable_jwt_auth: True
  litellm_jwtauth:
    team_allowed_routes: ["openai_routes", "info_routes"]
    team_id_default: "default-team"
  role_permissions:
    - role: team
      routes: ["/v1/embeddings", "/v1/models"]
"""

# No team_id_jwt_field: LiteLLM has no default for it, so client_id is just a claim.
PLAIN = """
general_settings:
  enable_jwt_auth: True
  litellm_jwtauth:
    user_id_jwt_field: sub
  role_permissions:
    - role: internal_user
      models: ["anthropic-claude"]
"""


def policy_of(text: str) -> Policy:
    return compile_policy(parse_yaml(text), ENV).policy


POLICIES = {
    n: policy_of(t)
    for n, t in {
        "azure": AZURE,
        "keycloak": KEYCLOAK,
        "spend": SPEND,
        "email": EMAIL,
        "narrow": NARROW,
        "globs": SPEND + "extauthz: {model_globs: true}\n",
        "plain": PLAIN,
    }.items()
}
CHAT = "/v1/chat/completions"


@dataclass(frozen=True)
class Case:
    id: str
    policy: str
    claims: dict[str, Any] | None  # None = master key
    path: str = CHAT
    body: dict[str, Any] | bytes | None = None
    expect: Reason = Reason.ALLOWED
    status: int = 200
    role: Role | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False
    blocked_teams: frozenset[str] = frozenset()
    blocked_end_users: frozenset[str] = frozenset()


BASIC = {"sub": "1234567890", "email": "john.doe@example.com", "roles": ["basic_user"]}
KC = {"sub": "1234567890", "resource_access": {"litellm-test-client-id": {"roles": ["basic_user"]}}}
TEAM = {
    "client_id": "my-unique-team",
    "sub": "my-unique-user",
    "org_id": "my-unique-org",
    "customer_id": "cust-1",
}
ADMIN_LIST = {"sub": "root", "scope": ["litellm-proxy-admin", "openid"]}
ADMIN_STR = {"sub": "root", "scope": "openid litellm-proxy-admin"}
ADMIN_SCP = {"sub": "root", "scp": "litellm-proxy-admin"}

CASES = [
    # seed 000 (Azure and Keycloak shapes): role → internal_user → model allow-list
    Case(
        "azure-allowed-model",
        "azure",
        BASIC,
        body={"model": "anthropic-claude"},
        role=Role.INTERNAL_USER,
    ),
    Case(
        "azure-other-model",
        "azure",
        BASIC,
        body={"model": "openai-gpt-4o"},
        expect=Reason.MODEL_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "azure-no-roles",
        "azure",
        {"sub": "x"},
        body={"model": "anthropic-claude"},
        expect=Reason.NO_ROLE,
        status=403,
    ),
    Case(
        "azure-wrong-role-user-id-not-enough",
        "azure",
        {"sub": "x", "roles": ["guest"]},
        expect=Reason.NO_ROLE,
        status=403,
    ),
    Case(
        "azure-role-as-string",
        "azure",
        {"roles": "basic_user"},
        body={"model": "anthropic-claude"},
        role=Role.INTERNAL_USER,
    ),
    Case(
        "keycloak-allowed",
        "keycloak",
        KC,
        body={"model": "anthropic-claude"},
        role=Role.INTERNAL_USER,
    ),
    Case(
        "keycloak-other-model",
        "keycloak",
        KC,
        body={"model": "openai-gpt-4o"},
        expect=Reason.MODEL_NOT_ALLOWED,
        status=403,
    ),
    Case("keycloak-roles-elsewhere", "keycloak", BASIC, expect=Reason.NO_ROLE, status=403),
    Case(
        "internal-user-anthropic-route",
        "azure",
        BASIC,
        path="/v1/messages",
        body={"model": "anthropic-claude"},
        role=Role.INTERNAL_USER,
    ),
    Case(
        "internal-user-management-route",
        "azure",
        BASIC,
        path="/key/generate",
        expect=Reason.ROUTE_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "model-in-deployment-path",
        "azure",
        BASIC,
        path="/openai/deployments/openai-gpt-4o/chat/completions",
        body={},
        expect=Reason.MODEL_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "model-in-google-path",
        "azure",
        BASIC,
        path="/v1beta/models/openai-gpt-4o:generateContent",
        body={},
        expect=Reason.ROUTE_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "path-and-body-disagree",
        "azure",
        BASIC,
        path="/openai/deployments/openai-gpt-4o/chat/completions",
        body={"model": "anthropic-claude"},
        expect=Reason.MODEL_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "no-model-needed-get",
        "azure",
        BASIC,
        path="/v1/models",
        method="GET",
        role=Role.INTERNAL_USER,
    ),
    Case(
        "cut-body-model-matters",
        "azure",
        BASIC,
        body=b'{"model": "anthro',
        cut=True,
        expect=Reason.BODY_CUT,
        status=413,
    ),
    Case(
        "duplicate-model-keys",
        "azure",
        BASIC,
        body=b'{"model": "anthropic-claude", "model": "openai-gpt-4o"}',
        expect=Reason.BAD_BODY,
        status=400,
    ),
    Case(
        "model-not-a-string",
        "azure",
        BASIC,
        body={"model": ["anthropic-claude"]},
        expect=Reason.BAD_BODY,
        status=400,
    ),
    Case(
        "body-not-json",
        "azure",
        BASIC,
        body=b"model=anthropic-claude",
        expect=Reason.BAD_BODY,
        status=400,
    ),
    Case(
        "form-body-model",
        "azure",
        BASIC,
        path="/v1/audio/transcriptions",
        body=b"model=openai-gpt-4o",
        headers={"content-type": "application/x-www-form-urlencoded"},
        expect=Reason.MODEL_NOT_ALLOWED,
        status=403,
    ),
    # seed 002: admin scope (list, string, scp), teams, spend ids
    Case(
        "admin-scope-list",
        "spend",
        ADMIN_LIST,
        path="/key/generate",
        body={},
        role=Role.PROXY_ADMIN,
    ),
    Case(
        "admin-scope-string",
        "spend",
        ADMIN_STR,
        path="/team/block",
        body={"team_id": "t"},
        role=Role.PROXY_ADMIN,
    ),
    Case(
        "admin-scope-scp",
        "spend",
        ADMIN_SCP,
        path="/user/info",
        method="GET",
        role=Role.PROXY_ADMIN,
    ),
    Case(
        "admin-cannot-call-llm-by-default",
        "spend",
        ADMIN_LIST,
        body={"model": "gpt-4o"},
        expect=Reason.ROUTE_NOT_ALLOWED,
        status=403,
    ),
    Case("team-chat-allowed-model", "spend", TEAM, body={"model": "gpt-4o"}, role=Role.TEAM),
    # "*" is a literal character in LiteLLM's model lists; a wildcard only with model_globs.
    Case(
        "team-star-is-literal",
        "spend",
        TEAM,
        body={"model": "claude-3-5-sonnet"},
        expect=Reason.MODEL_NOT_ALLOWED,
        status=403,
    ),
    Case("team-star-exact-name", "spend", TEAM, body={"model": "claude-*"}, role=Role.TEAM),
    Case("team-glob-opted-in", "globs", TEAM, body={"model": "claude-3-5-sonnet"}, role=Role.TEAM),
    Case(
        "team-model-outside-list",
        "spend",
        TEAM,
        body={"model": "o1"},
        expect=Reason.MODEL_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "team-management-route",
        "spend",
        TEAM,
        path="/key/generate",
        body={},
        expect=Reason.ROUTE_NOT_ALLOWED,
        status=403,
    ),
    # LiteLLM's default team_allowed_routes include /v1/messages and the MCP routes.
    Case(
        "team-anthropic-messages-default",
        "spend",
        TEAM,
        path="/v1/messages",
        body={"model": "gpt-4o"},
        role=Role.TEAM,
    ),
    Case("team-mcp-default", "spend", TEAM, path="/mcp/tools/list", method="GET", role=Role.TEAM),
    Case(
        "team-google-route-not-default",
        "spend",
        TEAM,
        path="/v1beta/models/gpt-4o:generateContent",
        expect=Reason.ROUTE_NOT_ALLOWED,
        status=403,
    ),
    Case("team-info-route", "spend", TEAM, path="/team/info", method="GET", role=Role.TEAM),
    Case(
        "team-blocked",
        "spend",
        TEAM,
        body={"model": "gpt-4o"},
        blocked_teams=frozenset({"my-unique-team"}),
        expect=Reason.TEAM_BLOCKED,
        status=403,
    ),
    Case(
        "other-team-blocked",
        "spend",
        TEAM,
        body={"model": "gpt-4o"},
        blocked_teams=frozenset({"another"}),
        role=Role.TEAM,
    ),
    Case(
        "end-user-blocked",
        "spend",
        TEAM,
        body={"model": "gpt-4o"},
        blocked_end_users=frozenset({"cust-1"}),
        expect=Reason.END_USER_BLOCKED,
        status=403,
    ),
    Case(
        "team-cut-body-with-model-list",
        "spend",
        TEAM,
        body=b'{"mo',
        cut=True,
        expect=Reason.BODY_CUT,
        status=413,
    ),
    # team_id_jwt_field set and no such claim: LiteLLM's "No team found in token".
    Case(
        "team-claim-missing-refused",
        "spend",
        {"sub": "u"},
        path="/v1/messages",
        body={"model": "x"},
        expect=Reason.NO_TEAM,
        status=403,
    ),
    Case(
        "team-claim-missing-default-team",
        "narrow",
        {"sub": "u"},
        path="/v1/embeddings",
        role=Role.TEAM,
    ),
    Case(
        "user-id-only-is-internal-user",
        "email",
        {"sub": "u", "email": "u@example.com"},
        path="/v1/messages",
        body={"model": "x"},
        role=Role.INTERNAL_USER,
    ),
    # x-litellm-team-id must name the token's own team (LiteLLM: 403 otherwise).
    Case(
        "team-header-own-team",
        "spend",
        TEAM,
        body={"model": "gpt-4o"},
        headers={"x-litellm-team-id": "my-unique-team"},
        role=Role.TEAM,
    ),
    Case(
        "team-header-other-team",
        "spend",
        TEAM,
        body={"model": "gpt-4o"},
        headers={"x-litellm-team-id": "someone-elses-team"},
        expect=Reason.TEAM_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "user-header-any-team",
        "email",
        {"sub": "u", "email": "u@example.com"},
        headers={"x-litellm-team-id": "t"},
        expect=Reason.TEAM_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "admin-header-ignored",
        "spend",
        ADMIN_LIST,
        path="/team/info",
        method="GET",
        headers={"x-litellm-team-id": "t"},
        role=Role.PROXY_ADMIN,
    ),
    Case("nothing-maps-to-a-role", "spend", {"foo": "bar"}, expect=Reason.NO_ROLE, status=403),
    Case(
        "master-key-everything",
        "spend",
        None,
        path="/global/spend/reset",
        body={},
        role=Role.PROXY_ADMIN,
    ),
    Case("master-key-any-model", "spend", None, body={"model": "anything"}, role=Role.PROXY_ADMIN),
    # email domain gating (non-admins)
    Case(
        "email-domain-ok",
        "email",
        {"sub": "a", "email": "a@example.com"},
        body={"model": "m"},
        role=Role.INTERNAL_USER,
    ),
    Case(
        "email-domain-case-insensitive",
        "email",
        {"sub": "a", "email": "a@EXAMPLE.COM"},
        body={"model": "m"},
        role=Role.INTERNAL_USER,
    ),
    Case(
        "email-second-domain",
        "email",
        {"sub": "a", "email": "a@corp.io"},
        body={"model": "m"},
        role=Role.INTERNAL_USER,
    ),
    Case(
        "email-subdomain-refused",
        "email",
        {"sub": "a", "email": "a@mail.example.com"},
        expect=Reason.EMAIL_DOMAIN_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "email-wrong-domain",
        "email",
        {"sub": "a", "email": "a@evil.com"},
        expect=Reason.EMAIL_DOMAIN_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "email-missing", "email", {"sub": "a"}, expect=Reason.EMAIL_DOMAIN_NOT_ALLOWED, status=403
    ),
    Case(
        "email-lookalike",
        "email",
        {"sub": "a", "email": "a@evil.com@example.com.x"},
        expect=Reason.EMAIL_DOMAIN_NOT_ALLOWED,
        status=403,
    ),
    # role_permissions.routes narrows the team's default routes
    Case(
        "narrowed-route-allowed",
        "narrow",
        {"client_id": "t"},
        path="/v1/embeddings",
        body={"model": "e"},
        role=Role.TEAM,
    ),
    Case(
        "narrowed-route-refused",
        "narrow",
        {"client_id": "t"},
        body={"model": "e"},
        expect=Reason.ROUTE_NOT_ALLOWED,
        status=403,
    ),
    Case(
        "team-id-default",
        "narrow",
        {"sub": "nobody"},
        path="/v1/models",
        method="GET",
        role=Role.TEAM,
    ),
]


def run(case: Case) -> Allow | Deny:
    policy = POLICIES[case.policy]
    if case.claims is None:
        identity: Identity | Deny = Identity(kind=MASTER_KEY)
    else:
        identity = identity_from_claims(case.claims, policy)
    assert isinstance(identity, Identity)
    if isinstance(case.body, bytes):
        body = case.body
    elif case.body is None:
        body = b""
    else:
        body = json.dumps(case.body).encode()
    headers = {"content-type": "application/json", **case.headers}
    request = RequestView(case.method, case.path, headers, body, case.cut)
    path, _, query = case.path.partition("?")
    state = StateSnapshot(case.blocked_teams, case.blocked_end_users)
    return decide(request, path, query, identity, policy, state)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    """Each row: the policy, the caller's claims and the request give this outcome."""
    decision = run(case)
    if case.expect is Reason.ALLOWED:
        assert isinstance(decision, Allow), decision
        assert decision.role == case.role
    else:
        assert isinstance(decision, Deny), decision
        assert (decision.reason, decision.status) == (case.expect, case.status)
        assert decision.message


def test_every_policy_deny_reason_has_a_row() -> None:
    """The table covers every reason the pure decision function can return."""
    decide_reasons = {
        Reason.NO_ROLE,
        Reason.NO_TEAM,
        Reason.TEAM_NOT_ALLOWED,
        Reason.ROUTE_NOT_ALLOWED,
        Reason.MODEL_NOT_ALLOWED,
        Reason.TEAM_BLOCKED,
        Reason.END_USER_BLOCKED,
        Reason.EMAIL_DOMAIN_NOT_ALLOWED,
        Reason.BAD_BODY,
        Reason.BODY_CUT,
    }
    assert decide_reasons <= {c.expect for c in CASES}


def test_team_allowed_model_message_names_the_allowed_models() -> None:
    """A model denial says which models the role may use, so the caller can fix it."""
    decision = run(Case("m", "spend", TEAM, body={"model": "o1"}))
    assert isinstance(decision, Deny)
    assert "gpt-4o" in decision.message and "claude-*" in decision.message


def test_identity_fields_are_read_from_claims() -> None:
    """Seed 002's fields become the identity attached for spend attribution."""
    identity = identity_from_claims({**TEAM, "email": "u@x.io"}, POLICIES["spend"])
    assert isinstance(identity, Identity)
    assert (identity.team_id, identity.user_id, identity.org_id, identity.end_user_id) == (
        "my-unique-team",
        "my-unique-user",
        "my-unique-org",
        "cust-1",
    )


def test_list_valued_team_id_takes_the_first() -> None:
    """LiteLLM resolves a list-valued team claim to its first element."""
    identity = identity_from_claims({"client_id": ["t1", "t2"]}, POLICIES["spend"])
    assert isinstance(identity, Identity) and identity.team_id == "t1"


@pytest.mark.parametrize("value", ["evil\r\nx-auth-user-role: proxy_admin", "a\x00b", "x" * 2000])
def test_claims_that_cannot_be_headers_are_refused(value: str) -> None:
    """A claim with CR/LF/NUL or absurd length is a 401, never forwarded."""
    result = identity_from_claims({"client_id": value}, POLICIES["spend"])
    assert isinstance(result, Deny) and result.status == 401


def test_admin_scope_wins_over_team() -> None:
    """Role order: admin scope before team id."""
    identity = identity_from_claims({**TEAM, "scope": "litellm-proxy-admin"}, POLICIES["spend"])
    assert isinstance(identity, Identity)
    assert resolve_role(identity, POLICIES["spend"]) is Role.PROXY_ADMIN


def test_client_id_is_not_a_team_unless_configured() -> None:
    """Without team_id_jwt_field a client_id claim makes no team (no default, as in LiteLLM's
    code): the internal_user's model list still applies."""
    claims = {"sub": "u", "client_id": "some-oauth-client"}
    decision = run(Case("c", "plain", claims, body={"model": "gpt-4o"}))
    assert isinstance(decision, Deny) and decision.reason is Reason.MODEL_NOT_ALLOWED
    assert decision.identity is not None and decision.identity.team_id is None
    allowed = run(Case("c", "plain", claims, body={"model": "anthropic-claude"}))
    assert isinstance(allowed, Allow) and allowed.role is Role.INTERNAL_USER


def test_admin_identity_carries_no_team() -> None:
    """LiteLLM's admin result has team_id None: no x-auth-team-id, no team block check."""
    admin = {**ADMIN_LIST, "client_id": "team-blocked"}
    decision = run(Case("a", "spend", admin, path="/team/info", method="GET"))
    assert isinstance(decision, Allow) and decision.role is Role.PROXY_ADMIN
    assert decision.identity.team_id is None
    blocked = Case(
        "a", "spend", admin, path="/team/info", method="GET",
        blocked_teams=frozenset({"team-blocked"}),
    )
    assert isinstance(run(blocked), Allow)


def test_star_in_models_warns_without_opt_in() -> None:
    """check-config says that "*" is literal unless extauthz.model_globs is set."""
    warned = compile_policy(parse_yaml(SPEND), ENV).warnings
    assert any("model_globs" in w and "claude-*" in w for w in warned)
    opted = compile_policy(parse_yaml(SPEND + "extauthz: {model_globs: true}\n"), ENV).warnings
    assert not any("model_globs" in w for w in opted)


def test_email_fallback_user_id_makes_no_internal_user() -> None:
    """LiteLLM's role reads the user id claim only: an id that is the email fallback is
    attributed (x-auth-user-id) but makes no internal_user (found by the differential test)."""
    policy = policy_of(
        "general_settings:\n  enable_jwt_auth: true\n  litellm_jwtauth:\n"
        "    user_email_jwt_field: email\n"
    )
    identity = identity_from_claims({"email": "a@example.com"}, policy)
    assert isinstance(identity, Identity) and identity.user_id == "a@example.com"
    assert resolve_role(identity, policy) is None
    with_claim = identity_from_claims({"email": "a@example.com", "sub": "a"}, POLICIES["email"])
    assert isinstance(with_claim, Identity)
    assert resolve_role(with_claim, POLICIES["email"]) is Role.INTERNAL_USER

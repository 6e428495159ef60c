"""Role and scope mappings through a real Envoy (the shipped envoy.yaml): an Entra-shaped token
whose app role makes it a team named by its object id, and Okta-shaped tokens whose scopes grant
models and whose group makes a proxy admin (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.harness import IDENTITY_HEADERS, LoopThread, Reply, Stack, start_stack

pytestmark = pytest.mark.envoy

ENTRA_JWTAUTH = {
    "roles_jwt_field": "roles",
    "role_mappings": [
        {"role": "litellm.api.consumer", "internal_role": "team"},
        {"role": "litellm.api.user", "internal_role": "internal_user"},
    ],
    "object_id_jwt_field": "oid",
    "enforce_rbac": True,
}
OKTA_JWTAUTH = {
    "user_id_jwt_field": "sub",
    "roles_jwt_field": "groups",
    "jwt_litellm_role_map": [{"jwt_role": "litellm-admins-*", "litellm_role": "proxy_admin"}],
    "sync_user_role_and_teams": True,
    "scope_mappings": [
        {"scope": "litellm.models.mini", "models": ["gpt-4o-mini"]},
        {"scope": "litellm.models.claude", "models": ["claude-sonnet"]},
    ],
    "enforce_scope_based_access": True,
}
ENTRA_CONSUMER = {
    "oid": "6e1a2b3c-consumer",
    "roles": ["litellm.api.consumer"],
    "azp": "4f5e6d7c-app",
    "tid": "72f988bf-tenant",
    "sub": "pairwise-subject",
}


def with_jwtauth(jwtauth: dict[str, Any], team_models: list[str]) -> Any:
    def change(policy: dict[str, Any]) -> dict[str, Any]:
        general = policy["general_settings"]
        general["litellm_jwtauth"] = jwtauth
        general["role_permissions"] = [{"role": "team", "models": team_models}]
        policy["extauthz"].pop("missing_team_claim", None)
        return policy

    return change


@pytest.fixture(scope="module")
def entra(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(
        loop_thread,
        tmp_path_factory.mktemp("entra"),
        key,
        policy=with_jwtauth(ENTRA_JWTAUTH, ["gpt-4o-mini"]),
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def okta(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(
        loop_thread, tmp_path_factory.mktemp("okta"), key, policy=with_jwtauth(OKTA_JWTAUTH, [])
    )
    yield s
    s.close()


def identity_seen(reply: Reply) -> dict[str, str]:
    assert reply.status == 200, str(reply)
    headers: dict[str, str] = reply.json()["headers"]
    return {h: headers[h] for h in IDENTITY_HEADERS if h in headers}


def assert_deny(reply: Reply, status: int, reason: str, needle: str) -> None:
    assert (reply.status, reply.reason) == (status, reason), str(reply)
    assert needle in reply.json()["error"]["message"], str(reply)


def test_entra_app_role_is_a_team_named_by_its_object_id(entra: Stack) -> None:
    reply = entra.call(token=entra.token(ENTRA_CONSUMER), model="gpt-4o-mini")
    assert identity_seen(reply) == {
        "x-auth-team-id": "6e1a2b3c-consumer",
        "x-auth-user-role": "team",
    }


def test_entra_team_is_held_to_its_models_and_its_team(entra: Stack) -> None:
    token = entra.token(ENTRA_CONSUMER)
    assert_deny(entra.call(token=token, model="gpt-4o"), 403, "model_not_allowed", "gpt-4o")
    other_team = [("x-litellm-team-id", "someone-elses-team")]
    assert_deny(
        entra.call(token=token, model="gpt-4o-mini", headers=other_team),
        403,
        "team_not_allowed",
        "someone-elses-team",
    )


def test_entra_user_role_is_a_user_named_by_its_object_id(entra: Stack) -> None:
    claims = {"oid": "9a8b-user", "roles": ["litellm.api.user"]}
    seen = identity_seen(entra.call(token=entra.token(claims), model="gpt-4o"))
    assert seen == {"x-auth-user-id": "9a8b-user", "x-auth-user-role": "internal_user"}


def test_entra_unmapped_role_and_malformed_claims_are_refused(entra: Stack) -> None:
    unmapped = entra.token({"oid": "x", "roles": ["Directory.Read.All"]})
    assert_deny(entra.call(token=unmapped, model="gpt-4o-mini"), 403, "no_role", "no role")
    nested = entra.token({"oid": "x", "roles": [{"value": "litellm.api.consumer"}]})
    assert_deny(
        entra.call(token=nested, model="gpt-4o-mini"), 401, "malformed_token", "roles_jwt_field"
    )
    listed_oid = entra.token({"oid": ["a", "b"], "roles": ["litellm.api.consumer"]})
    assert_deny(
        entra.call(token=listed_oid, model="gpt-4o-mini"),
        401,
        "malformed_token",
        "object_id_jwt_field",
    )


def test_okta_scope_grants_its_model(okta: Stack) -> None:
    token = okta.token({"sub": "00u1abc", "scp": ["openid", "litellm.models.mini"]})
    seen = identity_seen(okta.call(token=token, model="gpt-4o-mini"))
    assert seen == {"x-auth-user-id": "00u1abc", "x-auth-user-role": "internal_user"}


def test_okta_scope_refuses_other_models(okta: Stack) -> None:
    token = okta.token({"sub": "00u1abc", "scp": ["openid", "litellm.models.mini"]})
    assert_deny(
        okta.call(token=token, model="claude-sonnet"),
        403,
        "model_not_allowed",
        "litellm.models.mini",
    )
    bare = okta.token({"sub": "00u2def", "scp": ["openid"]})
    assert_deny(okta.call(token=bare, model="gpt-4o-mini"), 403, "model_not_allowed", "scope")


def test_okta_admin_group_is_a_proxy_admin_member_is_not(okta: Stack) -> None:
    """LiteLLM's management routes (served upstream): the synced proxy_admin passes."""
    admin = okta.token({"sub": "00u9adm", "groups": ["Everyone", "litellm-admins-prod"]})
    reply = okta.call("/key/generate", token=admin, body=b"{}")
    assert identity_seen(reply)["x-auth-user-role"] == "proxy_admin"
    member = okta.token({"sub": "00u3mem", "groups": ["Everyone"]})
    assert_deny(
        okta.call("/key/generate", token=member, body=b"{}"),
        403,
        "route_not_allowed",
        "/key/generate",
    )


def test_the_sidecars_admin_api_wants_the_admin_scope(okta: Stack) -> None:
    """The sidecar's own admin API (blocking) takes only the master key or the admin scope."""
    admin = okta.token({"sub": "00u9adm", "groups": ["litellm-admins-prod"]})
    reply = okta.call("/team/list", token=admin, method="GET", content_type=None)
    assert (reply.status, reply.reason) == (403, "not_admin"), str(reply)

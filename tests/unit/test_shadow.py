"""Shadow mode and ``metadata_on_deny`` in the responder, the one place a decision becomes an
answer: both adapters' encoders, the metric, the decision log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from google.protobuf import json_format

from extauthz import metrics
from extauthz.config.loader import compile_policy
from extauthz.envoy.grpc_service import to_check_response
from extauthz.envoy.http_service import INTERNAL_DENY, encode_verdict
from extauthz.envoy.responder import Responder
from extauthz.identity.credentials import CREDENTIAL_HEADERS
from extauthz.model import Allow, Decision, Deny, Identity, Reason, RequestView, Role
from extauthz.policy.compiled import Policy
from tests.integration.harness import IDENTITY_HEADERS

VIEW = RequestView("POST", "/v1/chat/completions", {"x-request-id": "rid-1"})
FORBIDDEN = Deny(
    403,
    Reason.MODEL_NOT_ALLOWED,
    "model 'gpt-4o' is not allowed for role team",
    identity=Identity("jwt", user_id="alice", team_id="team-a"),
    role=Role.TEAM,
)
UNAUTHENTICATED = Deny(401, Reason.BAD_SIGNATURE, "token signature does not verify")


class FixedAuthorizer:
    def __init__(self, policy: Policy, decision: Decision | None) -> None:
        self.policy = policy
        self.decision = decision

    async def authorize(self, request: RequestView) -> Decision:
        if self.decision is None:
            raise RuntimeError("boom")
        return self.decision


async def grpc_answer(decision: Decision | None, **policy: Any) -> dict[str, Any]:
    responder = Responder(FixedAuthorizer(Policy(**policy), decision), to_check_response, None)
    response = await responder.respond(VIEW)
    assert response is not None, "the responder failed"
    out: dict[str, Any] = json_format.MessageToDict(response)
    return out


def ok_headers(out: dict[str, Any]) -> dict[str, str]:
    return {h["header"]["key"]: h["header"]["value"] for h in out["okResponse"].get("headers", [])}


def count(labels: tuple[str, str, str]) -> int:
    return metrics.CHECKS.decisions.get(labels, 0)


async def test_off_by_default_a_deny_is_a_deny() -> None:
    assert compile_policy({}, {}).policy.shadow_mode is False
    out = await grpc_answer(FORBIDDEN)
    assert out["deniedResponse"]["status"]["code"] == "Forbidden"
    assert out["dynamicMetadata"]["decision"] == "deny"


async def test_a_forbidden_caller_is_allowed_as_a_would_deny_with_its_verified_identity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = count(("would_deny", "model_not_allowed", "403"))
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        out = await grpc_answer(FORBIDDEN, shadow_mode=True)
    assert out["status"] == {}  # code 0: OK
    assert "deniedResponse" not in out
    assert out["dynamicMetadata"] == {
        "decision": "would_deny",
        "reason": "model_not_allowed",
        "user_id": "alice",
        "team_id": "team-a",
        "role": "team",
    }
    headers = ok_headers(out)
    assert headers == {
        "x-auth-user-id": "alice",
        "x-auth-team-id": "team-a",
        "x-auth-user-role": "team",
    }
    removed = set(out["okResponse"]["headersToRemove"])
    assert set(CREDENTIAL_HEADERS) <= removed  # the caller's token does not reach the upstream
    assert {"x-auth-org-id", "x-auth-end-user-id", "x-auth-user-email"} <= removed
    assert count(("would_deny", "model_not_allowed", "403")) == before + 1
    lines = [r for r in caplog.records if r.name == "extauthz.decision"]
    assert [r.getMessage() for r in lines] == ["would_deny"]
    assert lines[0].status == 403  # type: ignore[attr-defined]
    assert lines[0].reason == "model_not_allowed"  # type: ignore[attr-defined]


async def test_an_unauthenticated_caller_gets_no_identity_and_loses_spoofed_ones() -> None:
    out = await grpc_answer(UNAUTHENTICATED, shadow_mode=True)
    assert out["status"] == {}
    assert ok_headers(out) == {}  # nothing set: there is no verified identity to forward
    removed = out["okResponse"]["headersToRemove"]
    assert set(IDENTITY_HEADERS) <= set(removed)  # a client-sent x-auth-* never passes
    assert set(CREDENTIAL_HEADERS) <= set(removed)
    assert out["dynamicMetadata"] == {"decision": "would_deny", "reason": "bad_signature"}


async def test_credentials_stay_only_where_an_allow_would_keep_them() -> None:
    out = await grpc_answer(UNAUTHENTICATED, shadow_mode=True, remove_credential_headers=False)
    removed = set(out["okResponse"]["headersToRemove"])
    assert set(IDENTITY_HEADERS) <= removed
    assert not removed & set(CREDENTIAL_HEADERS)


async def test_allows_are_untouched_by_shadow_mode() -> None:
    allow = Allow(Identity("jwt", user_id="bob"), Role.INTERNAL_USER, "claude")
    assert await grpc_answer(allow, shadow_mode=True) == await grpc_answer(allow)


async def test_an_internal_failure_still_fails_closed_in_shadow_mode() -> None:
    responder = Responder(
        FixedAuthorizer(Policy(shadow_mode=True), None), encode_verdict, INTERNAL_DENY
    )
    assert await responder.respond(VIEW) is INTERNAL_DENY


async def test_http_mode_would_deny_is_a_200_with_removals_and_metadata_headers() -> None:
    responder = Responder(
        FixedAuthorizer(Policy(shadow_mode=True), UNAUTHENTICATED), encode_verdict, INTERNAL_DENY
    )
    wire = (await responder.respond(VIEW)).data.decode()
    assert wire.startswith("HTTP/1.1 200")
    assert "\r\ndecision: would_deny\r\n" in wire
    assert "x-auth-user-id" in wire.split("x-envoy-auth-headers-to-remove: ")[1].split("\r\n")[0]


@pytest.mark.parametrize("decision", [FORBIDDEN, UNAUTHENTICATED])
async def test_metadata_on_deny_false_leaves_metadata_off_denials(decision: Deny) -> None:
    out = await grpc_answer(decision, metadata_on_deny=False)
    assert "dynamicMetadata" not in out
    assert out["deniedResponse"]["status"]["code"] in ("Forbidden", "Unauthorized")
    responder = Responder(
        FixedAuthorizer(Policy(metadata_on_deny=False), decision), encode_verdict, INTERNAL_DENY
    )
    head = (await responder.respond(VIEW)).head.decode().lower()
    assert "x-extauthz-reason:" in head  # the client-facing headers stay
    for key in ("decision:", "reason:", "user_id:", "team_id:"):
        assert f"\r\n{key}" not in head
    # and the default keeps them (gRPC metadata never reaches a client)
    assert (await grpc_answer(decision))["dynamicMetadata"]["decision"] == "deny"


def test_the_settings_are_strict_booleans() -> None:
    loaded = compile_policy({"extauthz": {"shadow_mode": True, "metadata_on_deny": False}}, {})
    assert (loaded.policy.shadow_mode, loaded.policy.metadata_on_deny) == (True, False)
    with pytest.raises(Exception, match="shadow_mode"):
        compile_policy({"extauthz": {"shadow_mode": "yes"}}, {})

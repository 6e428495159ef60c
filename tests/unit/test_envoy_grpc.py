"""The gRPC adapter: real CheckRequest/CheckResponse protobufs in and out."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import json_format

from extauthz.envoy.grpc_service import (
    AuthorizationService,
    add_authorization_to_server,
    to_check_response,
    to_request_view,
)
from extauthz.model import Allow, Deny, Identity, Reason, RequestView, Role
from extauthz.policy.compiled import Policy
from extauthz.policy.verdict import render


def check_request(
    headers: dict[str, str],
    path: str = "/v1/chat/completions",
    body: bytes = b"",
    method: str = "POST",
) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=method, path=path, headers=headers, raw_body=body, id="envoy-id"
    )
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def check(service: AuthorizationService, request: external_auth_pb2.CheckRequest) -> Any:
    """``Check``'s answer as Envoy reads it (Check answers the serialised CheckResponse)."""
    return external_auth_pb2.CheckResponse.FromString(service.Check(request, None))


def test_request_view_reads_what_envoy_sends() -> None:
    """Method, raw path with query, headers, raw_body, partial-body flag and request id."""
    view = to_request_view(
        check_request(
            {"x-request-id": "rid", "x-envoy-auth-partial-body": "true"},
            path="/v1/x?y=1",
            body=b"\xff\x00",
        )
    )
    assert view == RequestView(
        "POST",
        "/v1/x?y=1",
        {"x-request-id": "rid", "x-envoy-auth-partial-body": "true"},
        b"\xff\x00",
        True,
        "rid",
    )


def test_request_view_of_an_empty_check_request() -> None:
    """An empty CheckRequest converts without error (and will be refused later)."""
    view = to_request_view(external_auth_pb2.CheckRequest())
    assert (view.method, view.path, view.body) == ("", "", b"")


def test_allow_response_sets_and_removes_headers_with_overwrite() -> None:
    """OK status, identity headers with OVERWRITE_IF_EXISTS_OR_ADD, removals, metadata."""
    verdict = render(
        Allow(Identity("jwt", user_id="u", team_id="t"), Role.TEAM, "gpt-4o"), Policy()
    )
    resp = to_check_response(verdict)
    out: dict[str, Any] = json_format.MessageToDict(resp)
    assert resp.status.code == 0
    headers = {h["header"]["key"]: h for h in out["okResponse"]["headers"]}
    assert headers["x-auth-team-id"]["header"]["value"] == "t"
    assert headers["x-auth-team-id"]["appendAction"] == "OVERWRITE_IF_EXISTS_OR_ADD"
    assert "authorization" in out["okResponse"]["headersToRemove"]
    assert out["dynamicMetadata"] == {
        "decision": "allow",
        "user_id": "u",
        "team_id": "t",
        "role": "team",
        "model": "gpt-4o",
    }


def test_deny_response_carries_status_body_and_headers() -> None:
    """A deny carries the HTTP status, the JSON error and the reason header."""
    resp = to_check_response(render(Deny(403, Reason.MODEL_NOT_ALLOWED, "no"), Policy()))
    assert resp.status.code == 7  # PERMISSION_DENIED
    assert resp.denied_response.status.code == 403
    assert json.loads(resp.denied_response.body) == {
        "error": {"message": "no", "type": "auth_error", "code": "403"}
    }
    keys = {h.header.key: h.header.value for h in resp.denied_response.headers}
    assert keys["x-extauthz-reason"] == "model_not_allowed"


class FixedAuthorizer:
    """``decide_now`` answers ``now``; a pending step is finished on the loop with ``later``."""

    policy = Policy()
    check_timeout = 0.2

    def __init__(self, now: Any, later: Any = None) -> None:
        self.now, self.later = now, later
        self.finished_on: list[threading.Thread] = []

    async def authorize(self, view: RequestView) -> Any:
        step = self.decide_now(view)
        return await self.finish(view, step) if step is PENDING else step

    def decide_now(self, _view: RequestView) -> Any:
        if isinstance(self.now, Exception):
            raise self.now
        return self.now

    async def finish(self, _view: RequestView, step: object) -> Any:
        self.finished_on.append(threading.current_thread())
        if isinstance(self.later, Exception):
            raise self.later
        if self.later == "hang":
            await asyncio.sleep(60)
        return self.later


PENDING = object()


class ExplodingAuthorizer(FixedAuthorizer):
    def __init__(self) -> None:
        super().__init__(RuntimeError("boom"))



def test_check_never_raises() -> None:
    """Even if the authorizer itself raises, Check answers a 500 deny (fail closed)."""
    service = AuthorizationService(ExplodingAuthorizer())
    resp = check(service, check_request({}))
    assert resp.denied_response.status.code == 500
    assert resp.status.code != 0


def test_check_round_trip() -> None:
    """A Check with a fixed decision returns exactly that decision's response."""
    service = AuthorizationService(FixedAuthorizer(Deny(401, Reason.TOKEN_EXPIRED, "expired")))
    resp = check(service, check_request({}))
    assert resp.denied_response.status.code == 401 and resp.status.code == 16


def test_allow_responses_are_reused_and_match_a_fresh_render() -> None:
    """The cached allow answer equals a freshly built one; a policy change starts a new cache."""
    decision = Allow(Identity("jwt", user_id="u", team_id="t"), Role.TEAM, "gpt-4o")
    authorizer = FixedAuthorizer(decision)
    service = AuthorizationService(authorizer)
    first = service.Check(check_request({}), None)
    second = service.Check(check_request({}), None)
    assert first is second
    fresh = to_check_response(render(decision, authorizer.policy))
    assert external_auth_pb2.CheckResponse.FromString(first) == fresh
    authorizer.policy = Policy()
    third = service.Check(check_request({}), None)
    assert third is not first and third == first


def test_each_check_is_counted_with_its_outcome() -> None:
    """The served counters move with every answer, allow and deny alike."""
    from extauthz.metrics import CHECKS

    deny = ("deny", Reason.TOKEN_EXPIRED.value, "401")
    allow = ("allow", Reason.ALLOWED.value, "200")
    before = (CHECKS.decisions.get(deny, 0), CHECKS.decisions.get(allow, 0), sum(CHECKS.counts))
    denier = AuthorizationService(FixedAuthorizer(Deny(401, Reason.TOKEN_EXPIRED, "expired")))
    allower = AuthorizationService(FixedAuthorizer(Allow(Identity("jwt", user_id="u"), Role.TEAM)))
    denier.Check(check_request({}), None)
    allower.Check(check_request({}), None)
    allower.Check(check_request({}), None)
    after = (CHECKS.decisions.get(deny, 0), CHECKS.decisions.get(allow, 0), sum(CHECKS.counts))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 2, 3]


def test_a_check_that_must_wait_is_finished_on_the_event_loop(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A pending step (key refetch, large body) runs its rest on the loop's thread."""
    decision = Deny(401, Reason.UNKNOWN_KEY, "unknown key")
    authorizer = FixedAuthorizer(PENDING, decision)
    resp = check(AuthorizationService(authorizer, loop), check_request({}))
    assert resp.denied_response.status.code == 401
    assert authorizer.finished_on and authorizer.finished_on[0] is not threading.current_thread()


@pytest.mark.parametrize("later", [RuntimeError("boom"), "hang"])
def test_a_waiting_check_that_fails_or_hangs_is_refused_not_raised(
    loop: asyncio.AbstractEventLoop, later: Any
) -> None:
    """The loop's half raising, or not answering within the deadline (+ margin): a 500 deny."""
    service = AuthorizationService(FixedAuthorizer(PENDING, later), loop)
    resp = check(service, check_request({}))
    assert resp.status.code != 0 and resp.denied_response.status.code == 500


def test_a_waiting_check_without_a_loop_is_refused() -> None:
    resp = check(AuthorizationService(FixedAuthorizer(PENDING)), check_request({}))
    assert resp.status.code != 0 and resp.denied_response.status.code == 500


def test_a_served_check_reaches_the_client_as_a_check_response() -> None:
    """Registered as the sidecar does it: the answer's bytes go on the wire unchanged and the
    generated client stub reads them as the CheckResponse a fresh render gives."""
    decision = Allow(Identity("jwt", user_id="u", team_id="t"), Role.TEAM, "gpt-4o")
    authorizer = FixedAuthorizer(decision)
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    add_authorization_to_server(AuthorizationService(authorizer), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            answer = stub.Check(check_request({}), timeout=5)
    finally:
        server.stop(None)
    assert answer == to_check_response(render(decision, authorizer.policy))

"""The core's decision table through both adapters: gRPC Check and the HTTP service agree.

Each row of ``tests/unit/test_decide.py`` (plus the pipeline's own outcomes: missing, bad,
expired, unknown-key tokens, odd paths, a crashing core) goes through one ``Authorizer``
twice: as a CheckRequest to ``AuthorizationService.Check``, and as raw HTTP to a running
``AuthzHttpServer``. Both answers are read the way Envoy reads them (the HTTP one through the
header lists of the shipped ``envoy-http.yaml``) and must be equal: allow or deny, status,
upstream or client headers, removals, dynamic metadata and body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format

from extauthz.authorizer import Authorizer, StateView
from extauthz.envoy.grpc_service import AuthorizationService
from extauthz.envoy.http_service import AuthzHttpServer
from extauthz.identity.jwks import JwksSource
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import Reason, RequestView
from extauthz.policy.compiled import Policy
from extauthz.state.protocol import StateSnapshot
from tests.httpmode.client import Conn, ShippedLists, check_request
from tests.integration.harness import LoopThread, Reply
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk
from tests.unit.test_decide import CASES, POLICIES, Case
from tests.unit.test_envoy_grpc import check_request as grpc_check_request

LISTS = ShippedLists()


@dataclass
class Answer:
    """What Envoy makes of an answer, whichever protocol carried it."""

    allowed: bool
    status: int
    headers: dict[str, str]  # allow: set upstream; deny: sent to the client
    remove: list[str]
    metadata: dict[str, Any]
    body: Any = None


def from_grpc(raw: bytes) -> Answer:
    resp = external_auth_pb2.CheckResponse.FromString(raw)  # Check answers the wire bytes
    metadata = json_format.MessageToDict(resp.dynamic_metadata)
    if resp.status.code == 0:
        ok = resp.ok_response
        headers = {h.header.key: h.header.value for h in ok.headers}
        return Answer(True, 200, headers, list(ok.headers_to_remove), metadata)
    denied = resp.denied_response
    headers = {h.header.key: h.header.value for h in denied.headers}
    return Answer(False, denied.status.code, headers, [], metadata, json.loads(denied.body))


def from_http(reply: Reply) -> Answer:
    metadata = {k: v for k, v in reply.headers.items() if k in LISTS.metadata}
    if reply.status == 200:
        headers = {k: v for k, v in reply.headers.items() if k in LISTS.upstream}
        removal = reply.headers.get("x-envoy-auth-headers-to-remove", "")
        remove = [h.strip() for h in removal.split(",") if h.strip()]
        assert reply.body == b""
        return Answer(True, 200, headers, remove, metadata)
    headers = {k: v for k, v in reply.headers.items() if k in LISTS.client}
    return Answer(False, reply.status, headers, [], metadata, json.loads(reply.body))


@dataclass(frozen=True)
class Row:
    """One check: a request (headers without credential) and the credential to present."""

    id: str
    policy: str
    path: str = "/v1/chat/completions"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    cut: bool = False
    token: str | None = None
    blocked: StateSnapshot = field(default_factory=StateSnapshot)
    expect: Reason = Reason.ALLOWED


def _body(case: Case) -> bytes:
    if isinstance(case.body, bytes):
        return case.body
    return b"" if case.body is None else json.dumps(case.body).encode()


def row_of(case: Case) -> Row:
    """A decision-table case as a check carrying a real signed token (or the master key)."""
    policy = POLICIES[case.policy]
    token = rs_token(case.claims) if case.claims is not None else policy.master_key
    return Row(
        id=case.id,
        policy=case.policy,
        path=case.path,
        method=case.method,
        headers={"content-type": "application/json", **case.headers},
        body=_body(case),
        cut=case.cut,
        token=token,
        blocked=StateSnapshot(case.blocked_teams, case.blocked_end_users),
        expect=case.expect,
    )


JSON = {"content-type": "application/json"}
CHAT = json.dumps({"model": "anthropic-claude"}).encode()
_KID = rsa_jwk()["kid"]


def chat(
    policy: str, id: str, token: str | None, expect: Reason = Reason.ALLOWED, **kw: Any
) -> Row:
    """A chat completion check with a JSON body."""
    kw.setdefault("body", CHAT)
    return Row(id, policy, headers=JSON, token=token, expect=expect, **kw)


GPT4O = b'{"model": "gpt-4o"}'
INJECT = "t\r\nx-auth-user-role: proxy_admin"
PIPELINE_ROWS = [
    chat("azure", "no-credential", None, Reason.MISSING_CREDENTIAL),
    chat("spend", "not-a-key", "sk-nope", Reason.INVALID_API_KEY),
    chat("azure", "garbage-jwt", "a.b.c", Reason.MALFORMED_TOKEN),
    chat("azure", "expired", rs_token({"sub": "x"}, now=NOW - 7200), Reason.TOKEN_EXPIRED),
    chat("azure", "bad-signature", rs_token({"sub": "x"}, "b", kid=_KID), Reason.BAD_SIGNATURE),
    chat("azure", "unknown-kid", rs_token({"sub": "x"}, "c", kid="nope"), Reason.UNKNOWN_KEY),
    chat("spend", "claim-with-crlf", rs_token({"client_id": INJECT}), Reason.MALFORMED_TOKEN),
    chat("azure", "dot-dot", rs_token({"sub": "x"}), Reason.BAD_PATH, path="/v1/%2e%2e/x"),
    chat(
        "spend", "query", rs_token({"client_id": "t"}), body=GPT4O, path="/v1/chat/completions?v=1"
    ),
    chat(
        "spend",
        "non-ascii",
        rs_token({"client_id": "\u00e9q-\u6a21", "sub": "jos\u00e9"}),
        body=GPT4O,
    ),
    Row("head", "spend", method="HEAD", path="/v1/models", token=rs_token({"client_id": "t"})),
]
ROWS = [row_of(c) for c in CASES] + PIPELINE_ROWS


@pytest.fixture(scope="module")
def adapters(loop_thread: LoopThread) -> Iterator[dict[str, Any]]:
    """One Authorizer per policy, each served by both adapters (HTTP on a free port)."""

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    async def build(policy: Policy) -> tuple[Authorizer, AuthorizationService, AuthzHttpServer]:
        source = JwksSource(("u",), fetch=fetch, refetch_interval=0.0)
        await source.refresh()
        verifier = TokenVerifier(source, policy.token_rules, clock=lambda: NOW)
        authorizer = Authorizer(policy, verifier, StateView())
        server = AuthzHttpServer(authorizer)
        await server.start("127.0.0.1", 0)
        # Check is called from the test's thread, as from the gRPC server's: the loop is
        # the sidecar's, for checks that must wait.
        return authorizer, AuthorizationService(authorizer, loop_thread.loop), server

    built = {name: loop_thread.run(build(p)) for name, p in POLICIES.items()}
    yield built
    for _a, _g, server in built.values():
        loop_thread.run(server.close(0))


def _headers(row: Row) -> dict[str, str]:
    headers = dict(row.headers)
    if row.token is not None:
        headers["authorization"] = f"Bearer {row.token}"
    headers["x-request-id"] = f"rid-{row.id}"
    if row.body or row.cut:
        headers["x-envoy-auth-partial-body"] = "true" if row.cut else "false"
    return headers


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_both_adapters_answer_alike(
    row: Row, adapters: dict[str, Any], loop_thread: LoopThread
) -> None:
    """gRPC and HTTP mode give the same answer, and it is the table's decision."""
    authorizer, grpc_service, server = adapters[row.policy]
    authorizer.state.current = row.blocked
    headers = _headers(row)
    grpc = from_grpc(
        grpc_service.Check(grpc_check_request(headers, row.path, row.body, row.method), None)
    )
    with Conn(server.port) as conn:
        conn.send(check_request(row.method, row.path, headers.items(), row.body))
        reply = conn.read_head() if row.method == "HEAD" else conn.read()
    assert reply is not None
    if isinstance(reply, tuple):  # HEAD: no body follows, whatever Content-Length says
        reply = Reply(reply[0], reply[1], b"")
    http = from_http(reply)
    if row.method == "HEAD" and not http.allowed:
        http.body = grpc.body
    assert http == grpc
    if row.expect is Reason.ALLOWED:
        assert http.allowed, http
    else:
        assert http.metadata["reason"] == row.expect.value, http


def test_rows_cover_every_status_the_core_returns() -> None:
    """Allow, 400, 401, 403 and 413 all go through both adapters here (500: next test)."""
    statuses = {200 if r.expect is Reason.ALLOWED else 0 for r in ROWS}
    assert 200 in statuses
    reasons = {r.expect for r in ROWS}
    assert {Reason.BAD_BODY, Reason.BAD_PATH, Reason.BODY_CUT, Reason.TOKEN_EXPIRED} <= reasons
    assert {Reason.MODEL_NOT_ALLOWED, Reason.ROUTE_NOT_ALLOWED, Reason.UNKNOWN_KEY} <= reasons


class Exploding:
    """An authorizer whose core crashes (Authorizer itself never raises; this proves the guard)."""

    policy = Policy()
    check_timeout = 0.1

    async def authorize(self, _view: RequestView) -> Any:
        raise RuntimeError("boom")

    def decide_now(self, _view: RequestView) -> Any:
        raise RuntimeError("boom")

    async def finish(self, _view: RequestView, _step: object) -> Any:
        raise RuntimeError("boom")


def test_internal_errors_answer_alike(loop_thread: LoopThread) -> None:
    """A crash inside the core is the same fixed 500 deny through both adapters."""
    service = AuthorizationService(Exploding())
    grpc = from_grpc(service.Check(grpc_check_request({}), None))
    server = AuthzHttpServer(Exploding())
    loop_thread.run(server.start("127.0.0.1", 0))
    try:
        with Conn(server.port) as conn:
            conn.send(check_request())
            reply = conn.read()
    finally:
        loop_thread.run(server.close(0))
    assert reply is not None
    assert from_http(reply) == grpc
    assert grpc.status == 500

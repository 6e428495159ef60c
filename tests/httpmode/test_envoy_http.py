"""A real Envoy running the shipped envoy-http.yaml, checking with the sidecar in HTTP mode.

The integration harness's stack (IdP, sidecar, echo upstream) with the HTTP-mode server on the
sidecar's authorizer, and the same callers and expectations as the gRPC-mode flow tests:
identity headers upstream, spoofed copies removed, every deny status with its JSON body,
cut bodies, and the dynamic metadata keys of gRPC mode in Envoy's access log.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.dev.envoyconf import (
    EnvoyPorts,
    EnvoyProcess,
    load_config,
    render_envoy_config,
    validate,
    write_config,
)
from extauthz.envoy.http_service import AuthzHttpServer, start_authz_http
from extauthz.identity.credentials import CREDENTIAL_HEADERS
from extauthz.model import Decision, Deny, Reason, RequestView
from extauthz.policy.compiled import HeaderNames
from tests.httpmode.client import ENVOY_HTTP_YAML, ShippedLists, shipped_ext_authz
from tests.integration.harness import IDENTITY_HEADERS, LoopThread, Stack, start_stack
from tests.integration.test_envoy_flow import (
    ADMIN,
    ALICE,
    ALLOWED_IDENTITIES,
    ALLOWED_IDS,
    BOB,
    ENCODED_ADMIN_IDS,
    ENCODED_ADMIN_PATHS,
    NO_ROLE,
    SPOOFED,
    TEAM,
    UNAUTHENTICATED,
    assert_deny,
    check_encoded_admin_path,
    echoed,
)

pytestmark = pytest.mark.envoy

MAX_BODY = 64 * 1024  # a small with_request_body limit so cut bodies stay small here
FORCE_503 = "force-503"
METADATA_KEYS = (
    "user_id",
    "team_id",
    "team_source",
    "org_id",
    "end_user_id",
    "role",
    "model",
    "decision",
    "reason",
)


class Forcing:
    """The sidecar's authorizer, except that request id ``force-503`` gets a 503 deny (as when
    signing keys were never obtainable), to see what Envoy makes of a 5xx in HTTP mode."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def policy(self) -> Any:
        return self.inner.policy

    async def authorize(self, view: RequestView) -> Decision:
        if view.request_id == FORCE_503:
            return Deny(503, Reason.KEYS_UNAVAILABLE, "keys unavailable")
        decision: Decision = await self.inner.authorize(view)
        return decision


class HttpStack:
    """The harness stack, the HTTP-mode server, and Envoy from envoy-http.yaml."""

    def __init__(self, stack: Stack, server: AuthzHttpServer, envoy: EnvoyProcess) -> None:
        self.stack = stack
        self.server = server
        self.envoy = envoy

    def call(self, *args: Any, **kw: Any) -> Any:
        return self.stack.call(*args, **kw)


def render_http_config(
    authz_port: int, admin_api_port: int, upstream_port: int, access_log: Path
) -> dict[str, Any]:
    """envoy-http.yaml with free ports, a small body limit and a JSON access log."""
    fields = {"status": "%RESPONSE_CODE%", "test_id": "%REQ(X-TEST-ID)%"}
    for key in METADATA_KEYS:
        fields[key] = f"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:{key})%"
    config = render_envoy_config(
        load_config(ENVOY_HTTP_YAML),
        EnvoyPorts(0, 0, authz_port, admin_api_port, upstream_port),
        max_request_bytes=MAX_BODY,
        access_log_path=str(access_log),
        access_log_fields=fields,
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    for f in hcm["typed_config"]["http_filters"]:
        if f["name"] == "envoy.filters.http.ext_authz":
            f["typed_config"]["http_service"]["server_uri"]["uri"] = (
                f"http://127.0.0.1:{authz_port}"
            )
    return config


@pytest.fixture(scope="module")
def hs(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpStack]:
    workdir = tmp_path_factory.mktemp("httpmode")
    stack = start_stack(loop_thread, workdir, key, envoy=False)
    server = loop_thread.run(start_authz_http(Forcing(stack.sidecar.authorizer), "127.0.0.1", 0))
    access_log = workdir / "access.jsonl"
    config = render_http_config(server.port, stack.http_port, stack.upstream_port, access_log)
    envoy = EnvoyProcess(config, workdir, extra_args=["--file-flush-interval-msec", "50"])
    try:
        envoy.start()
        envoy.wait_ready()
        stack.envoy = envoy
        stack.access_log = access_log
        yield HttpStack(stack, server, envoy)
    finally:
        envoy.stop()
        stack.envoy = None
        loop_thread.run(server.close(0.5))
        stack.close()


# -- the shipped file ---------------------------------------------------------------------------


def test_envoy_http_yaml_validates() -> None:
    result = validate(ENVOY_HTTP_YAML)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_http_yaml_forwards_and_keeps_what_the_sidecar_needs() -> None:
    """Every credential header, content type, request id and cut flag go to the check; every
    identity header comes back upstream; every metadata key comes back as metadata."""
    lists = ShippedLists()
    needed = {*CREDENTIAL_HEADERS, "content-type", "x-request-id", "x-envoy-auth-partial-body"}
    assert needed <= set(lists.request)
    assert set(lists.upstream) == set(HeaderNames().all())
    assert set(lists.metadata) == set(METADATA_KEYS)
    assert {"content-type", "x-extauthz-reason"} <= set(lists.client)
    typed = shipped_ext_authz()
    assert typed["failure_mode_allow"] is False
    assert typed["with_request_body"]["allow_partial_message"] is True


def test_rendered_config_validates(tmp_path: Path) -> None:
    path = write_config(render_http_config(9, 10, 11, tmp_path / "a.log"), tmp_path / "e.yaml")
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- allow --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("claims", "model", "expected"), ALLOWED_IDENTITIES, ids=ALLOWED_IDS)
def test_allowed_request_reaches_upstream_with_identity(
    hs: HttpStack, claims: dict[str, Any], model: str, expected: dict[str, str]
) -> None:
    seen = echoed(hs.call(token=hs.stack.token(claims), model=model))
    headers = seen["headers"]
    assert {h: headers[h] for h in IDENTITY_HEADERS if h in headers} == expected
    assert "authorization" not in headers
    assert seen["path"] == "/v1/chat/completions"
    for internal in ("user_id", "decision", "x-envoy-auth-headers-to-remove"):
        assert internal not in headers


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (BOB, {"x-auth-user-id": "bob", "x-auth-user-role": "internal_user"}),
        (TEAM, {"x-auth-user-id": "svc-bot", "x-auth-team-id": "team-research",
                "x-auth-org-id": "org-acme", "x-auth-end-user-id": "cust-7",
                "x-auth-user-role": "team", "x-auth-user-email": "bot@example.com"}),
    ],
    ids=["values-unknown-for-caller", "values-known"],
)  # fmt: skip
def test_spoofed_identity_headers_never_reach_upstream(
    hs: HttpStack, claims: dict[str, Any], expected: dict[str, str]
) -> None:
    """Client-sent x-auth-* (two copies of one, too) and key headers: overwritten or removed."""
    reply = hs.call(token=hs.stack.token(claims), model="gpt-4o-mini", headers=SPOOFED)
    headers = echoed(reply)["headers"]
    assert {h: headers[h] for h in IDENTITY_HEADERS if h in headers} == expected
    for name in ("authorization", "x-api-key", "api-key"):
        assert name not in headers


@pytest.mark.parametrize(
    ("claims", "encoded", "literal", "status"), ENCODED_ADMIN_PATHS, ids=ENCODED_ADMIN_IDS
)
def test_encoded_admin_paths_never_carry_the_credential_upstream(
    hs: HttpStack, claims: dict[str, Any], encoded: str, literal: str, status: int
) -> None:
    """As in gRPC mode: only a path Envoy routes to the admin API keeps the credential."""
    check_encoded_admin_path(hs.call, hs.stack.token(claims), encoded, literal, status)


# -- deny ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["no-token", "expired", "unknown-kid"])
def test_unauthenticated_gets_401(hs: HttpStack, rogue_key: rsa.RSAPrivateKey, case: str) -> None:
    make, reason = UNAUTHENTICATED[case]
    reply = hs.call(token=make(hs.stack, rogue_key), model="gpt-4o-mini")
    assert_deny(reply, 401, reason)
    assert reply.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    for internal in ("decision", "reason", "user_id"):
        assert internal not in reply.headers


@pytest.mark.parametrize(
    ("claims", "path", "model", "status", "reason"),
    [
        (ALICE, "/v1/chat/completions", "gpt-4o", 403, "model_not_allowed"),
        (NO_ROLE, "/v1/chat/completions", "gpt-4o-mini", 403, "no_role"),
        (ALICE, "/team/block", None, 403, "route_not_allowed"),
        (ALICE, "/v1//chat/completions", "gpt-4o-mini", 400, "bad_path"),
    ],
    ids=["model", "no-role", "route", "bad-path"],
)
def test_denies_keep_status_body_and_reason(
    hs: HttpStack, claims: dict[str, Any], path: str, model: str | None, status: int, reason: str
) -> None:
    reply = hs.call(path, token=hs.stack.token(claims), model=model)
    assert_deny(reply, status, reason)
    assert "www-authenticate" not in reply.headers


def test_unreadable_body_gets_400(hs: HttpStack) -> None:
    reply = hs.call(token=hs.stack.token(ALICE), body=b'{"model": "gpt-4o-mini", "model": "x"}')
    assert_deny(reply, 400, "bad_body")


def test_a_5xx_from_the_sidecar_becomes_status_on_error(hs: HttpStack) -> None:
    """Envoy treats any 5xx from an HTTP authorizer as its failure: status_on_error (503),
    without the sidecar's body. Documented in docs/http-mode.md."""
    reply = hs.call(
        token=hs.stack.token(ALICE), model="gpt-4o-mini", headers=[("x-request-id", FORCE_503)]
    )
    assert reply.status == 503 and reply.body == b""


# -- bodies -------------------------------------------------------------------------------------


def _big_chat(model: str, size: int) -> bytes:
    head = b'{"model": "' + model.encode() + b'", "messages": [{"role": "user", "content": "'
    tail = b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(
    ("claims", "size", "status"),
    [(TEAM, MAX_BODY - 1024, 200), (ADMIN, 3 * MAX_BODY, 200), (ALICE, 3 * MAX_BODY, 413)],
    ids=["under-limit-checked", "cut-admin", "cut-restricted"],
)
def test_cut_bodies(hs: HttpStack, claims: dict[str, Any], size: int, status: int) -> None:
    """Bodies within max_request_bytes are checked whole; larger ones arrive cut (the
    x-envoy-auth-partial-body flag), which is a 413 only when the caller's model matters."""
    reply = hs.call(token=hs.stack.token(claims), body=_big_chat("gpt-4o-mini", size))
    assert reply.status == status, str(reply)
    if status == 200:
        assert reply.json()["body_bytes"] == size
    else:
        assert_deny(reply, 413, "body_cut")


def test_binary_body_gets_a_decision(hs: HttpStack) -> None:
    body = bytes(range(256)) * 8
    reply = hs.call(
        "/v1/audio/transcriptions",
        token=hs.stack.token(ALICE),
        body=body,
        content_type="application/octet-stream",
    )
    assert reply.status == 200 and reply.json()["body_bytes"] == len(body)


# -- metadata -----------------------------------------------------------------------------------


def _log_rows(path: Path, test_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            found = [r for r in rows if r.get("test_id") == test_id]
            if found:
                return found
        time.sleep(0.05)
    return []


@pytest.mark.parametrize(
    ("claims", "model", "expected"),
    [
        (TEAM, "gpt-4o", {"status": 200, "user_id": "svc-bot", "team_id": "team-research",
                          "org_id": "org-acme", "end_user_id": "cust-7", "role": "team",
                          "model": "gpt-4o", "decision": "allow", "reason": None}),
        (ALICE, "gpt-4o", {"status": 403, "user_id": "alice", "team_id": None, "model": None,
                           "decision": "deny", "reason": "model_not_allowed"}),
    ],
    ids=["allow", "deny"],
)  # fmt: skip
def test_dynamic_metadata_keys_match_grpc_mode(
    hs: HttpStack, claims: dict[str, Any], model: str, expected: dict[str, Any]
) -> None:
    """dynamic_metadata_from_headers gives gRPC mode's keys in envoy.filters.http.ext_authz."""
    assert hs.stack.access_log is not None
    test_id = uuid.uuid4().hex
    reply = hs.call(token=hs.stack.token(claims), model=model, headers=[("x-test-id", test_id)])
    assert reply.status == expected["status"], str(reply)
    rows = _log_rows(hs.stack.access_log, test_id)
    assert len(rows) == 1, f"no access-log line for {test_id}"
    assert {k: rows[0].get(k) for k in expected} == expected

"""Shadow mode end to end through a real Envoy running the shipped envoy.yaml: a request the policy
would deny reaches the upstream, without the caller's credential and without any identity the
client sent, and Envoy's access log names the would-be decision and its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.dev.envoyconf import (
    EXT_AUTHZ_METADATA,
    EnvoyPorts,
    EnvoyProcess,
    default_access_log_fields,
    load_config,
    render_envoy_config,
)
from tests.integration.harness import (
    ENVOY_YAML,
    IDENTITY_HEADERS,
    LoopThread,
    Reply,
    Stack,
    request,
    start_stack,
    wait_until,
)

pytestmark = pytest.mark.envoy


def shadow_on(policy: dict[str, Any]) -> dict[str, Any]:
    policy["extauthz"]["shadow_mode"] = True
    return policy


def start_envoy(stack: Stack) -> None:
    """Envoy from envoy.yaml with an access log that also records the decision's reason."""
    fields = default_access_log_fields()
    fields["reason"] = f"%DYNAMIC_METADATA({EXT_AUTHZ_METADATA}:reason)%"
    stack.access_log = stack.workdir / "access.jsonl"
    config = render_envoy_config(
        load_config(ENVOY_YAML),
        EnvoyPorts(0, 0, stack.grpc_port, stack.http_port, stack.upstream_port),
        access_log_path=str(stack.access_log),
        access_log_fields=fields,
    )
    stack.envoy = EnvoyProcess(
        config, stack.workdir, extra_args=["--file-flush-interval-msec", "50"]
    )
    stack.envoy.start()
    stack.envoy.wait_ready()


@pytest.fixture(scope="module")
def stack(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(
        loop_thread, tmp_path_factory.mktemp("shadow"), key, policy=shadow_on, envoy=False
    )
    try:
        start_envoy(s)
        yield s
    finally:
        s.close()


def logged(stack: Stack, test_id: str) -> dict[str, Any]:
    """The access-log line of the request sent with ``x-test-id: test_id``."""
    path = stack.access_log
    assert path is not None

    def find() -> list[dict[str, Any]]:
        if not Path(path).exists():
            return []
        lines = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        return [x for x in lines if x.get("test_id") == test_id]

    found, _ = wait_until(find, bool, timeout=10)
    assert len(found) == 1, f"no access-log line for {test_id}"
    return found[0]


def upstream_headers(reply: Reply) -> dict[str, str]:
    assert reply.status == 200, str(reply)
    headers: dict[str, str] = reply.json()["headers"]
    return headers


def test_a_model_the_role_may_not_use_reaches_the_upstream_as_a_would_deny(stack: Stack) -> None:
    token = stack.token({"sub": "alice", "roles": ["basic_user"], "email": "a@example.com"})
    reply = stack.call(token=token, model="gpt-4o", headers=[("x-test-id", "model")])
    seen = upstream_headers(reply)  # the demo upstream answered: the request was not refused
    assert "authorization" not in seen  # the caller's token was stripped as on an allow
    assert seen["x-auth-user-id"] == "alice"  # the verified identity, as an allow forwards it
    assert seen["x-auth-user-role"] == "internal_user"
    line = logged(stack, "model")
    assert (line["decision"], line["reason"], line["status"]) == (
        "would_deny",
        "model_not_allowed",
        200,
    )
    assert line["user_id"] == "alice"


def test_an_unauthenticated_caller_reaches_it_with_no_identity_at_all(stack: Stack) -> None:
    spoofed = [(h, "admin") for h in IDENTITY_HEADERS]
    reply = stack.call(
        token="not.a.jwt",
        model="gpt-4o-mini",
        headers=[*spoofed, ("x-api-key", "sk-client"), ("x-test-id", "anon")],
    )
    seen = upstream_headers(reply)
    for header in IDENTITY_HEADERS:
        assert header not in seen, f"{header} sent by the client reached the upstream"
    assert "authorization" not in seen
    assert "x-api-key" not in seen
    line = logged(stack, "anon")
    assert (line["decision"], line["reason"]) == ("would_deny", "malformed_token")
    assert line["user_id"] is None  # nothing verified, nothing forwarded


def test_an_allowed_request_is_logged_as_allow(stack: Stack) -> None:
    token = stack.token({"sub": "bob", "roles": ["basic_user"]})
    upstream_headers(stack.call(token=token, model="gpt-4o-mini", headers=[("x-test-id", "ok")]))
    assert logged(stack, "ok")["decision"] == "allow"


def test_readyz_and_metrics_say_shadow_mode_is_on(stack: Stack) -> None:
    ready = stack.readyz()
    assert ready.status == 200
    assert ready.json()["shadow_mode"] is True
    metrics = request(stack.http_port, "GET", "/metrics").body.decode()
    assert "extauthz_shadow_mode 1.0" in metrics
    assert 'extauthz_decisions_total{outcome="would_deny",reason="model_not_allowed",' in metrics

"""Issue 16's caller-gating keys through a real Envoy, in gRPC mode (envoy.yaml) and HTTP mode
(envoy-http.yaml): ``allowed_ips`` against the peer address Envoy reports (127.0.0.1 here),
``public_routes`` (no credential, no identity upstream) and ``litellm_key_header_name`` (the
key read from that header, which never reaches the upstream). Client-written address headers
(``x-forwarded-for``, ``x-extauthz-client-address``) must not change the address."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.dev.envoyconf import EnvoyPorts, EnvoyProcess, load_config, render_envoy_config
from extauthz.envoy.http_service import AuthzHttpServer, start_authz_http
from tests.httpmode.test_envoy_http import render_http_config
from tests.integration.harness import (
    ENVOY_YAML,
    IDENTITY_HEADERS,
    LoopThread,
    Reply,
    Stack,
    start_stack,
    wait_until,
)
from tests.integration.test_envoy_flow import ALICE, echoed

pytestmark = pytest.mark.envoy

KEY_HEADER = "X-Gateway-Key"  # as a LiteLLM config writes it; Envoy lower-cases it
PUBLIC = "/health/readiness"
SPOOFED = [("x-auth-user-id", "mallory"), ("x-auth-user-role", "proxy_admin")]


def gated(allowed_ips: list[str], xff: bool = False) -> Any:
    def change(policy: dict[str, Any]) -> dict[str, Any]:
        general = policy["general_settings"]
        general["allowed_ips"] = allowed_ips
        general["use_x_forwarded_for"] = xff
        general["public_routes"] = [PUBLIC]
        general["litellm_key_header_name"] = KEY_HEADER
        return policy

    return change


class GateStack:
    """The harness stack behind an Envoy of one mode."""

    def __init__(self, stack: Stack, mode: str) -> None:
        self.stack = stack
        self.mode = mode

    def call(self, *args: Any, **kw: Any) -> Reply:
        return self.stack.call(*args, **kw)

    def set_allowed_ips(self, allowed_ips: list[str], xff: bool = False) -> None:
        """Hot-reload the policy with another allowed_ips list (and use_x_forwarded_for)."""
        self.stack.policy.write(gated(allowed_ips, xff)(self.stack.policy_data))


@pytest.fixture(scope="module", params=["grpc", "http"])
def gs(
    request: pytest.FixtureRequest,
    loop_thread: LoopThread,
    key: rsa.RSAPrivateKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GateStack]:
    mode: str = request.param
    workdir = tmp_path_factory.mktemp(f"gate-{mode}")
    stack = start_stack(loop_thread, workdir, key, envoy=False, policy=gated(["127.0.0.1"]))
    server: AuthzHttpServer | None = None
    if mode == "grpc":
        config = render_envoy_config(
            load_config(ENVOY_YAML),
            EnvoyPorts(0, 0, stack.grpc_port, stack.http_port, stack.upstream_port),
        )
    else:
        server = loop_thread.run(start_authz_http(stack.sidecar.authorizer, "127.0.0.1", 0))
        config = render_http_config(
            server.port, stack.http_port, stack.upstream_port, workdir / "access.jsonl"
        )
        # What the README asks of an HTTP-mode user of litellm_key_header_name.
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        for f in hcm["typed_config"]["http_filters"]:
            if f["name"] == "envoy.filters.http.ext_authz":
                patterns = f["typed_config"]["allowed_headers"]["patterns"]
                patterns.append({"exact": KEY_HEADER.lower()})
                patterns.append({"exact": "x-forwarded-for"})  # for use_x_forwarded_for
    envoy = EnvoyProcess(config, workdir)
    try:
        envoy.start()
        envoy.wait_ready()
        stack.envoy = envoy
        yield GateStack(stack, mode)
    finally:
        envoy.stop()
        stack.envoy = None
        if server is not None:
            loop_thread.run(server.close(0.5))
        stack.close()


def _reason(reply: Reply) -> str | None:
    return reply.headers.get("x-extauthz-reason")


def test_listed_peer_address_is_let_in(gs: GateStack) -> None:
    gs.set_allowed_ips(["127.0.0.1"])
    reply, _ = wait_until(
        lambda: gs.call(token=gs.stack.token(ALICE), model="gpt-4o-mini"),
        lambda r: r.status == 200,
        timeout=10,
    )
    headers = echoed(reply)["headers"]
    assert headers["x-auth-user-id"] == "alice"


def test_public_route_needs_no_credential_and_carries_no_identity(gs: GateStack) -> None:
    gs.set_allowed_ips(["127.0.0.1"])
    reply, _ = wait_until(
        lambda: gs.call(
            PUBLIC,
            method="GET",
            content_type=None,
            headers=[*SPOOFED, ("authorization", "Bearer not-a-token")],
        ),
        lambda r: r.status == 200,
        timeout=10,
    )
    headers = echoed(reply)["headers"]
    assert not any(h in headers for h in IDENTITY_HEADERS), headers
    assert "authorization" not in headers
    # Not public: the same request elsewhere needs a credential.
    other = gs.call("/v1/models", method="GET", content_type=None)
    assert other.status == 401, str(other)


def test_key_from_the_custom_header_is_used_and_stripped(gs: GateStack) -> None:
    gs.set_allowed_ips(["127.0.0.1"])
    token = gs.stack.token(ALICE)
    reply, _ = wait_until(
        lambda: gs.call(model="gpt-4o-mini", headers=[(KEY_HEADER, f"Bearer {token}")]),
        lambda r: r.status == 200,
        timeout=10,
    )
    headers = echoed(reply)["headers"]
    assert headers["x-auth-user-id"] == "alice"
    assert KEY_HEADER.lower() not in headers
    # When the custom header is present it is the only place read, as in LiteLLM.
    junk = gs.call(token=token, model="gpt-4o-mini", headers=[(KEY_HEADER, "junk")])
    assert junk.status == 401 and _reason(junk) == "missing_credential", str(junk)


def test_unlisted_peer_is_refused_whatever_it_claims(gs: GateStack) -> None:
    gs.set_allowed_ips(["10.1.2.3"])
    token = gs.stack.token(ALICE)
    claims = [("x-forwarded-for", "10.1.2.3"), ("x-extauthz-client-address", "10.1.2.3")]
    reply, _ = wait_until(
        lambda: gs.call(token=token, model="gpt-4o-mini", headers=claims),
        lambda r: r.status != 200,
        timeout=10,
    )
    assert reply.status == 403 and _reason(reply) == "client_ip_not_allowed", str(reply)
    assert "127.0.0.1" in reply.json()["error"]["message"]
    # Before any credential: a public route and a request with no credential are refused too.
    public = gs.call(PUBLIC, method="GET", content_type=None)
    assert public.status == 403 and _reason(public) == "client_ip_not_allowed", str(public)
    bare = gs.call(model="gpt-4o-mini")
    assert bare.status == 403 and _reason(bare) == "client_ip_not_allowed", str(bare)
    gs.set_allowed_ips(["127.0.0.1"])


def test_use_x_forwarded_for_takes_the_rightmost_entry(gs: GateStack) -> None:
    """The shipped Envoy configs leave x-forwarded-for as the client sent it (no
    use_remote_address), so the rightmost entry stands for what a trusted proxy appended; the
    entries left of it are never the address."""
    token = gs.stack.token(ALICE)
    gs.set_allowed_ips(["203.0.113.7"], xff=True)
    good = [("x-forwarded-for", "6.6.6.6, 203.0.113.7")]
    reply, _ = wait_until(
        lambda: gs.call(token=token, model="gpt-4o-mini", headers=good),
        lambda r: r.status == 200,
        timeout=10,
    )
    assert echoed(reply)["headers"]["x-auth-user-id"] == "alice"
    spoofed = [("x-forwarded-for", "203.0.113.7, 6.6.6.6")]
    refused = gs.call(token=token, model="gpt-4o-mini", headers=spoofed)
    assert refused.status == 403 and _reason(refused) == "client_ip_not_allowed", str(refused)
    assert "client 6.6.6.6 is not in" in refused.json()["error"]["message"]
    missing = gs.call(token=token, model="gpt-4o-mini")
    assert missing.status == 403 and "no x-forwarded-for" in missing.json()["error"]["message"]
    gs.set_allowed_ips(["127.0.0.1"])

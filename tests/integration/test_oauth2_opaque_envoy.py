"""general_settings.enable_oauth2_auth through a real Envoy (the shipped envoy.yaml, gRPC): an
opaque bearer token on an LLM API route is introspected at an RFC 7662 endpoint (the stand-in
the differential test uses: POST, HTTP Basic client credentials) and the caller it names
reaches the upstream; the introspection runs on the sidecar's event loop while Envoy's check
waits on a gRPC server thread. Refusals keep LiteLLM's order (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.harness import LoopThread, Stack, start_stack, wait_until
from tests.integration.test_envoy_flow import assert_deny, echoed
from tests.unit.oauth2_standin import introspection_standin, opaque_token

pytestmark = pytest.mark.envoy
MASTER = "sk-dev-master-key-change-me"  # examples/policy.yaml's


def with_oauth2(policy: dict[str, Any]) -> dict[str, Any]:
    policy["general_settings"]["enable_oauth2_auth"] = True
    return policy


@pytest.fixture(scope="module")
def stack(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    # The endpoint and client credentials are LiteLLM's environment variables, set for the
    # module's duration (the sidecar reads them when it loads the policy).
    standin: AbstractAsyncContextManager[dict[str, str]] = introspection_standin()
    loop_thread.run(_enter(standin))
    try:
        s = start_stack(loop_thread, tmp_path_factory.mktemp("oauth2"), key, policy=with_oauth2)
        yield s
        s.close()
    finally:
        loop_thread.run(standin.__aexit__(None, None, None))


async def _enter(cm: AbstractAsyncContextManager[dict[str, str]]) -> dict[str, str]:
    return await cm.__aenter__()


def test_an_opaque_token_is_introspected_and_its_caller_goes_upstream(stack: Stack) -> None:
    token = opaque_token({"active": True, "sub": "svc-o", "team_id": "team-o"})
    reply, _ = wait_until(
        lambda: stack.call(token=token, model="gpt-4o"), lambda r: r.status != 0, timeout=10
    )
    upstream = echoed(reply)
    assert upstream["headers"]["x-auth-team-id"] == "team-o"
    assert upstream["headers"]["x-auth-user-role"] == "team"
    assert "authorization" not in upstream["headers"]  # the credential stops here
    again = stack.call(token=token, model="gpt-4o")  # cached: decided on the gRPC thread
    assert again.status == 200, str(again)
    assert_deny(stack.call(token=token, model="claude-sonnet"), 403, "model_not_allowed")


def test_refusals_keep_litellms_order(stack: Stack) -> None:
    inactive = opaque_token({"active": False, "sub": "gone"})
    reply = stack.call(token=inactive, model="gpt-4o")
    assert_deny(reply, 401, "introspection_rejected")
    assert reply.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert inactive not in reply.body.decode()
    # elsewhere the token is not introspected: LiteLLM would look it up as a virtual key
    team = opaque_token({"active": True, "sub": "svc-o", "team_id": "team-o"})
    assert_deny(stack.call("/key/generate", token=team), 401, "invalid_api_key")
    # the master key: refused on LLM API routes (LiteLLM introspects it), itself elsewhere
    assert_deny(stack.call(token=MASTER, model="gpt-4o"), 401, "invalid_api_key")
    generate = stack.call("/key/generate", token=MASTER)
    assert generate.status == 200, str(generate)

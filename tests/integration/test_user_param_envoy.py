"""general_settings.enforce_user_param through a real Envoy (the shipped envoy.yaml, gRPC): a
chat body without ``user`` is refused with LiteLLM's 401, with ``user`` (in the body, or in the
query) it reaches the upstream; a body above the worker threshold is read in the worker process
with the same answer; routes the check does not cover are untouched (issue 16)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.bodyreader import LARGE_BODY_BYTES
from tests.integration.harness import LoopThread, Reply, Stack, start_stack, wait_until
from tests.integration.test_envoy_flow import ALICE, echoed

pytestmark = pytest.mark.envoy


def enforced(policy: dict[str, Any]) -> dict[str, Any]:
    policy["general_settings"]["enforce_user_param"] = True
    return policy


@pytest.fixture(scope="module")
def stack(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(loop_thread, tmp_path_factory.mktemp("user-param"), key, policy=enforced)
    yield s
    s.close()


def _chat(**extra: Any) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    return json.dumps(body).encode()


def _reason(reply: Reply) -> str | None:
    return reply.headers.get("x-extauthz-reason")


def test_body_without_user_is_refused_with_user_let_through(stack: Stack) -> None:
    token = stack.token(ALICE)
    missing, _ = wait_until(
        lambda: stack.call(token=token, body=_chat()), lambda r: r.status != 0, timeout=10
    )
    assert missing.status == 401 and _reason(missing) == "user_param_missing", str(missing)
    assert "enforce_user_param" in missing.json()["error"]["message"]
    assert missing.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    body = _chat(user="end-user-42")
    named = stack.call(token=token, body=body)
    assert named.status == 200, str(named)
    upstream = echoed(named)
    assert upstream["headers"]["x-auth-user-id"] == "alice"
    assert upstream["body_bytes"] == len(body)  # the body goes on whole
    in_query = stack.call("/v1/chat/completions?user=end-user-42", token=token, body=_chat())
    assert in_query.status == 200, str(in_query)
    nested = stack.call(token=token, body=_chat(metadata={"user": "x"}))
    assert nested.status == 401 and _reason(nested) == "user_param_missing", str(nested)


def test_large_body_is_judged_in_the_worker_the_same_way(stack: Stack) -> None:
    token = stack.token(ALICE)
    pad = "x" * (LARGE_BODY_BYTES + 1024)
    without = stack.call(token=token, body=_chat(pad=pad))
    assert without.status == 401 and _reason(without) == "user_param_missing", str(without)
    named = stack.call(token=token, body=_chat(pad=pad, user="end-user-42"))
    assert named.status == 200, str(named)


def test_routes_outside_the_check(stack: Stack) -> None:
    token = stack.token(ALICE)
    models = stack.call("/v1/models", token=token, method="GET", content_type=None)
    assert models.status == 200, str(models)  # a GET: LiteLLM checks POSTs only

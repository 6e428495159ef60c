"""Envoy's own limits and failure handling: a cut body (small max_request_bytes) and a sidecar
that is down (status_on_error). The sidecar is stopped by the last test of this module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.harness import LoopThread, Stack, chat_body, start_stack

pytestmark = pytest.mark.envoy

MAX_REQUEST_BYTES = 1024
ALICE = {"sub": "alice", "roles": ["basic_user"]}
TEAM = {"sub": "svc", "client_id": "team-a"}
ADMIN = {"sub": "root", "scope": "litellm_proxy_admin"}


@pytest.fixture(scope="module")
def stack(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(
        loop_thread,
        tmp_path_factory.mktemp("limits"),
        key,
        max_request_bytes=MAX_REQUEST_BYTES,
    )
    yield s
    s.close()


@pytest.mark.parametrize(
    ("claims", "content", "status"),
    [
        (ALICE, "x" * 2000, 413),  # cut, and internal_user has a model allow-list
        (TEAM, "x" * 2000, 413),  # cut, and team has a model allow-list
        (ADMIN, "x" * 2000, 200),  # cut, but any model is fine for proxy_admin
        (ALICE, "x" * 500, 200),  # under the limit: checked whole
    ],
    ids=["user-cut", "team-cut", "admin-cut", "user-small"],
)
def test_cut_body_gets_413_when_the_model_matters(
    stack: Stack, claims: dict[str, Any], content: str, status: int
) -> None:
    """A body over max_request_bytes is sent cut; 413 if the caller's role restricts models."""
    body = chat_body("gpt-4o-mini", content)
    reply = stack.call(token=stack.token(claims), body=body)
    assert reply.status == status, str(reply)
    if status == 413:
        assert reply.reason == "body_cut"
        assert reply.json()["error"]["code"] == "413"
    else:
        assert reply.json()["body_bytes"] == len(body)  # the whole body reached the upstream


# Starlette keeps the LAST form value: trusting a client's "not cut" would let claude through.
CUT_FORM = b"model=gpt-4o-mini&pad=" + b"x" * 2000 + b"&model=claude-sonnet"


@pytest.mark.parametrize("claimed", ["false", "true"])
@pytest.mark.parametrize(
    ("path", "content_type", "body", "status"),
    [
        ("/v1/audio/transcriptions", "application/x-www-form-urlencoded", CUT_FORM, 413),
        ("/v1/chat/completions", "application/json", chat_body("gpt-4o-mini"), 200),
    ],
    ids=["cut", "whole"],
)
def test_client_cannot_claim_partial_body(
    stack: Stack, claimed: str, path: str, content_type: str, body: bytes, status: int
) -> None:
    """A client-sent x-envoy-auth-partial-body is replaced by Envoy's own (no hidden cut)."""
    reply = stack.call(
        path,
        token=stack.token(ALICE),
        body=body,
        content_type=content_type,
        headers=[("x-envoy-auth-partial-body", claimed)],
    )
    assert reply.status == status, str(reply)


def test_sidecar_down_is_503_never_200(stack: Stack) -> None:
    """With the sidecar stopped every request gets status_on_error (503), none gets through."""
    token = stack.token(ALICE)
    assert stack.call(token=token, model="gpt-4o-mini").status == 200
    stack.stop_sidecar()
    statuses = [
        stack.call(token=token if i % 2 else None, model="gpt-4o-mini").status for i in range(6)
    ]
    assert statuses == [503] * 6

"""Large bodies are read in a worker process with the same verdicts as inline reads."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from extauthz.authorizer import Authorizer
from extauthz.bodyreader import BodyReader
from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import Allow, Deny, Reason, RequestView
from extauthz.policy.models import ModelRead
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk

POLICY = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth: {user_id_jwt_field: sub}
  role_permissions: [{role: internal_user, models: [granted]}]
"""
PAD = "x" * 4096  # past the test threshold, so every body below goes to the worker


@pytest.fixture
async def reader() -> Any:
    body_reader = BodyReader(threshold=1024)
    await body_reader.started()
    yield body_reader
    body_reader.close()


async def authorizer(body_reader: BodyReader | None) -> Authorizer:
    policy = compile_policy(parse_yaml(POLICY), {"JWT_PUBLIC_KEY_URL": "u"}).policy

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    return Authorizer(policy, verifier, body_reader=body_reader)


def request(body: bytes, path: str = "/v1/chat/completions") -> RequestView:
    headers = {"authorization": f"Bearer {rs_token({'sub': 'alice'})}"}
    return RequestView("POST", path, {"content-type": "application/json", **headers}, body)


BODIES = [
    json.dumps({"model": "granted", "messages": [{"role": "user", "content": PAD}]}).encode(),
    json.dumps({"model": "other", "messages": [{"role": "user", "content": PAD}]}).encode(),
    json.dumps({"model": "granted", "fallbacks": ["other"], "pad": PAD}).encode(),
    b'{"model": "granted", "pad": "' + PAD.encode() + b'"',  # not JSON
    b"[" + b"{}," * 30_000 + b"{}]",  # too complex
]


@pytest.mark.parametrize("body", BODIES, ids=["granted", "other", "fallback", "bad", "complex"])
async def test_the_worker_decides_as_the_inline_read(reader: BodyReader, body: bytes) -> None:
    """Same status and reason with and without the worker process."""
    inline = await (await authorizer(None)).authorize(request(body))
    offloaded = await (await authorizer(reader)).authorize(request(body))
    assert type(inline) is type(offloaded)
    if isinstance(inline, Deny):
        assert isinstance(offloaded, Deny)
        assert (offloaded.status, offloaded.reason) == (inline.status, inline.reason)
    else:
        assert isinstance(offloaded, Allow) and offloaded.model == inline.model == "granted"
    assert reader._pool is not None  # the worker really was used


async def test_a_read_that_does_not_finish_in_time_is_none(reader: BodyReader) -> None:
    assert await reader.read(0.0, "/v1/chat/completions", "", "POST", None, BODIES[0], None) is None


async def test_a_dead_worker_is_replaced(reader: BodyReader) -> None:
    """A crashed worker answers None once (a 503 for that check), then a new one reads."""
    first = await reader.read(30, "/v1/chat/completions", "", "POST", None, BODIES[0], None)
    assert first == ModelRead(("granted",))
    assert reader._pool is not None
    for pid in list(reader._pool._processes):  # the pool's own worker processes
        os.kill(pid, signal.SIGKILL)
    crashed = await reader.read(30, "/v1/chat/completions", "", "POST", None, BODIES[0], None)
    assert crashed is None
    again = await reader.read(30, "/v1/chat/completions", "", "POST", None, BODIES[0], None)
    assert again == ModelRead(("granted",))


async def test_a_busy_worker_is_a_503_busy(reader: BodyReader) -> None:
    """The authorizer answers 503 busy when the worker cannot read in the check's time."""
    auth = await authorizer(reader)
    auth.check_timeout = 0.0
    verdict = await auth.authorize(request(BODIES[0]))
    assert isinstance(verdict, Deny) and (verdict.status, verdict.reason) == (503, Reason.BUSY)


async def test_large_bodies_are_read_inline_until_the_worker_is_up() -> None:
    """The first large body does not wait for a worker to start: it is read inline."""
    body_reader = BodyReader(threshold=1024)
    try:
        auth = await authorizer(body_reader)
        verdict = await auth.authorize(request(BODIES[1]))  # a forbidden model
        assert isinstance(verdict, Deny) and verdict.reason is Reason.MODEL_NOT_ALLOWED
        assert body_reader._warm is not None  # ... and the worker was started for the next ones
        await body_reader.started()
        assert body_reader.wants(len(BODIES[1]))
    finally:
        body_reader.close()

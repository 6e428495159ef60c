"""One deadline per waiting check: a key fetch, then a large body's read, share ``check_timeout``.

Each wait used to get the whole ``check_timeout`` on its own, so a check could take about twice
that: past Envoy's own timeout, or past the server thread's wait (a 500). Now the body read gets
what the key fetch left, and when that runs out the answer is the body read's own 503 busy.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from extauthz.authorizer import Authorizer
from extauthz.bodyreader import BodyReader
from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.envoy.responder import Responder, SplitAuthorizerLike
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import INTERNAL_VERDICT, Reason, RequestView, Verdict
from extauthz.policy.models import ModelRead, read_models
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk

POLICY = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth: {user_id_jwt_field: sub}
  role_permissions: [{role: internal_user, models: [granted]}]
"""
CHECK_TIMEOUT = 0.3
BODY = json.dumps({"model": "granted", "pad": "x" * 4096}).encode()  # past the threshold below


class SlowReader(BodyReader):
    """A body reader whose worker takes ``delay`` seconds (no process: only the wait matters)."""

    def __init__(self, delay: float) -> None:
        super().__init__(threshold=1024)
        self.delay = delay
        self.waits: list[float] = []

    def wants(self, size: int) -> bool:
        return size > self.threshold

    async def read(
        self,
        wait: float,
        path: str,
        query: str,
        method: str,
        content_type: str | None,
        body: bytes,
        model_header: str | None,
    ) -> ModelRead | None:
        self.waits.append(wait)
        try:
            await asyncio.wait_for(asyncio.sleep(self.delay), wait)
        except TimeoutError:
            return None
        return read_models(path, query, method, content_type, body, False, model_header)


async def slow_authorizer(key_delay: float, body_delay: float) -> Authorizer:
    """Keys without the token's kid at first; the refetch that finds it takes ``key_delay``."""
    policy = compile_policy(parse_yaml(POLICY), {"JWT_PUBLIC_KEY_URL": "u"}).policy
    fetches = 0

    async def fetch(_url: str) -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        if fetches == 1:
            return jwks(rsa_jwk("a"))
        await asyncio.sleep(key_delay)
        return jwks(rsa_jwk("a"), rsa_jwk("b"))

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    return Authorizer(
        policy, verifier, body_reader=SlowReader(body_delay), check_timeout=CHECK_TIMEOUT
    )


def request() -> RequestView:
    headers = {
        "authorization": f"Bearer {rs_token({'sub': 'alice'}, name='b')}",  # an unknown kid
        "content-type": "application/json",
    }
    return RequestView("POST", "/v1/chat/completions", headers, BODY)


def responder(authorizer: Authorizer) -> Responder[Verdict]:
    return Responder(authorizer, lambda verdict: verdict, INTERNAL_VERDICT)



async def test_http_mode_two_waits_over_budget_get_the_body_reads_503() -> None:
    """HTTP mode (``respond``): 0.6 + 0.6 of the budget is the clear 503 busy, in about one
    budget, not an allow after 1.2 of it."""
    auth = await slow_authorizer(0.6 * CHECK_TIMEOUT, 0.6 * CHECK_TIMEOUT)
    start = time.monotonic()
    verdict = await responder(auth).respond(request())
    elapsed = time.monotonic() - start
    assert (verdict.status, verdict.reason) == (503, Reason.BUSY)
    assert elapsed < CHECK_TIMEOUT + 0.25  # generous: the point is not 2 x CHECK_TIMEOUT
    assert isinstance(auth.body_reader, SlowReader)
    assert auth.body_reader.waits and auth.body_reader.waits[0] < 0.5 * CHECK_TIMEOUT


async def test_two_waits_within_budget_still_allow() -> None:
    auth = await slow_authorizer(0.15 * CHECK_TIMEOUT, 0.15 * CHECK_TIMEOUT)
    verdict = await responder(auth).respond(request())
    assert verdict.allowed and verdict.status == 200


def test_grpc_mode_two_waits_over_budget_get_the_body_reads_503(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """gRPC mode (``respond_blocking``: decided on this thread, the waits on the loop's): the
    same 503 busy, well before the thread stops waiting (which would be a 500)."""
    build = slow_authorizer(0.6 * CHECK_TIMEOUT, 0.6 * CHECK_TIMEOUT)
    auth = asyncio.run_coroutine_threadsafe(build, loop).result(5)
    split: SplitAuthorizerLike[Any] = auth  # as the gRPC service holds it
    start = time.monotonic()
    verdict = responder(auth).respond_blocking(request(), split, loop)
    elapsed = time.monotonic() - start
    assert (verdict.status, verdict.reason) == (503, Reason.BUSY)
    assert elapsed < CHECK_TIMEOUT + 0.25

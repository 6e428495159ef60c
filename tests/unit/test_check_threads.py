"""The gRPC Check on many threads at once, as grpcio's sync server calls it: the same answers as
one at a time, nothing raised, while the token cache fills, evicts and is cleared under them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2

from extauthz.authorizer import Authorizer
from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.envoy.grpc_service import AuthorizationService
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk
from tests.unit.test_envoy_grpc import check_request

POLICY_YAML = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth: {user_id_jwt_field: sub}
"""


def authorizer(cache_size: int) -> Authorizer:
    policy = compile_policy(parse_yaml(POLICY_YAML), {"JWT_PUBLIC_KEY_URL": "u"}).policy

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    asyncio.run(source.refresh())
    verifier = TokenVerifier(source, TokenRules(), cache_size=cache_size, clock=lambda: NOW)
    return Authorizer(policy, verifier)


def answer(raw: bytes) -> tuple[int, bytes]:
    """What Envoy acts on: the gRPC status code and the encoded headers/body."""
    resp = external_auth_pb2.CheckResponse.FromString(raw)
    return resp.status.code, (
        resp.ok_response.SerializeToString()
        if resp.status.code == 0
        else resp.denied_response.SerializeToString()
    )


def test_concurrent_checks_answer_as_sequential_ones() -> None:
    users = [rs_token({"sub": f"u{i}"}) for i in range(40)]
    tokens = [*users, "not-a-jwt", users[0][:-4] + "AAAA"]  # an allow, 401s
    paths = ["/v1/chat/completions", "/key/generate", "/v1/models", "/%zz"]  # 200, 403, 400
    cases = [(t, p) for t in tokens for p in paths]
    expected = {
        case: answer(
            AuthorizationService(authorizer(1000)).Check(
                check_request({"authorization": f"Bearer {case[0]}"}, case[1]), None
            )
        )
        for case in cases
    }
    assert {code for code, _ in expected.values()} >= {0, 7, 16}  # allows and both denies
    # A cache smaller than the callers, so entries are evicted while others read them.
    shared = authorizer(8)
    service = AuthorizationService(shared)
    stop = threading.Event()

    def churn() -> None:  # what a key rotation or a reload does to the cache meanwhile
        while not stop.is_set():
            assert shared.verifier is not None
            shared.verifier._clear()
            stop.wait(0.001)

    def call(case: tuple[str, str]) -> tuple[tuple[str, str], tuple[int, bytes]]:
        request = check_request({"authorization": f"Bearer {case[0]}"}, case[1])
        return case, answer(service.Check(request, None))

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            got = list(pool.map(call, cases * 6))
    finally:
        stop.set()
        churner.join()
    wrong = [case for case, result in got if result != expected[case]]
    assert not wrong, wrong[:5]

"""Opaque tokens at the userinfo endpoint, against an aiohttp stand-in that answers what a
hostile or broken provider might: refusal, garbage, a huge or slow answer, a redirect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from extauthz.authorizer import Authorizer
from extauthz.config.loader import compile_policy
from extauthz.errors import ConfigError
from extauthz.identity.jwks import JwksSource
from extauthz.identity.userinfo import MAX_USERINFO_BYTES, UserinfoClient
from extauthz.identity.verifier import TokenVerifier, Verified
from extauthz.model import Allow, Deny, Reason, RequestView
from tests.unit.keys import NOW
from tests.unit.standins import assert_never_shown, hostile_answer, serving

TOKEN = "opaque-access-token-0123456789"
VERIFIERS: list[TokenVerifier] = []  # stopped when the stand-in stops (no unclosed sockets)


class Provider:
    """What the stand-in answers next, and what it was asked."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.auth_seen: list[str] = []
        self.asked, self.gate = asyncio.Event(), asyncio.Event()  # mode "gated": answer once set

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        self.auth_seen.append(request.headers.get("Authorization", ""))
        if self.mode == "gated":
            self.asked.set()
            await self.gate.wait()
            return web.json_response({"sub": "carol", "team": "t-c", "email": "c@x.example"})
        if self.mode == "ok":
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return web.Response(status=401)
            return web.json_response({"sub": "carol", "team": "t-c", "email": "c@x.example"})
        if self.mode == "forbidden":
            return web.Response(status=403)
        return await hostile_answer(
            self.mode, request.headers.get("Authorization", ""), {"sub": "x"}, MAX_USERINFO_BYTES
        )


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, str]]:
    p = Provider()
    app = web.Application()
    app.router.add_get("/userinfo", p.handle)
    async with serving(app) as base:
        try:
            yield p, f"{base}/userinfo"
        finally:
            while VERIFIERS:
                verifier = VERIFIERS.pop()
                await verifier.stop()
                assert verifier.userinfo is not None
                await verifier.userinfo.close()


def make(endpoint: str, clock: list[float]) -> Authorizer:
    data: dict[str, Any] = {
        "general_settings": {
            "enable_jwt_auth": True,
            "litellm_jwtauth": {
                "user_id_jwt_field": "sub",
                "team_id_jwt_field": "team",
                "oidc_userinfo_enabled": True,
                "oidc_userinfo_endpoint": endpoint,
                "oidc_userinfo_cache_ttl": 60,
            },
        },
    }
    policy = compile_policy(data, {}).policy

    async def no_keys(_url: str) -> dict[str, Any]:
        raise AssertionError("no JWT here")

    verifier = TokenVerifier(
        JwksSource((), fetch=no_keys),
        policy.token_rules,
        clock=lambda: clock[0],
        userinfo=UserinfoClient(endpoint, 60, timeout=5),
    )
    VERIFIERS.append(verifier)
    return Authorizer(policy, verifier, check_timeout=0.5)


async def ask(auth: Authorizer, token: str = TOKEN) -> Allow | Deny:
    decision = await auth.authorize(
        RequestView("POST", "/v1/chat/completions", {"authorization": f"Bearer {token}"}, b"")
    )
    assert isinstance(decision, Allow | Deny)
    return decision


async def test_an_opaque_token_is_resolved_then_cached_until_its_ttl(
    provider: tuple[Provider, str],
) -> None:
    p, url = provider
    clock = [NOW]
    auth = make(url, clock)
    got = await ask(auth)
    assert isinstance(got, Allow) and got.identity.userinfo and got.identity.team_id == "t-c"
    assert p.auth_seen == [f"Bearer {TOKEN}"]
    p.mode = "error"  # the provider breaks: the cached answer still serves
    assert isinstance(await ask(auth), Allow) and p.calls == 1
    clock[0] += 61  # past oidc_userinfo_cache_ttl: asked again, and the provider is down
    got = await ask(auth)
    assert isinstance(got, Deny) and (got.status, got.reason) == (503, Reason.USERINFO_UNAVAILABLE)
    assert TOKEN not in got.message


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("forbidden", 401, Reason.USERINFO_REJECTED),
        ("error", 503, Reason.USERINFO_UNAVAILABLE),
        ("html", 503, Reason.USERINFO_UNAVAILABLE),
        ("list", 503, Reason.USERINFO_UNAVAILABLE),
        ("huge", 503, Reason.USERINFO_UNAVAILABLE),
        ("slow", 503, Reason.USERINFO_UNAVAILABLE),
        ("redirect", 503, Reason.USERINFO_UNAVAILABLE),
    ],
)
async def test_hostile_or_broken_answers(
    provider: tuple[Provider, str],
    mode: str,
    status: int,
    reason: Reason,
    caplog: pytest.LogCaptureFixture,
) -> None:
    p, url = provider
    p.mode = mode
    auth = make(url, [NOW])
    with caplog.at_level(logging.DEBUG):
        got = await ask(auth)
    assert isinstance(got, Deny) and (got.status, got.reason) == (status, reason), got
    assert_never_shown(got.message, caplog.records, TOKEN)
    assert p.calls == 1  # a redirect is not followed (it would hand the token elsewhere)


async def test_a_refused_token_is_not_cached_as_a_caller(provider: tuple[Provider, str]) -> None:
    _p, url = provider
    auth = make(url, [NOW])
    got = await ask(auth, "some-other-opaque-token")
    assert isinstance(got, Deny) and got.status == 401
    assert isinstance(await ask(auth), Allow)  # the real token still works


async def test_an_oversized_opaque_token_is_not_sent(provider: tuple[Provider, str]) -> None:
    p, url = provider
    got = await ask(make(url, [NOW]), "x" * 9000)
    assert isinstance(got, Deny) and got.reason is Reason.TOKEN_TOO_LARGE and p.calls == 0


@pytest.mark.parametrize("token", ["opaque\x00token", "opaque\x7ftoken", "op aque", "opaqué"])
async def test_an_opaque_token_no_provider_issued_is_refused_unsent(
    provider: tuple[Provider, str], token: str
) -> None:
    """A NUL or DEL broke the request header (a 500 before); such a token is a 401 now."""
    p, url = provider
    got = await ask(make(url, [NOW]), token)
    assert isinstance(got, Deny) and got.reason is Reason.MALFORMED_TOKEN and p.calls == 0
    assert got.status == 401


async def test_concurrent_requests_for_a_new_token_share_one_request(
    provider: tuple[Provider, str],
) -> None:
    p, url = provider
    auth = make(url, [NOW])
    got = await asyncio.gather(*(ask(auth) for _ in range(20)))
    assert all(isinstance(g, Allow) for g in got) and p.calls == 1


def test_userinfo_needs_jwt_auth() -> None:
    data: dict[str, Any] = {
        "general_settings": {
            "litellm_jwtauth": {
                "oidc_userinfo_enabled": True,
                "oidc_userinfo_endpoint": "https://idp.example/userinfo",
            }
        }
    }
    with pytest.raises(ConfigError, match=r"needs general_settings\.enable_jwt_auth"):
        compile_policy(data, {})


@pytest.mark.parametrize("endpoint", ["ftp://idp.example/userinfo", "http://[idp/userinfo"])
def test_a_userinfo_endpoint_that_is_no_url_is_refused_by_name(endpoint: str) -> None:
    data: dict[str, Any] = {
        "general_settings": {
            "enable_jwt_auth": True,
            "litellm_jwtauth": {"oidc_userinfo_enabled": True, "oidc_userinfo_endpoint": endpoint},
        }
    }
    with pytest.raises(ConfigError, match=r"oidc_userinfo_endpoint: not an https:// or http://"):
        compile_policy(data, {})


async def test_custom_validate_judges_userinfo_answers_too(provider: tuple[Provider, str]) -> None:
    _p, url = provider
    auth = make(url, [NOW])
    assert auth.verifier is not None
    seen: list[dict[str, Any]] = []

    def refuse(claims: dict[str, Any]) -> bool:
        seen.append(claims)
        return False

    auth.set_policy(replace(auth.policy, custom_validate=refuse))
    got = await ask(auth)
    assert isinstance(got, Deny) and got.reason is Reason.CUSTOM_VALIDATE_REFUSED
    assert seen == [{"sub": "carol", "team": "t-c", "email": "c@x.example"}]


async def test_another_endpoint_drops_the_answers_of_the_old(
    provider: tuple[Provider, str],
) -> None:
    p, url = provider
    auth = make(url, [NOW])
    assert isinstance(await ask(auth), Allow)
    assert auth.verifier is not None and auth.verifier.userinfo is not None
    old = auth.verifier.userinfo
    auth.verifier.set_userinfo(UserinfoClient(url, 60, timeout=5))  # as a reload does
    await old.close()
    p.mode = "forbidden"  # the new endpoint's verdict counts, not the cached one
    got = await ask(auth)
    assert isinstance(got, Deny) and got.reason is Reason.USERINFO_REJECTED and p.calls == 2


async def test_an_answer_of_the_old_endpoint_in_flight_across_a_reload_is_not_cached(
    provider: tuple[Provider, str],
) -> None:
    p, url = provider
    auth = make(url, [NOW])
    verifier = auth.verifier
    assert verifier is not None and verifier.userinfo is not None
    old = verifier.userinfo
    p.mode = "gated"
    first = asyncio.ensure_future(verifier.verify(TOKEN, wait=5))
    await p.asked.wait()  # the old endpoint has been asked
    verifier.set_userinfo(UserinfoClient(url, 60, timeout=5))  # as a reload does
    p.gate.set()
    assert isinstance(await first, Verified)  # its own waiter still gets the answer
    await old.close()
    p.mode = "forbidden"  # the new endpoint's verdict counts, not the old one's late answer
    got = await ask(auth)
    assert isinstance(got, Deny) and got.reason is Reason.USERINFO_REJECTED and p.calls == 2

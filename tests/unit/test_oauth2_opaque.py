"""``general_settings.enable_oauth2_auth``: a non-JWT bearer token on an LLM API, info or /lens
route is judged by OAuth2 token introspection (LiteLLM 1.108.7's ``oauth2_introspection_applies``,
checked before the master key and every other way in), against the RFC 7662 stand-in of
``test_routing_overrides`` (POST form, HTTP Basic client credentials; hostile answers there).

Why a stand-in: the real ``oidc-provider`` (tests/oidc) needs a browser login to hand out an
opaque access token; the wire format is what matters here, and the stand-in speaks it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from extauthz.authorizer import Authorizer
from extauthz.config.loader import compile_policy
from extauthz.errors import ConfigError
from extauthz.identity.introspection import IntrospectionClient, Introspector
from extauthz.identity.jwks import JwksSource
from extauthz.identity.userinfo import UserinfoClient
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import MASTER_KEY, OAUTH2, PASSTHROUGH, Allow, Deny, Reason, RequestView, Role
from extauthz.runtime import userinfo_client
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk, write_policy
from tests.unit.standins import serving
from tests.unit.test_routing_overrides import Provider

SECRET = "s3cret-client-credential"
MASTER = "sk-the-master-key-0123"
COVERED = ("/v1/chat/completions", "/chat/completions", "/v1/messages", "/v1/models", "/lens")
ELSEWHERE = ("/key/generate", "/team/block", "/global/spend/logs")


class Userinfo:
    """A userinfo endpoint: a caller for every Bearer token it is asked about."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        return web.json_response({"sub": "from-userinfo"})


class Stand:
    def __init__(self, provider: Provider, userinfo: Userinfo, base: str) -> None:
        self.provider, self.userinfo, self.base = provider, userinfo, base
        self.introspectors: list[Introspector] = []
        self.userinfo_clients: list[UserinfoClient] = []


@pytest.fixture
async def stand() -> AsyncIterator[Stand]:
    p, u = Provider(), Userinfo()
    app = web.Application()
    app.router.add_route("*", "/oauth2/introspect", p.handle)
    app.router.add_get("/userinfo", u.handle)
    async with serving(app) as base:
        s = Stand(p, u, base)
        try:
            yield s
        finally:
            for i in s.introspectors:
                await i.close()
            for c in s.userinfo_clients:
                await c.close()


def config(jwt: bool = True, **general: Any) -> dict[str, Any]:
    ours = general.pop("extauthz", {})
    return {
        "general_settings": {
            "enable_jwt_auth": jwt,
            "enable_oauth2_auth": True,
            "master_key": MASTER,
            "litellm_jwtauth": {"user_id_jwt_field": "sub"},
            **general,
        },
        "extauthz": {"public_key_url": "https://keys.example/global", **ours},
    }


def environ(base: str) -> dict[str, str]:
    return {
        "OAUTH_TOKEN_INFO_ENDPOINT": base + "/oauth2/introspect",
        "OAUTH_CLIENT_ID": "extauthz",
        "OAUTH_CLIENT_SECRET": SECRET,
    }


async def make(s: Stand, clock: list[float], data: dict[str, Any] | None = None) -> Authorizer:
    loaded = compile_policy(data or config(), environ(s.base))

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk("g"))

    source = JwksSource(("https://keys.example/global",), fetch=fetch)
    await source.refresh()
    userinfo = userinfo_client(loaded.settings.keys)
    if userinfo is not None:
        s.userinfo_clients.append(userinfo)
    verifier = TokenVerifier(
        source, loaded.policy.token_rules, clock=lambda: clock[0], userinfo=userinfo
    )
    auth = Authorizer(loaded.policy, verifier, check_timeout=0.5)
    assert loaded.settings.keys.introspection is not None
    introspector = Introspector(
        IntrospectionClient(loaded.settings.keys.introspection), clock=lambda: clock[0]
    )
    s.introspectors.append(introspector)
    auth.introspector = introspector
    return auth


def view(token: str, path: str = "/v1/chat/completions") -> RequestView:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return RequestView("POST", path, headers, b'{"model": "m"}')


async def ask(auth: Authorizer, token: str, path: str = "/v1/chat/completions") -> Allow | Deny:
    decision = await auth.authorize(view(token, path))
    assert isinstance(decision, Allow | Deny)
    return decision


def opaque(s: Stand, name: str = "tok") -> str:
    token = f"opaque-access-token-{name}"
    s.provider.valid.add(token)
    return token


async def test_an_opaque_token_on_a_covered_route_is_introspected_and_cached(
    stand: Stand,
) -> None:
    clock = [NOW]
    auth = await make(stand, clock)
    token = opaque(stand)
    for path in COVERED[:-1]:  # a team may not call /lens (the master-key test shows it)
        got = await ask(auth, token, path)
        assert isinstance(got, Allow), (path, got)
        assert (got.identity.kind, got.identity.team_id, got.role) == (OAUTH2, "t-p", Role.TEAM)
    basic = "Basic " + base64.b64encode(f"extauthz:{SECRET}".encode()).decode()
    assert stand.provider.seen == [("POST", basic, {"token": token})]  # once: then cached
    stand.provider.mode = "error"  # the endpoint breaks: the cached answer still serves
    assert isinstance(await ask(auth, token), Allow) and stand.provider.calls == 1
    got = await ask(auth, opaque(stand, "new"))  # a new token cannot be checked: 503
    assert isinstance(got, Deny) and (got.status, got.reason) == (
        503,
        Reason.INTROSPECTION_UNAVAILABLE,
    )
    clock[0] += 61  # past extauthz.oauth2_cache_ttl_seconds: asked again, and it is down
    got = await ask(auth, token)
    assert isinstance(got, Deny) and got.status == 503 and token not in got.message


async def test_inactive_and_unknown_tokens_are_refused(
    stand: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    auth = await make(stand, [NOW])
    with caplog.at_level(logging.DEBUG):
        got = await ask(auth, "opaque-nobody-issued-this")  # the stand-in: active false
    assert isinstance(got, Deny) and (got.status, got.reason) == (
        401,
        Reason.INTROSPECTION_REJECTED,
    )
    assert "opaque-nobody-issued-this" not in got.message + caplog.text
    stand.provider.answer = {"active": False, "sub": "svc-1", "team_id": "t-p"}
    got = await ask(auth, opaque(stand))
    assert isinstance(got, Deny) and got.reason is Reason.INTROSPECTION_REJECTED
    assert stand.provider.calls == 2  # refusals are not cached: asked each time
    await ask(auth, opaque(stand))
    assert stand.provider.calls == 3


async def test_other_routes_do_not_introspect(stand: Stand) -> None:
    """Elsewhere LiteLLM looks a non-JWT token up as a virtual key: refused here (or the
    master key), and the endpoint is never asked."""
    auth = await make(stand, [NOW])
    token = opaque(stand)
    for path in ELSEWHERE:
        got = await ask(auth, token, path)
        assert isinstance(got, Deny) and (got.status, got.reason) == (
            401,
            Reason.INVALID_API_KEY,
        ), path
        assert "enable_oauth2_auth" in got.message and token not in got.message
    assert stand.provider.calls == 0


async def test_the_master_key_is_refused_on_covered_routes_without_being_sent(
    stand: Stand,
) -> None:
    """LiteLLM introspects it there too (its endpoint does not know it: a 401); we refuse it
    without handing the secret to the provider. Elsewhere it is the master key."""
    auth = await make(stand, [NOW])
    for path in COVERED:
        got = await ask(auth, MASTER, path)
        assert isinstance(got, Deny) and (got.status, got.reason) == (
            401,
            Reason.INVALID_API_KEY,
        ), path
        assert MASTER not in got.message and "enable_oauth2_auth" in got.message
    assert stand.provider.calls == 0
    for path in ELSEWHERE:
        got = await ask(auth, MASTER, path)
        assert isinstance(got, Allow) and got.identity.kind == MASTER_KEY, path
    got = await ask(auth, MASTER[:-1] + "X", "/key/generate")  # not the master key
    assert isinstance(got, Deny) and got.reason is Reason.INVALID_API_KEY


async def test_jwts_are_verified_under_jwt_auth_and_introspected_without_it(
    stand: Stand,
) -> None:
    token = rs_token({"iss": "https://idp.example", "sub": "u-1"}, "g")
    auth = await make(stand, [NOW])
    got = await ask(auth, token)
    assert isinstance(got, Allow) and got.identity.kind == "jwt" and stand.provider.calls == 0
    # JWT auth off: LiteLLM calls no token a JWT, so a JWT-shaped one is introspected too
    auth = await make(stand, [NOW], config(jwt=False))
    stand.provider.valid.add(token)
    got = await ask(auth, token)
    assert isinstance(got, Allow) and got.identity.kind == OAUTH2 and stand.provider.calls == 1
    got = await ask(auth, token, "/key/generate")
    assert isinstance(got, Deny) and got.reason is Reason.INVALID_API_KEY


async def test_passthrough_keys_pass_only_where_nothing_is_introspected(stand: Stand) -> None:
    """extauthz.non_jwt_tokens: passthrough stands for LiteLLM's virtual-key path, which LiteLLM
    reaches only after introspection declined the route."""
    data = config(extauthz={"non_jwt_tokens": "passthrough"})
    auth = await make(stand, [NOW], data)
    key = "sk-a-virtual-key"
    got = await ask(auth, key)  # covered: introspected (the endpoint does not know it)
    assert isinstance(got, Deny) and got.reason is Reason.INTROSPECTION_REJECTED
    got = await ask(auth, key, "/key/generate")
    assert isinstance(got, Allow) and got.identity.kind == PASSTHROUGH
    assert stand.provider.calls == 1
    got = await ask(auth, opaque(stand))
    assert isinstance(got, Allow) and got.identity.kind == OAUTH2


async def test_userinfo_serves_opaque_tokens_only_where_nothing_is_introspected(
    stand: Stand,
) -> None:
    """LiteLLM's order: introspection first, on its routes; our userinfo (README) elsewhere."""
    jwtauth = {
        "user_id_jwt_field": "sub",
        "oidc_userinfo_enabled": True,
        "oidc_userinfo_endpoint": stand.base + "/userinfo",
    }
    auth = await make(stand, [NOW], config(litellm_jwtauth=jwtauth))
    token = opaque(stand)
    got = await ask(auth, token)
    assert isinstance(got, Allow) and got.identity.kind == OAUTH2
    assert (stand.provider.calls, stand.userinfo.calls) == (1, 0)
    got = await ask(auth, token, "/team/block")  # not introspected: userinfo's internal_user
    assert isinstance(got, Deny) and got.identity is not None
    assert got.identity.user_id == "from-userinfo" and got.reason is Reason.ROUTE_NOT_ALLOWED
    assert (stand.provider.calls, stand.userinfo.calls) == (1, 1)


async def test_an_oversized_token_is_not_sent(stand: Stand) -> None:
    auth = await make(stand, [NOW])
    got = await ask(auth, "x" * 9000)
    assert isinstance(got, Deny) and (got.status, got.reason) == (401, Reason.TOKEN_TOO_LARGE)
    assert stand.provider.calls == 0


@pytest.mark.parametrize("rfc7662", [True, False])
@pytest.mark.parametrize(
    "token", ["a b", "tok\tx", "tok\x00x", "tok\x7f", "é-token", "tok\u2028x", "\udcff"]
)
async def test_tokens_no_provider_issued_are_refused_unsent(
    stand: Stand, token: str, rfc7662: bool
) -> None:
    """Hostile bytes (HTTP mode hands undecodable ones on as surrogates) would break the POST
    form or the Bearer header of a GET: a clear 401, never a 500, and nothing is sent."""
    data = config()
    env = environ(stand.base) if rfc7662 else {"OAUTH_TOKEN_INFO_ENDPOINT": stand.base + "/x"}
    loaded = compile_policy(data, env)
    assert loaded.settings.keys.introspection is not None
    assert loaded.settings.keys.introspection.rfc7662 is rfc7662
    auth = Authorizer(loaded.policy, None)
    introspector = Introspector(IntrospectionClient(loaded.settings.keys.introspection))
    stand.introspectors.append(introspector)
    auth.introspector = introspector
    got = await ask(auth, token)
    assert isinstance(got, Deny) and (got.status, got.reason) == (401, Reason.MALFORMED_TOKEN)
    assert token not in got.message and stand.provider.calls == 0


async def test_grpc_threads_hand_new_tokens_to_the_loop(stand: Stand) -> None:
    """decide_now (the gRPC server's threads) never does I/O: a new opaque token is handed to
    finish on the event loop; once cached, a thread decides it alone."""
    auth = await make(stand, [NOW])
    token = opaque(stand)
    step = await asyncio.to_thread(auth.decide_now, view(token))
    assert not isinstance(step, Allow | Deny) and stand.provider.calls == 0
    assert isinstance(await auth.finish(view(token), step), Allow)
    again = await asyncio.to_thread(auth.decide_now, view(token))
    assert isinstance(again, Allow) and again.identity.kind == OAUTH2
    assert stand.provider.calls == 1


async def test_no_introspector_is_a_503(stand: Stand) -> None:
    auth = await make(stand, [NOW])
    auth.introspector = None  # e.g. a reload that removed it while the request waited
    got = await ask(auth, opaque(stand))
    assert isinstance(got, Deny) and (got.status, got.reason) == (
        503,
        Reason.INTROSPECTION_UNAVAILABLE,
    )


def test_config_needs_an_endpoint_and_says_what_it_does() -> None:
    with pytest.raises(ConfigError) as exc:
        compile_policy(config(), {})
    assert any(
        p.startswith("general_settings.enable_oauth2_auth") and "OAUTH_TOKEN_INFO_ENDPOINT" in p
        for p in exc.value.problems
    ), exc.value.problems
    with pytest.raises(ConfigError) as exc:
        compile_policy(config(), {"OAUTH_TOKEN_INFO_ENDPOINT": "ftp://x"})
    assert any("OAUTH_TOKEN_INFO_ENDPOINT: not an" in p for p in exc.value.problems)
    with pytest.raises(ConfigError) as exc:
        compile_policy(config(enable_oauth2_auth="yes"), environ("https://x"))
    assert any("general_settings.enable_oauth2_auth" in p for p in exc.value.problems)
    loaded = compile_policy(config(), environ("https://idp.example"))
    assert loaded.policy.enable_oauth2_auth and loaded.settings.keys.introspection is not None
    assert not any("ignored" in w and "enable_oauth2_auth" in w for w in loaded.warnings)
    assert any("master key is refused on LLM API" in w for w in loaded.warnings)
    data = config(jwt=False)
    del data["general_settings"]["master_key"]
    loaded = compile_policy(data, environ("https://idp.example"))
    assert not any("every request will be refused" in w for w in loaded.warnings)
    off = config(enable_oauth2_auth=False)
    loaded = compile_policy(off, {})  # off: no endpoint needed, no introspection
    assert not loaded.policy.enable_oauth2_auth and loaded.settings.keys.introspection is None


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    full = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "extauthz.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        check=False,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


async def test_check_config_and_explain_say_what_enable_oauth2_auth_did(
    stand: Stand, tmp_path: Path
) -> None:
    path = write_policy(tmp_path, config())
    env = environ(stand.base)
    rc, out = await asyncio.to_thread(_cli, env, "check-config", str(path))
    assert rc == 0, out
    assert "enable_oauth2_auth: a non-JWT token on an LLM API, info or /lens route" in out
    assert "the master key is refused there" in out
    assert "on other routes a non-JWT token is the master key, else refused" in out
    assert f"introspected at {stand.base}/oauth2/introspect: RFC 7662 POST" in out
    assert SECRET not in out and MASTER not in out
    token = opaque(stand)
    args = ("explain", "--config", str(path), "--token", token, "--path", "/v1/models")
    rc, out = await asyncio.to_thread(_cli, env, *args)
    shown = json.loads(out)
    assert rc == 0, out
    assert shown["oauth2_introspection"].startswith("general_settings.enable_oauth2_auth")
    assert shown["identity"]["kind"] == OAUTH2 and shown["userinfo_used"] is False
    assert token not in out and SECRET not in out
    rc, out = await asyncio.to_thread(_cli, env, *args[:-1], "/key/generate")
    shown = json.loads(out)
    assert rc == 1 and shown["oauth2_introspection"] is None
    assert shown["reason"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("opaque-" + "x" * 9000, Reason.TOKEN_TOO_LARGE),  # past max_token_bytes
        ("opaque tok", Reason.MALFORMED_TOKEN),  # no provider issued it: never sent
        (MASTER, Reason.INVALID_API_KEY),  # refused there, never sent
    ],
    ids=["too-large", "unsendable", "master-key"],
)
async def test_explain_routes_a_token_as_the_check_does(
    stand: Stand,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    token: str,
    reason: Reason,
) -> None:
    """explain asks the check's own routing: a token the check refuses before introspection
    is not shown as introspected (explain said it was for the first two)."""
    from extauthz.cli import main

    got = await ask(await make(stand, [NOW]), token, "/v1/models")
    assert isinstance(got, Deny) and got.reason is reason
    assert stand.provider.calls == 0
    path = write_policy(tmp_path, config())
    for name, value in environ(stand.base).items():
        monkeypatch.setenv(name, value)
    args = ["explain", "--config", str(path), "--token", token, "--path", "/v1/models"]
    assert await asyncio.to_thread(main, args) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["reason"] == reason.value and shown["oauth2_introspection"] is None
    assert shown["userinfo_used"] is False and stand.provider.calls == 0


async def test_the_sidecar_wires_the_introspector(tmp_path: Path) -> None:
    """serve: enable_oauth2_auth alone starts the introspector; turning it off removes it."""
    from extauthz.runtime import ServeOptions, Sidecar

    data = config()
    path = write_policy(tmp_path, data)
    env = environ("https://one.example")
    options = ServeOptions(config=str(path), grpc_address="127.0.0.1:0", http_address=None)
    car = Sidecar(options, compile_policy(data, env, str(path)))
    try:
        first = car.authorizer.introspector
        assert first is not None and first.settings.endpoint.startswith("https://one.example")
        data["general_settings"]["enable_oauth2_auth"] = False
        car.apply(compile_policy(data, env, str(path)))
        assert car.authorizer.introspector is None
    finally:
        await car.stop()

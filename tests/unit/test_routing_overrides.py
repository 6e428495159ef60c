"""``litellm_jwtauth.routing_overrides``: JWTs whose unverified claims match a rule are judged by
OAuth2 token introspection, against an aiohttp stand-in speaking RFC 7662 (POST form, HTTP
Basic client credentials) and LiteLLM's token-info variant (GET, Bearer), answering what a
hostile or broken provider might.

Why a stand-in: the real ``oidc-provider`` (tests/oidc) refuses to introspect JWT access tokens
("Structured JWT Tokens cannot be introspected", 400), and overrides only ever apply to JWTs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from extauthz.authorizer import Authorizer
from extauthz.config.loader import compile_policy
from extauthz.errors import ConfigError
from extauthz.identity.introspection import MAX_ANSWER_BYTES, IntrospectionClient, Introspector
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import segment_object
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import OAUTH2, Allow, Deny, Reason, RequestView, Role
from extauthz.policy import overrides as overrides_module
from extauthz.policy.overrides import OverrideRule, RoutingOverrides, selector_matches
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk, write_policy
from tests.unit.standins import assert_never_shown, hostile_answer, serving

PARTNER = "https://partner.example"
SECRET = "s3cret-client-credential"
INTROSPECTORS: list[Introspector] = []


class Provider:
    """What the stand-in answers next, and what it was asked."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.answer: dict[str, Any] = {"active": True, "sub": "svc-1", "team_id": "t-p"}
        self.calls = 0
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, Authorization, form
        self.valid: set[str] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        form = dict(await request.post()) if request.method == "POST" else {}
        auth = request.headers.get("Authorization", "")
        self.seen.append((request.method, auth, {k: str(v) for k, v in form.items()}))
        token = str(form.get("token", "")) if request.method == "POST" else auth[7:]
        if self.mode == "ok":
            if token not in self.valid:
                return web.json_response({"active": False})
            return web.json_response(self.answer)
        if self.mode == "unauthorized":
            return web.Response(status=401)
        return await hostile_answer(self.mode, token, {"active": True}, MAX_ANSWER_BYTES)


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, str]]:
    p = Provider()
    app = web.Application()
    app.router.add_route("*", "/oauth2/introspect", p.handle)
    app.router.add_route("*", "/tokeninfo", p.handle)
    async with serving(app) as base:
        try:
            yield p, base
        finally:
            while INTROSPECTORS:
                await INTROSPECTORS.pop().close()


OVERRIDES = [{"iss": [PARTNER, "https://*.partner.example"], "path": "oauth2"}]


def config(**jwtauth: Any) -> dict[str, Any]:
    return {
        "general_settings": {
            "enable_jwt_auth": True,
            "litellm_jwtauth": {
                "user_id_jwt_field": "sub",
                "routing_overrides": OVERRIDES,
                **jwtauth,
            },
        },
        "extauthz": {"public_key_url": "https://keys.example/global"},
    }


async def make(
    base: str, clock: list[float], path: str = "/oauth2/introspect", **env: str
) -> Authorizer:
    environ = {
        "OAUTH_TOKEN_INFO_ENDPOINT": base + path,
        "OAUTH_CLIENT_ID": "extauthz",
        "OAUTH_CLIENT_SECRET": SECRET,
        **env,
    }
    loaded = compile_policy(config(), environ)

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk("g"))

    source = JwksSource(("https://keys.example/global",), fetch=fetch)
    await source.refresh()
    verifier = TokenVerifier(source, loaded.policy.token_rules, clock=lambda: clock[0])
    auth = Authorizer(loaded.policy, verifier, check_timeout=0.5)
    assert loaded.settings.keys.introspection is not None
    introspector = Introspector(
        IntrospectionClient(loaded.settings.keys.introspection), clock=lambda: clock[0]
    )
    INTROSPECTORS.append(introspector)
    auth.introspector = introspector
    return auth


def partner_token(p: Provider, **claims: Any) -> str:
    """A JWT the partner issued, signed with a key extauthz does not hold."""
    token = rs_token({"iss": PARTNER, "sub": "svc-1", **claims}, "a")
    p.valid.add(token)
    return token


async def ask(auth: Authorizer, token: str, path: str = "/v1/chat/completions") -> Allow | Deny:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    decision = await auth.authorize(RequestView("POST", path, headers, b'{"model": "m"}'))
    assert isinstance(decision, Allow | Deny)
    return decision


async def test_a_matching_jwt_is_introspected_then_cached_until_the_ttl(
    provider: tuple[Provider, str],
) -> None:
    p, base = provider
    clock = [NOW]
    auth = await make(base, clock)
    token = partner_token(p)
    got = await ask(auth, token)
    assert isinstance(got, Allow), got
    assert (got.identity.kind, got.identity.team_id, got.role) == (OAUTH2, "t-p", Role.TEAM)
    # RFC 7662: POST token=..., our client credentials as HTTP Basic
    basic = "Basic " + base64.b64encode(f"extauthz:{SECRET}".encode()).decode()
    assert p.seen == [("POST", basic, {"token": token})]
    p.mode = "error"  # the provider breaks: the cached answer still serves
    assert isinstance(await ask(auth, token), Allow) and p.calls == 1
    clock[0] += 61  # past extauthz.oauth2_cache_ttl_seconds (60): asked again, and it is down
    got = await ask(auth, token)
    assert isinstance(got, Deny) and (got.status, got.reason) == (
        503,
        Reason.INTROSPECTION_UNAVAILABLE,
    )
    assert token not in got.message


async def test_the_answers_exp_bounds_the_cache(provider: tuple[Provider, str]) -> None:
    p, base = provider
    clock = [NOW]
    auth = await make(base, clock)
    p.answer = {**p.answer, "exp": NOW + 10}
    token = partner_token(p)
    assert isinstance(await ask(auth, token), Allow)
    clock[0] += 11
    got = await ask(auth, token)  # asked again: the answer now says it has expired
    assert p.calls == 2 and isinstance(got, Deny) and got.reason is Reason.INTROSPECTION_REJECTED


async def test_a_token_info_endpoint_is_asked_with_a_bearer_get(
    provider: tuple[Provider, str],
) -> None:
    p, base = provider
    auth = await make(base, [NOW], "/tokeninfo")
    token = partner_token(p)
    assert isinstance(await ask(auth, token), Allow)
    assert p.seen == [("GET", f"Bearer {token}", {})]
    p.mode = "unauthorized"  # a token-info endpoint's 401 judges the token
    got = await ask(auth, partner_token(p, jti="2"))
    assert isinstance(got, Deny) and (got.status, got.reason) == (
        401,
        Reason.INTROSPECTION_REJECTED,
    )


async def test_other_routes_and_other_tokens_are_verified_as_jwts(
    provider: tuple[Provider, str],
) -> None:
    """LiteLLM introspects only on LLM API, info and /lens routes; elsewhere, and for tokens no
    rule matches, the JWT is verified as usual."""
    p, base = provider
    auth = await make(base, [NOW])
    token = partner_token(p)
    got = await ask(auth, token, "/key/generate")
    assert isinstance(got, Deny) and got.reason is Reason.UNKNOWN_KEY
    ours = rs_token({"iss": "https://idp.example", "sub": "u-1"}, "g")
    got = await ask(auth, ours)
    assert isinstance(got, Allow) and got.identity.kind == "jwt"
    forged = rs_token({"iss": "https://partner.example.evil", "sub": "u-1"}, "a")
    got = await ask(auth, forged)
    assert isinstance(got, Deny) and got.reason is Reason.UNKNOWN_KEY
    assert p.calls == 0
    assert isinstance(await ask(auth, token, "/v1/models"), Allow)  # an info route
    assert isinstance(await ask(auth, partner_token(p, iss="https://eu.partner.example")), Allow)
    assert p.calls == 2


async def test_a_cached_jwt_is_routed_as_a_new_one(
    provider: tuple[Provider, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token in the JWT cache is matched against the rules with its cached claims (no second
    decode of its payload), and routed exactly as a token seen for the first time."""
    p, base = provider
    auth, fresh = await make(base, [NOW]), await make(base, [NOW])
    ours = rs_token({"iss": "https://idp.example", "sub": "u-1"}, "g")
    theirs = rs_token({"iss": PARTNER, "sub": "svc-1"}, "g")  # verifies, and a rule matches
    p.valid.add(theirs)
    for token in (ours, theirs):
        await ask(auth, token, "/key/generate")  # not a covered route: verified as a JWT
        assert auth.verifier is not None and auth.verifier.cached(token) is not None
    decoded: list[int] = []

    def counted(part: str) -> dict[str, Any] | None:
        decoded.append(len(part))
        return segment_object(part)

    monkeypatch.setattr(overrides_module, "segment_object", counted)
    for token in (ours, theirs):
        new = await ask(fresh, token)
        assert decoded, "a new token's payload is decoded"
        decoded.clear()
        assert await ask(auth, token) == new
        assert decoded == [], "a cached token's payload was decoded again"
    assert p.calls == 2  # theirs: introspected by each authorizer, as a new token is


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("unauthorized", 503, Reason.INTROSPECTION_UNAVAILABLE),  # our client credentials
        ("error", 503, Reason.INTROSPECTION_UNAVAILABLE),
        ("html", 503, Reason.INTROSPECTION_UNAVAILABLE),
        ("list", 503, Reason.INTROSPECTION_UNAVAILABLE),
        ("huge", 503, Reason.INTROSPECTION_UNAVAILABLE),
        ("slow", 503, Reason.INTROSPECTION_UNAVAILABLE),
        ("redirect", 503, Reason.INTROSPECTION_UNAVAILABLE),
    ],
)
async def test_hostile_or_broken_answers(
    provider: tuple[Provider, str],
    mode: str,
    status: int,
    reason: Reason,
    caplog: pytest.LogCaptureFixture,
) -> None:
    p, base = provider
    p.mode = mode
    auth = await make(base, [NOW])
    token = partner_token(p)
    with caplog.at_level(logging.DEBUG):
        got = await ask(auth, token)
    assert isinstance(got, Deny) and (got.status, got.reason) == (status, reason), got
    assert_never_shown(got.message, caplog.records, token, SECRET)
    assert p.calls == 1  # a redirect is not followed (it would hand the token elsewhere)


@pytest.mark.parametrize(
    ("answer", "status", "reason"),
    [
        ({"active": False, "sub": "svc-1"}, 401, Reason.INTROSPECTION_REJECTED),
        ({"active": 0, "team_id": "t"}, 401, Reason.INTROSPECTION_REJECTED),
        # not a JSON boolean: refused (LiteLLM's truthiness would take "false" as active)
        ({"active": "false", "sub": "x"}, 401, Reason.INTROSPECTION_REJECTED),
        ({"active": 1, "sub": "x"}, 401, Reason.INTROSPECTION_REJECTED),
        ({"active": True, "exp": NOW - 1, "sub": "x"}, 401, Reason.INTROSPECTION_REJECTED),
        ({"active": True, "sub": 42}, 401, Reason.MALFORMED_TOKEN),
        ({"active": True, "team_id": ["a", "b"]}, 401, Reason.MALFORMED_TOKEN),
        ({"active": True, "team_id": "t\n2"}, 401, Reason.MALFORMED_TOKEN),
        ({"active": True, "sub": "x", "role": "superuser"}, 401, Reason.MALFORMED_TOKEN),
        ({"active": True, "client_id": "no-ids"}, 403, Reason.NO_ROLE),
    ],
)
async def test_answers_litellm_could_not_use_are_refused(
    provider: tuple[Provider, str], answer: dict[str, Any], status: int, reason: Reason
) -> None:
    p, base = provider
    p.answer = answer
    auth = await make(base, [NOW])
    got = await ask(auth, partner_token(p))
    assert isinstance(got, Deny) and (got.status, got.reason) == (status, reason), got


async def test_the_answers_role_and_ids_make_the_caller(provider: tuple[Provider, str]) -> None:
    """proxy_admin is an admin (with the admin's routes); else a team id makes a team, a user id
    an internal user; the field names are LiteLLM's OAUTH_*_FIELD_NAME variables."""
    p, base = provider
    env = {"OAUTH_USER_ID_FIELD_NAME": "uid", "OAUTH_USER_TEAM_ID_FIELD_NAME": "grp"}
    auth = await make(base, [NOW], **env)
    for answer, role, user, team in (
        ({"role": "proxy_admin", "uid": "root", "grp": "g"}, Role.PROXY_ADMIN, "root", None),
        ({"role": "internal_user", "uid": "u", "grp": "g"}, Role.TEAM, "u", "g"),
        ({"uid": "u", "team_id": "ignored"}, Role.INTERNAL_USER, "u", None),
    ):
        p.answer = {"active": True, **answer}
        token = partner_token(p, jti=str(answer))
        got = await ask(auth, token, "/team/info")  # an info route: every role's
        assert isinstance(got, Allow), (answer, got)
        assert (got.role, got.identity.user_id, got.identity.team_id) == (role, user, team)
    # the admin is held to admin_allowed_routes (LiteLLM's JWT admins are too)
    p.answer = {"active": True, "role": "proxy_admin", "uid": "root"}
    got = await ask(auth, partner_token(p, jti="admin2"))
    assert isinstance(got, Deny) and (got.reason, got.role) == (
        Reason.ROUTE_NOT_ALLOWED,
        Role.PROXY_ADMIN,
    )


async def test_concurrent_requests_for_a_new_token_share_one_request(
    provider: tuple[Provider, str],
) -> None:
    p, base = provider
    auth = await make(base, [NOW])
    token = partner_token(p)
    got = await asyncio.gather(*(ask(auth, token) for _ in range(20)))
    assert all(isinstance(g, Allow) for g in got) and p.calls == 1


async def test_cached_answers_are_read_from_other_threads(provider: tuple[Provider, str]) -> None:
    """The gRPC server decides on its threads: the cache is read there, written on the loop."""
    p, base = provider
    auth = await make(base, [NOW])
    tokens = [partner_token(p, jti=str(i)) for i in range(30)]
    seen: list[Any] = []

    def read() -> None:
        assert auth.introspector is not None
        for _ in range(200):
            for t in tokens:
                seen.append(auth.introspector.cached(t))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    await asyncio.gather(*(ask(auth, t) for t in tokens))
    for t in threads:
        t.join()
    assert all(s is None or s.kind == OAUTH2 for s in seen)
    assert all(auth.introspector is not None and auth.introspector.cached(t) for t in tokens)


@pytest.mark.parametrize(
    ("selector", "claim", "split", "expect"),
    [
        ((PARTNER,), PARTNER, False, True),
        ((PARTNER,), PARTNER + "/", False, False),
        (("https://*.partner.example",), "https://eu.partner.example", False, True),
        (("https://*.partner.example",), "https://EU.PARTNER.example", False, False),
        (("https://*.Partner.example",), "https://eu.partner.example", False, False),
        (("trusted.*",), "trusted.example.com evil.com", False, False),  # no * over whitespace
        (("api-?",), ["x", "api-b"], False, True),  # a list claim: any entry
        (("litellm.*",), "openid litellm.read", True, True),  # scope: split on spaces
        (("openid litellm.read",), "openid litellm.read", True, False),
        (("42",), 42, False, True),  # LiteLLM compares str() of the claim
        (("True",), True, False, True),
        ((PARTNER,), None, False, False),
    ],
)
def test_selectors_match_as_litellm_matches(
    selector: tuple[str, ...], claim: object, split: bool, expect: bool
) -> None:
    assert selector_matches(selector, claim, split) is expect
    # ... and LiteLLM's own function says the same
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    from litellm.proxy.auth.user_api_key_auth import _routing_selector_matches_claim

    theirs = _routing_selector_matches_claim(list(selector), claim, split_space_delimited=split)
    assert theirs is expect


def test_a_rule_needs_every_selector_it_sets() -> None:
    rules = RoutingOverrides(
        (OverrideRule(0, (PARTNER,), client_id=("app-*",), scope=("llm",), aud=("api",)),)
    )
    claims = {"iss": PARTNER, "client_id": "app-1", "scope": "openid llm", "aud": ["api", "x"]}
    assert rules.match(rs_token(claims, "a"), "/v1/chat/completions") is not None
    for key in claims:
        other = {**claims, key: "nope"}
        assert rules.match(rs_token(other, "a"), "/v1/chat/completions") is None, key
    assert rules.match("not.a.jwt", "/v1/chat/completions") is None
    assert rules.match(rs_token(claims, "a") + "x" * 9000, "/v1/chat/completions") is None


@pytest.mark.parametrize(
    ("change", "environ", "expect"),
    [
        ({}, {}, "OAUTH_TOKEN_INFO_ENDPOINT"),
        ({}, {"OAUTH_TOKEN_INFO_ENDPOINT": "ftp://x"}, "OAUTH_TOKEN_INFO_ENDPOINT: not an"),
        ({}, {"OAUTH_TOKEN_INFO_ENDPOINT": "http://[x/i"}, "OAUTH_TOKEN_INFO_ENDPOINT: not an"),
        ({"enable_jwt_auth": False}, {"OAUTH_TOKEN_INFO_ENDPOINT": "https://x"}, "enable_jwt"),
        ({"iss": []}, {"OAUTH_TOKEN_INFO_ENDPOINT": "https://x"}, "routing_overrides[0].iss"),
        ({"scope": ""}, {"OAUTH_TOKEN_INFO_ENDPOINT": "https://x"}, "routing_overrides[0].scope"),
        ({"path": "jwt"}, {"OAUTH_TOKEN_INFO_ENDPOINT": "https://x"}, "path"),
        ({"claim": "x"}, {"OAUTH_TOKEN_INFO_ENDPOINT": "https://x"}, "claim"),
    ],
)
def test_config_errors_name_the_key(
    change: dict[str, Any], environ: dict[str, str], expect: str
) -> None:
    data = config()
    general = data["general_settings"]
    if "enable_jwt_auth" in change:
        general["enable_jwt_auth"] = change["enable_jwt_auth"]
    else:
        general["litellm_jwtauth"]["routing_overrides"] = [{"iss": PARTNER, **change}]
    with pytest.raises(ConfigError) as exc:
        compile_policy(data, environ)
    assert any(expect in problem for problem in exc.value.problems), exc.value.problems


def test_our_endpoint_key_wins_over_the_environment() -> None:
    data = config()
    data["extauthz"]["oauth2_token_info_endpoint"] = "https://ours.example/introspect"
    loaded = compile_policy(data, {"OAUTH_TOKEN_INFO_ENDPOINT": "https://env.example/x"})
    keys = loaded.settings.keys.introspection
    assert keys is not None and keys.endpoint == "https://ours.example/introspect"
    assert not keys.rfc7662  # no client credentials: a GET, as LiteLLM does
    assert SECRET not in repr(
        compile_policy(
            data, {"OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": SECRET}
        ).settings.keys.introspection
    )


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


async def test_check_config_and_explain_say_which_override_matched(
    provider: tuple[Provider, str], tmp_path: Path
) -> None:
    p, base = provider
    data = config()
    path = write_policy(tmp_path, data)
    env = {
        "OAUTH_TOKEN_INFO_ENDPOINT": f"{base}/oauth2/introspect",
        "OAUTH_CLIENT_ID": "extauthz",
        "OAUTH_CLIENT_SECRET": SECRET,
    }
    rc, out = await asyncio.to_thread(_cli, env, "check-config", str(path))
    assert rc == 0, out
    assert "routing_overrides[0] (iss https://partner.example | https://*.partner.example)" in out
    assert f"introspected at {base}/oauth2/introspect: RFC 7662 POST" in out
    assert SECRET not in out
    token = partner_token(p)
    args = ("explain", "--config", str(path), "--token", token, "--path", "/v1/models")
    rc, out = await asyncio.to_thread(_cli, env, *args)
    shown = json.loads(out)
    assert rc == 0, out
    assert shown["routing_override"].startswith("routing_overrides[0]")
    assert shown["identity"]["kind"] == OAUTH2 and shown["identity"]["team_id"] == "t-p"
    assert token not in out and SECRET not in out
    rc, out = await asyncio.to_thread(_cli, env, *args[:-1], "/key/generate")
    assert json.loads(out)["routing_override"] is None  # not a route LiteLLM introspects on
    rc, out = await asyncio.to_thread(_cli, {}, "check-config", str(path))
    assert rc != 0 and "OAUTH_TOKEN_INFO_ENDPOINT" in out


async def test_the_sidecar_wires_the_introspector_and_swaps_it_on_reload(tmp_path: Path) -> None:
    """serve: the endpoint of the config is used; a reload that changes it drops the old
    client (and its answers); one that removes routing_overrides removes introspection."""
    from extauthz.runtime import ServeOptions, Sidecar

    data = config()
    path = write_policy(tmp_path, data)
    env = {"OAUTH_TOKEN_INFO_ENDPOINT": "https://one.example/introspect"}
    options = ServeOptions(config=str(path), grpc_address="127.0.0.1:0", http_address=None)
    car = Sidecar(options, compile_policy(data, env, str(path)))
    try:
        first = car.authorizer.introspector
        assert first is not None and first.settings.endpoint == "https://one.example/introspect"
        car.apply(compile_policy(data, env, str(path)))  # unchanged: the same client
        assert car.authorizer.introspector is first
        env2 = {"OAUTH_TOKEN_INFO_ENDPOINT": "https://two.example/introspect"}
        car.apply(compile_policy(data, env2, str(path)))
        second = car.authorizer.introspector
        assert second is not None and second is not first
        assert second.settings.endpoint == "https://two.example/introspect"
        del data["general_settings"]["litellm_jwtauth"]["routing_overrides"]
        car.apply(compile_policy(data, env2, str(path)))
        assert car.authorizer.introspector is None
    finally:
        await car.stop()

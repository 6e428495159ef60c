"""The pipeline: path check, credential extraction, master key, passthrough, never raising."""

from __future__ import annotations

import json
from typing import Any

import pytest

from extauthz.authorizer import Authorizer
from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.identity.credentials import extract_credential
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import Allow, Deny, Reason, RequestView, Role
from extauthz.policy.verdict import render
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk

POLICY_YAML = """
general_settings:
  enable_jwt_auth: true
  master_key: sk-master-key-1234
  litellm_jwtauth: {user_id_jwt_field: sub}
extauthz: {non_jwt_tokens: %s}
"""


async def make(non_jwt: str = "reject") -> Authorizer:
    policy = compile_policy(parse_yaml(POLICY_YAML % non_jwt), {"JWT_PUBLIC_KEY_URL": "u"}).policy

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    return Authorizer(policy, TokenVerifier(source, TokenRules(), clock=lambda: NOW))


def req(
    headers: dict[str, str], path: str = "/v1/chat/completions", body: Any = None
) -> RequestView:
    raw = json.dumps(body if body is not None else {"model": "m"}).encode()
    return RequestView("POST", path, {"content-type": "application/json", **headers}, raw)


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer {t}"},
        {"authorization": "bearer {t}"},
        {"authorization": "BEARER   {t}  "},
        {"x-litellm-api-key": "{t}"},
        {"api-key": "{t}"},
        {"x-api-key": "{t}"},
    ],
)
async def test_credential_headers_litellm_reads(headers: dict[str, str]) -> None:
    """Bearer (any case) and LiteLLM's other key headers all carry the token."""
    token = rs_token({"sub": "alice"})
    authorizer = await make()
    decision = await authorizer.authorize(req({k: v.format(t=token) for k, v in headers.items()}))
    assert isinstance(decision, Allow) and decision.identity.user_id == "alice"


@pytest.mark.parametrize(
    "headers,reason",
    [
        ({}, Reason.MISSING_CREDENTIAL),
        ({"authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, Reason.MISSING_CREDENTIAL),
        ({"authorization": "Bearer "}, Reason.MISSING_CREDENTIAL),
        ({"authorization": "Bearer sk-not-the-master"}, Reason.INVALID_API_KEY),
        ({"authorization": "Bearer a.b.c"}, Reason.MALFORMED_TOKEN),
        ({"authorization": "Bearer x,Bearer y"}, Reason.INVALID_API_KEY),
    ],
)
async def test_unauthenticated_requests_get_401(headers: dict[str, str], reason: Reason) -> None:
    """No or bad credentials: 401 with a specific reason and the invalid_token challenge."""
    decision = await (await make()).authorize(req(headers))
    assert isinstance(decision, Deny) and (decision.status, decision.reason) == (401, reason)
    verdict = render(decision, (await make()).policy)
    assert ("www-authenticate", 'Bearer error="invalid_token"') in verdict.headers
    body = json.loads(verdict.body)
    assert body["error"]["type"] == "auth_error" and body["error"]["code"] == "401"


async def test_master_key_is_proxy_admin_everywhere() -> None:
    """The master key (constant-time compare) passes every route as proxy_admin."""
    decision = await (await make()).authorize(
        req({"authorization": "Bearer sk-master-key-1234"}, path="/global/spend/reset")
    )
    assert isinstance(decision, Allow) and decision.role is Role.PROXY_ADMIN


async def test_passthrough_keeps_non_jwt_keys_for_the_upstream() -> None:
    """With non_jwt_tokens: passthrough, a virtual key passes and is not stripped."""
    authorizer = await make("passthrough")
    decision = await authorizer.authorize(req({"authorization": "Bearer sk-virtual-key"}))
    assert isinstance(decision, Allow)
    verdict = render(decision, authorizer.policy)
    assert "authorization" not in verdict.remove


async def test_passthrough_never_excuses_a_bad_jwt() -> None:
    """A JWT-shaped token that fails verification is refused even in passthrough mode."""
    decision = await (await make("passthrough")).authorize(
        req({"authorization": f"Bearer {rs_token({'sub': 'a'}, name='b', kid=rsa_jwk()['kid'])}"})
    )
    assert isinstance(decision, Deny) and decision.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "path",
    [
        "/v1/../admin",
        "/v1/%2e%2e/x",
        "/v1%2fchat",
        "relative",
        "/v1\\x",
        "/v1/chat\x00",
    ],
)
async def test_odd_paths_are_400_before_any_token_work(path: str) -> None:
    """Dot-segments, encoded separators, backslashes and NUL are refused with 400."""
    decision = await (await make()).authorize(req({}, path=path))
    assert isinstance(decision, Deny) and (decision.status, decision.reason) == (
        400,
        Reason.BAD_PATH,
    )


async def test_query_string_is_ignored_for_routes() -> None:
    """A query string does not change which route matches."""
    decision = await (await make()).authorize(
        req({"authorization": f"Bearer {rs_token({'sub': 'a'})}"}, path="/v1/chat/completions?x=1")
    )
    assert isinstance(decision, Allow)


async def test_internal_errors_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception anywhere in the pipeline becomes a 500 deny, not an allow or a crash."""
    authorizer = await make()

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("secret-token-text")

    monkeypatch.setattr("extauthz.authorizer.judge_body", boom)
    decision = await authorizer.authorize(
        req({"authorization": f"Bearer {rs_token({'sub': 'a'})}"})
    )
    assert isinstance(decision, Deny) and decision.status == 500
    assert "secret-token-text" not in decision.message


def test_allow_verdict_sets_known_and_removes_unknown_identity_headers() -> None:
    """Unknown identity values are removed, never passed through from the client."""
    policy = compile_policy(parse_yaml(POLICY_YAML % "reject"), {"JWT_PUBLIC_KEY_URL": "u"}).policy
    from extauthz.model import Identity

    verdict = render(Allow(Identity("jwt", user_id="u1"), Role.INTERNAL_USER, "m"), policy)
    assert dict(verdict.headers) == {"x-auth-user-id": "u1", "x-auth-user-role": "internal_user"}
    for header in (
        "x-auth-team-id",
        "x-auth-org-id",
        "x-auth-end-user-id",
        "x-auth-user-email",
        "authorization",
        "x-api-key",
    ):
        assert header in verdict.remove
    assert verdict.metadata == {
        "decision": "allow",
        "user_id": "u1",
        "role": "internal_user",
        "model": "m",
    }


def test_extract_credential_prefers_litellm_order() -> None:
    """x-litellm-api-key wins over Authorization, as in LiteLLM."""
    cred = extract_credential({"authorization": "Bearer b", "x-litellm-api-key": "a"})
    assert cred is not None and (cred.value, cred.header) == ("a", "x-litellm-api-key")


async def test_admin_api_paths_keep_the_credential_for_the_sidecar() -> None:
    """The sidecar re-authenticates its own admin API, so the credential is not stripped there."""
    authorizer = await make()
    master = {"authorization": "Bearer sk-master-key-1234"}
    kept = await authorizer.authorize(req(master, path="/team/block", body={"team_id": "t"}))
    stripped = await authorizer.authorize(req(master, path="/key/generate", body={}))
    assert isinstance(kept, Allow) and isinstance(stripped, Allow)
    assert "authorization" not in render(kept, authorizer.policy).remove
    assert "authorization" in render(stripped, authorizer.policy).remove


@pytest.mark.parametrize(
    "path",
    [
        "/%74eam/info?team_id=x",
        "/%74eam/list",
        "/%75ser/info",
        "/te%61m/block",
        "/team/%69nfo",
        "/team/info%3Fx",  # %3F is no query separator: this is the path "/team/info?x"
        "/customer/%6Cist",
    ],
)
async def test_admin_paths_in_percent_escapes_lose_the_credential(path: str) -> None:
    """Issue 13: the route check decodes the path, Envoy routes on it as sent: only a path that
    is an admin API path byte for byte goes to the sidecar's admin API and keeps the credential.
    Asked after the literal path (a remembered admission), too."""
    authorizer = await make()
    master = {"authorization": "Bearer sk-master-key-1234"}
    user = {"authorization": f"Bearer {rs_token({'sub': 'a'})}"}  # internal_user: info routes
    from urllib.parse import unquote

    literal = unquote(path.partition("?")[0]).partition("?")[0]
    kept = await authorizer.authorize(req(master, path=literal, body={}))
    assert isinstance(kept, Allow) and "authorization" not in render(kept, authorizer.policy).remove
    for headers in (master, user):
        decision = await authorizer.authorize(req(headers, path=path, body={}))
        if isinstance(decision, Deny):  # a user on a management route: refused anyway
            assert headers is user and decision.reason is Reason.ROUTE_NOT_ALLOWED
            continue
        assert "authorization" in render(decision, authorizer.policy).remove, decision


def test_admin_api_paths_match_the_routes_the_sidecar_serves() -> None:
    """The router is built from ADMIN_API_ROUTES: every entry has a handler and nothing else
    under /team, /user or /customer is served (credentials are kept on exactly these)."""
    from typing import cast

    from extauthz.admin import http_api
    from extauthz.admin.service import AdminService
    from extauthz.policy.admin_paths import ADMIN_API_PATHS

    app = http_api.build_app(lambda: (True, {}), cast(AdminService, object()))
    served = {
        r.resource.canonical
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    } - {"/healthz", "/readyz", "/metrics"}
    assert served == set(ADMIN_API_PATHS)


TEAM_POLICY_YAML = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth: {user_id_jwt_field: sub, team_id_jwt_field: team}
  role_permissions:
    - {role: team, models: [m], routes: [%s]}
"""


async def make_team(routes: str = "/v1/chat/completions") -> Authorizer:
    authorizer = await make()
    authorizer.set_policy(team_policy(routes))
    return authorizer


def team_policy(routes: str) -> Any:
    text = TEAM_POLICY_YAML % routes
    return compile_policy(parse_yaml(text), {"JWT_PUBLIC_KEY_URL": "u"}).policy


async def test_a_remembered_admission_yields_to_a_new_state_snapshot() -> None:
    """Blocking a team takes effect on the team's very next request, even on a path the
    authorizer has just admitted it to (and unblocking does too)."""
    from extauthz.state.protocol import StateSnapshot

    authorizer = await make_team()
    request = req({"authorization": f"Bearer {rs_token({'sub': 'a', 'team': 't1'})}"})
    assert isinstance(await authorizer.authorize(request), Allow)
    assert isinstance(await authorizer.authorize(request), Allow)  # now from the memo
    authorizer.state.current = StateSnapshot(blocked_teams=frozenset({"t1"}), version=1)
    blocked = await authorizer.authorize(request)
    assert isinstance(blocked, Deny) and blocked.reason is Reason.TEAM_BLOCKED
    authorizer.state.current = StateSnapshot(version=2)
    assert isinstance(await authorizer.authorize(request), Allow)


async def test_a_remembered_admission_yields_to_a_reloaded_policy() -> None:
    authorizer = await make_team()
    request = req({"authorization": f"Bearer {rs_token({'sub': 'a', 'team': 't1'})}"})
    assert isinstance(await authorizer.authorize(request), Allow)
    authorizer.set_policy(team_policy("/v1/embeddings"))
    denied = await authorizer.authorize(request)
    assert isinstance(denied, Deny) and denied.reason is Reason.ROUTE_NOT_ALLOWED


async def test_the_body_is_judged_on_every_request_of_a_remembered_caller() -> None:
    """Only the body-free part is remembered: each request's model is read and checked."""
    authorizer = await make_team()
    token = rs_token({"sub": "a", "team": "t1"})
    auth = {"authorization": f"Bearer {token}"}
    assert isinstance(await authorizer.authorize(req(auth, body={"model": "m"})), Allow)
    other = await authorizer.authorize(req(auth, body={"model": "other"}))
    assert isinstance(other, Deny) and other.reason is Reason.MODEL_NOT_ALLOWED
    broken = await authorizer.authorize(req(auth, body={"model": 1}))
    assert isinstance(broken, Deny) and broken.reason is Reason.BAD_BODY


async def test_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client inventing paths cannot grow the memos past their size."""
    monkeypatch.setattr("extauthz.authorizer.MEMO_SIZE", 8)
    authorizer = await make()
    token = rs_token({"sub": "a"})
    for i in range(50):
        await authorizer.authorize(req({"authorization": f"Bearer {token}"}, path=f"/p{i}"))
    assert 0 < len(authorizer._paths) <= 8
    assert 0 < len(authorizer._admissions[2]) <= 8


def _junk_request(i: int, token: str | None) -> RequestView:
    """A request with a path no other has: refused as too long, or accepted but long."""
    stem = f"/v1/junk-{i:06d}-"
    length = (58 * 1024, 8000, 2000)[i % 3]
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return req(headers, path=stem + "a" * (length - len(stem)))


@pytest.mark.parametrize(
    "token", [None, "sk-not-a-key", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "sk-master-key-1234"]
)
async def test_junk_paths_leave_no_memory_behind(token: str | None) -> None:
    """Issue 13: 3,000 unauthenticated requests with distinct 58 KB paths grew the sidecar by
    170 MB, because the path memo kept every raw path. Refused and long paths are not
    remembered, by any memo, whoever sends them (here: nobody, junk, a forgery, the master key)."""
    import gc
    import tracemalloc

    authorizer = await make()
    for i in range(3):  # whatever a first call sets up is not junk's cost
        await authorizer.authorize(_junk_request(i, token))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sent = 0
        for i in range(3, 303):  # each path made here and dropped after its decision
            request = _junk_request(i, token)
            sent += len(request.path)
            decision = await authorizer.authorize(request)
            assert isinstance(decision, Allow) or decision.status in (400, 401), decision
        del request, decision
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 256 * 1024, f"{kept:,} bytes kept after {sent:,} bytes of paths"


async def test_short_checked_paths_are_still_remembered() -> None:
    """The memos still serve the warm path: a short, valid path is checked once."""
    authorizer = await make()
    token = rs_token({"sub": "a"})
    for _ in range(3):
        decision = await authorizer.authorize(req({"authorization": f"Bearer {token}"}))
        assert isinstance(decision, Allow)
    assert list(authorizer._paths) == ["/v1/chat/completions"]
    assert len(authorizer._admissions[2]) == 1

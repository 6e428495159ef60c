"""general_settings.enforce_user_param: LiteLLM's routes, where ``user`` is read from, who is
checked, the fail-closed answers for bodies we cannot read, and the worker path."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from litellm.proxy._types import LiteLLMRoutes
from litellm.proxy.auth.route_checks import RouteChecks

from extauthz.authorizer import Authorizer
from extauthz.bodyreader import BodyReader
from extauthz.config.gate import describe_gate
from extauthz.config.schema import REFUSED_GENERAL, REFUSED_JWTAUTH
from extauthz.errors import ConfigError
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import Allow, Deny, Reason, RequestView, deny_headers
from extauthz.policy import userparam
from extauthz.policy.compiled import Policy
from extauthz.policy.litellm_routes import GROUPS
from extauthz.policy.models import MAX_JSON_CONTAINERS, read_models
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk
from tests.unit.test_gate import ADMIN, MASTER, TEAM, USER, policy_of

# -- the routes: LiteLLM's own function decides ---------------------------------------------------


def _litellm_applies(route: str) -> bool:
    is_mcp = route in LiteLLMRoutes.mcp_routes.value or RouteChecks.check_route_access(
        route=route, allowed_routes=LiteLLMRoutes.mcp_routes.value
    )
    return RouteChecks.is_llm_api_route(route=route) and not is_mcp


def _sample_paths() -> list[str]:
    """Every template of every group, filled in several ways, and some neighbours."""
    paths: set[str] = set()
    for templates in GROUPS.values():
        for t in templates:
            paths.add(t)
            paths.add(re.sub(r"\{[^}]+\}", "abc", t))
            paths.add(re.sub(r"\{[^}]+\}", "a/b", t))
            paths.add(re.sub(r"\{[^}]+\}", "a:b", t))
            paths.add(t.rstrip("*") + "x/y")
            paths.add(t + "/extra")
    paths |= {
        "/",
        "/openai/deployments/gpt-4o/chat/completions",
        "/openai/deployments/a/b/chat/completions",
        "/engines/x/chat/completions",
        "/bedrock",
        "/bedrock/model/invoke",
        "/bedrockx",
        "/mcp/tools/call",
        "/mcp/anything",
        "/a2a/agent-1/message/send",
        "/v1/threads/thread_1/runs",
        "/chat/completions\n",
        "/key/generate",
    }
    return sorted(paths)


def test_routes_are_litellms() -> None:
    paths = _sample_paths()
    differ = [p for p in paths if userparam.applies(p) != _litellm_applies(p)]
    assert differ == []
    # The comparison is not vacuous: both kinds of route are in the sample.
    assert sum(userparam.applies(p) for p in paths) > 100
    assert sum(not userparam.applies(p) for p in paths) > 100


# -- where `user` is read from ------------------------------------------------------------------


def _read(body: bytes, query: str = "", content_type: str | None = "application/json") -> Any:
    return read_models("/v1/chat/completions", query, "POST", content_type, body, False)


@pytest.mark.parametrize(
    ("body", "query", "content_type", "expected"),
    [
        (b'{"model": "m", "user": "u1"}', "", "application/json", True),
        (b'{"model": "m", "user": null}', "", "application/json", True),  # the key counts
        (b'{"model": "m", "user": ""}', "", "application/json", True),
        (b'{"model": "m"}', "", "application/json", False),
        (b'{"model": "m", "metadata": {"user": "u"}}', "", "application/json", False),
        (b'{"model": "m", "users": "u"}', "", "application/json", False),
        (b'{"model": "m", "User": "u"}', "", "application/json", False),
        (b'{"model": "m"}', "user=u1", "application/json", True),  # LiteLLM adds the query
        (b'{"model": "m"}', "user=", "application/json", True),
        (b'{"model": "m"}', "%75ser=u1", "application/json", True),
        (b'{"model": "m"}', "username=u1", "application/json", False),
        (b"", "", "application/json", False),
        (b"[1, 2]", "", "application/json", False),
        (b"model=m&user=u1", "", "application/x-www-form-urlencoded", True),
        (b"model=m", "", "application/x-www-form-urlencoded", False),
        (b"model=m&x=1;user=u1", "", "application/x-www-form-urlencoded", False),  # 1 reading
    ],
)
def test_user_is_read_where_litellm_reads_it(
    body: bytes, query: str, content_type: str, expected: bool
) -> None:
    read = _read(body, query, content_type)
    assert read.error is None
    assert read.user is expected


def _multipart(*parts: tuple[str, str, bool]) -> tuple[bytes, str]:
    chunks = []
    for name, value, is_file in parts:
        filename = '; filename="f.wav"' if is_file else ""
        chunks.append(
            f'--B\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n{value}\r\n'
        )
    return ("".join(chunks) + "--B--\r\n").encode(), "multipart/form-data; boundary=B"


def test_multipart_user_field() -> None:
    body, ctype = _multipart(("model", "whisper", False), ("user", "u1", False))
    read = _read(body, content_type=ctype)
    assert read.models == ("whisper",) and read.user is True
    body, ctype = _multipart(("model", "whisper", False), ("file", "user", True))
    assert _read(body, content_type=ctype).user is False


def test_cut_and_complex_bodies_know_only_the_query() -> None:
    cut = read_models("/v1/chat/completions", "", "POST", None, b'{"user": "u', True)
    assert cut.cut and not cut.user
    cut_q = read_models("/v1/chat/completions", "user=u", "POST", None, b'{"user": "u', True)
    assert cut_q.cut and cut_q.user
    big = b'{"user": "u", "x": [' + b"{}," * (MAX_JSON_CONTAINERS + 1) + b"{}]}"
    complex_read = _read(big)
    assert complex_read.complex and not complex_read.user


# -- the pipeline -------------------------------------------------------------------------------


async def _authorizer(policy: Policy, body_reader: BodyReader | None = None) -> Authorizer:
    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    return Authorizer(policy, verifier, body_reader=body_reader)


def _view(
    caller: Any,
    body: dict[str, Any] | bytes,
    path: str = "/v1/chat/completions",
    method: str = "POST",
) -> RequestView:
    key = MASTER if caller == "master" else rs_token(caller)
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RequestView(method, path, headers, raw)


@pytest.mark.parametrize("caller", [TEAM, USER, ADMIN, "master"])
async def test_every_caller_must_name_user(caller: Any) -> None:
    auth = await _authorizer(policy_of({"enforce_user_param": True}))
    missing = await auth.authorize(_view(caller, {"model": "m"}))
    assert isinstance(missing, Deny), missing
    assert missing.status == 401 and missing.reason is Reason.USER_PARAM_MISSING
    assert "enforce_user_param" in missing.message
    named = await auth.authorize(_view(caller, {"model": "m", "user": "end-user-1"}))
    assert isinstance(named, Allow), named


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/chat/completions", "GET"),  # only POST
        ("/team/new", "POST"),  # management (/v1/models is an LLM API route to LiteLLM)
        ("/key/generate", "POST"),  # management
        ("/mcp/tools/call", "POST"),  # an MCP route
    ],
)
async def test_outside_the_check(path: str, method: str) -> None:
    auth = await _authorizer(policy_of({"enforce_user_param": True}))
    decision = await auth.authorize(_view("master", {"model": "m"}, path, method))
    assert not (isinstance(decision, Deny) and decision.reason is Reason.USER_PARAM_MISSING)
    assert userparam.applies(path) is (path == "/v1/chat/completions")


async def test_off_by_default() -> None:
    auth = await _authorizer(policy_of({}))
    assert isinstance(await auth.authorize(_view(TEAM, {"model": "m"})), Allow)


async def test_model_refusal_comes_first_as_in_litellm() -> None:
    policy = policy_of(
        {
            "enforce_user_param": True,
            "role_permissions": [{"role": "team", "models": ["allowed-model"]}],
        }
    )
    auth = await _authorizer(policy)
    decision = await auth.authorize(_view(TEAM, {"model": "other"}))
    assert isinstance(decision, Deny) and decision.reason is Reason.MODEL_NOT_ALLOWED


async def test_unreadable_bodies_fail_closed() -> None:
    auth = await _authorizer(policy_of({"enforce_user_param": True}))
    cut = _view(TEAM, b'{"model": "m", "user": "u"')._replace(body_cut=True)
    decision = await auth.authorize(cut)
    assert isinstance(decision, Deny) and decision.status == 413
    assert decision.reason is Reason.BODY_CUT and "`user`" in decision.message
    big = b'{"model": "m", "user": "u", "x": [' + b"{}," * (MAX_JSON_CONTAINERS + 1) + b"{}]}"
    complex_decision = await auth.authorize(_view(TEAM, big))
    assert isinstance(complex_decision, Deny) and complex_decision.status == 413
    assert complex_decision.reason is Reason.BODY_TOO_COMPLEX
    bad = await auth.authorize(_view(TEAM, b'{"model": "m", "user": '))
    assert isinstance(bad, Deny) and bad.reason is Reason.BAD_BODY and bad.status == 400


async def test_large_bodies_read_in_the_worker() -> None:
    reader = BodyReader(threshold=1024)
    try:
        auth = await _authorizer(policy_of({"enforce_user_param": True}), reader)
        pad = "x" * 4096
        with_user = await auth.authorize(_view(TEAM, {"model": "m", "user": "u", "pad": pad}))
        assert isinstance(with_user, Allow), with_user
        without = await auth.authorize(_view(TEAM, {"model": "m", "pad": pad}))
        assert isinstance(without, Deny) and without.reason is Reason.USER_PARAM_MISSING
    finally:
        reader.close()


def test_challenge_is_not_invalid_token() -> None:
    headers = dict(deny_headers(Reason.USER_PARAM_MISSING, 401))
    assert headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert dict(deny_headers(Reason.BAD_SIGNATURE, 401))["www-authenticate"].endswith(
        '"invalid_token"'
    )


def test_check_config_shows_it() -> None:
    lines = describe_gate(policy_of({"enforce_user_param": True}).gate)
    assert any(line.startswith("enforce_user_param:") for line in lines)
    assert not any("enforce_user_param" in line for line in describe_gate(policy_of({}).gate))


# -- the refused keys: one table of reasons, in the start-up error and the README ----------------

README = Path(__file__).resolve().parents[2] / "README.md"


def _refused_paragraph() -> str:
    text = README.read_text()
    start = text.index("**Refused**")
    return text[start : text.index("\nOther LiteLLM keys", start)]


@pytest.mark.parametrize(("key", "why"), sorted(REFUSED_JWTAUTH.items()))
def test_refused_jwtauth_key_says_why(key: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        policy_of({"litellm_jwtauth": {"user_id_jwt_field": "sub", key: "on"}})
    (problem,) = [p for p in err.value.problems if key in p]
    assert why in problem and "Remove it" in problem
    assert f"`{key}`" in _refused_paragraph()


@pytest.mark.parametrize(("key", "why"), sorted(REFUSED_GENERAL.items()))
def test_refused_general_key_says_why(key: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        policy_of({key: "my.module.fn"})
    (problem,) = [p for p in err.value.problems if key in p]
    assert why in problem
    assert f"`{key}`" in _refused_paragraph()


def test_database_keys_say_so_and_implemented_keys_are_gone() -> None:
    paragraph = _refused_paragraph()
    assert "LiteLLM's database" in paragraph and "custom_validate" in paragraph
    assert "enforce_user_param" not in paragraph
    assert "routing_overrides" not in paragraph and "team_ids_jwt_field" not in paragraph
    assert paragraph.count("upsert_sso_user_to_team") == 1
    assert "`upsert_sso_user_to_team` is accepted" in paragraph
    # LiteLLM 1.108.7 reads upsert_sso_user_to_team nowhere: accepted, with a warning.
    assert isinstance(policy_of({"litellm_jwtauth": {"upsert_sso_user_to_team": True}}), Policy)

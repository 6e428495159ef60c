"""``litellm_jwtauth.issuers`` and ``custom_validate`` in the pipeline, with in-memory key
sources: hostile ``iss`` values, the fallback to the global keys, config errors, and the
validator's contract (only True lets in; every request; nothing of the claims in messages)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

from extauthz.authorizer import Authorizer
from extauthz.config.loader import compile_policy
from extauthz.errors import ConfigError
from extauthz.identity.jwks import JwksSource
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import Allow, Deny, Reason, RequestView
from extauthz.policy.compiled import Policy
from tests.unit.keys import NOW, jwks, raw_token, rs_token, rsa_jwk

A, B = "https://a.example", "https://b.example"


def config(global_keys: bool = False, **jwtauth: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "team_id_jwt_field": "team",
        "issuers": [
            {"issuer": A, "audience": "api-a", "jwks_url": "https://keys.example/a"},
            {
                "issuer": B,
                "audience": "api-b",
                "jwks_url": "https://keys.example/b",
                "team_id_jwt_field": "org",
            },
        ],
        **jwtauth,
    }
    ours: dict[str, Any] = {"public_key_url": "https://keys.example/global"} if global_keys else {}
    return {
        "general_settings": {"enable_jwt_auth": True, "litellm_jwtauth": auth},
        "extauthz": ours,
    }


def policy_of(data: dict[str, Any], source: str = "config") -> Policy:
    return compile_policy(data, {}, source).policy


async def authorizer(policy: Policy) -> Authorizer:
    docs = {
        "https://keys.example/a": jwks(rsa_jwk("a")),
        "https://keys.example/b": jwks(rsa_jwk("b")),
        "https://keys.example/global": jwks(rsa_jwk("g")),
    }

    async def fetch(url: str) -> dict[str, Any]:
        return docs[url]

    sources = {}
    for url in ("https://keys.example/global", "https://keys.example/a", "https://keys.example/b"):
        sources[url] = JwksSource((url,), fetch=fetch)
        await sources[url].refresh()
    verifier = TokenVerifier(
        sources["https://keys.example/global"],
        policy.token_rules,
        clock=lambda: NOW,
        issuer_keys={A: sources["https://keys.example/a"], B: sources["https://keys.example/b"]},
    )
    return Authorizer(policy, verifier)


def without_global(auth: Authorizer) -> Authorizer:
    assert auth.verifier is not None
    auth.verifier.keys.urls = ()  # as the runtime builds it when no public_key_url is set
    return auth


async def ask(auth: Authorizer, token: str) -> Allow | Deny:
    request = RequestView(
        "POST",
        "/v1/chat/completions",
        {"authorization": f"Bearer {token}", "content-type": "application/json"},
        b'{"model": "m"}',
    )
    decision = await auth.authorize(request)
    assert isinstance(decision, Allow | Deny)
    return decision


async def test_each_issuer_uses_its_own_keys_audience_and_fields() -> None:
    auth = without_global(await authorizer(policy_of(config())))
    got = await ask(auth, rs_token({"iss": A, "aud": "api-a", "team": "t-a"}, "a"))
    assert isinstance(got, Allow) and (got.identity.issuer, got.identity.team_id) == (A, "t-a")
    got = await ask(auth, rs_token({"iss": B, "aud": "api-b", "org": "t-b", "team": "x"}, "b"))
    assert isinstance(got, Allow) and (got.identity.issuer, got.identity.team_id) == (B, "t-b")
    # A's key cannot sign for B, whatever the token's header says
    forged = await ask(auth, rs_token({"iss": B, "aud": "api-b", "org": "t"}, "a"))
    assert isinstance(forged, Deny) and forged.status == 401
    wrong_aud = await ask(auth, rs_token({"iss": A, "aud": "api-b", "team": "t"}, "a"))
    assert isinstance(wrong_aud, Deny) and wrong_aud.reason is Reason.AUDIENCE_MISMATCH


@pytest.mark.parametrize(
    "iss",
    [None, 42, ["https://a.example"], {"x": 1}, "", "https://a.example/", "h" * 4000, A.upper()],
    ids=["absent", "number", "list", "object", "empty", "trailing-slash", "huge", "case"],
)
async def test_an_iss_naming_no_issuer_is_refused_without_global_keys(iss: object) -> None:
    auth = without_global(await authorizer(policy_of(config())))
    claims: dict[str, Any] = {"aud": "api-a", "team": "t"}
    if iss is not None:
        claims["iss"] = iss
    got = await ask(auth, rs_token(claims, "a"))
    assert isinstance(got, Deny) and (got.status, got.reason) == (401, Reason.ISSUER_MISMATCH)
    assert A in got.message and B in got.message
    assert "h" * 100 not in got.message  # the token's own value is not echoed


async def test_a_payload_that_is_not_json_is_malformed() -> None:
    auth = without_global(await authorizer(policy_of(config())))
    header = raw_token({"alg": "RS256", "kid": "x"}, {}).split(".")[0]
    got = await ask(auth, f"{header}.bm90IGpzb24.c2ln")
    assert isinstance(got, Deny) and got.reason is Reason.MALFORMED_TOKEN


async def test_an_unknown_issuer_goes_to_the_global_keys_as_in_litellm() -> None:
    auth = await authorizer(policy_of(config(global_keys=True)))
    got = await ask(auth, rs_token({"iss": "https://other.example", "team": "t-g"}, "g"))
    assert isinstance(got, Allow) and got.identity.issuer is None and got.identity.team_id == "t-g"
    # ...but a token naming A is judged by A alone, even when signed by a global key
    got = await ask(auth, rs_token({"iss": A, "aud": "api-a", "team": "t"}, "g"))
    assert isinstance(got, Deny) and got.status == 401


async def test_an_issuers_own_team_ids_field_falls_back_to_the_global_one() -> None:
    """An entry's team_ids_jwt_field names its tokens' teams; absent or empty in a token (or
    not set on the entry), the global team_ids_jwt_field is read, as LiteLLM's issuer mapping
    does; an empty list in the entry's claim is no teams, not a fallback."""

    def teams(got: Allow | Deny) -> tuple[str, ...] | None:
        # the identity read from the token (the team claim "team" is missing: a 403 after it)
        return None if got.identity is None else got.identity.team_ids

    data = config(team_ids_jwt_field="groups", user_id_jwt_field="sub")
    data["general_settings"]["litellm_jwtauth"]["issuers"][1]["team_ids_jwt_field"] = "wids"
    auth = without_global(await authorizer(policy_of(data)))
    b = {"iss": B, "aud": "api-b", "sub": "u"}
    got = await ask(auth, rs_token({**b, "wids": ["t-1", "t-2"], "groups": ["g"]}, "b"))
    assert teams(got) == ("t-1", "t-2")
    got = await ask(auth, rs_token({**b, "wids": "t-3", "groups": ["g"]}, "b"))
    assert teams(got) == ("t-3",)
    for absent in ({}, {"wids": ""}, {"wids": None}):
        got = await ask(auth, rs_token({**b, **absent, "groups": ["g"]}, "b"))
        assert teams(got) == ("g",), absent
    got = await ask(auth, rs_token({**b, "wids": [], "groups": ["g"]}, "b"))
    assert teams(got) == ()
    # entry A sets none: the global field
    a = {"iss": A, "aud": "api-a", "sub": "u"}
    got = await ask(auth, rs_token({**a, "wids": ["x"], "groups": ["g"]}, "a"))
    assert teams(got) == ("g",)
    # a value that is no id is refused, never forwarded
    got = await ask(auth, rs_token({**b, "wids": [{"x": 1}]}, "b"))
    assert isinstance(got, Deny) and (got.status, got.reason) == (401, Reason.MALFORMED_TOKEN)


@pytest.mark.parametrize(
    ("entry", "expect"),
    [
        ({"issuer": A}, "must set audience"),
        ({"issuer": A, "audience": "x", "disable_audience_validation": True}, "cannot be set"),
        ({"issuer": A, "audience": []}, "audience: an empty list"),  # else: aud unchecked
        ({"issuer": A, "audience": "x", "virtual_key_claim_field": "sub"}, "database"),
        ({"issuer": "not a url", "audience": "x"}, "jwks_url"),
        ({"issuer": A, "audience": "x", "jwks_url": "ftp://k"}, "jwks_url"),
        ({"issuer": A, "audiance": "x"}, "audiance"),
    ],
)
def test_issuer_entry_errors_name_the_key(entry: dict[str, Any], expect: str) -> None:
    data = config()
    data["general_settings"]["litellm_jwtauth"]["issuers"] = [entry]
    with pytest.raises(ConfigError) as exc:
        policy_of(data)
    assert any("issuers[0]" in p and expect in p for p in exc.value.problems), exc.value.problems


def test_a_repeated_issuer_is_refused() -> None:
    data = config()
    data["general_settings"]["litellm_jwtauth"]["issuers"].append({"issuer": A, "audience": "y"})
    with pytest.raises(ConfigError, match="appears twice"):
        policy_of(data)


def test_issuers_alone_are_enough_keys_for_jwt_auth() -> None:
    assert policy_of(config()).token_rules.providers[0][0] == A


# --- custom_validate ---------------------------------------------------------------------

CALLS: list[dict[str, Any]] = []


def accept_team_t(claims: dict[str, Any]) -> Literal[True]:
    CALLS.append(claims)
    return claims.get("team") == "t"  # type: ignore[return-value]


def explode(claims: dict[str, Any]) -> Literal[True]:
    raise RuntimeError(f"secret claim value {claims.get('team')}")


def say_yes(claims: dict[str, Any]) -> Literal[True]:
    return "yes"  # type: ignore[return-value]


def unannotated(claims: dict[str, Any]) -> bool:
    return True


NOT_CALLABLE = 3
HERE = f"{__name__}"


async def test_custom_validate_runs_on_every_request_and_only_true_lets_in() -> None:
    CALLS.clear()
    auth = without_global(
        await authorizer(policy_of(config(custom_validate=f"{HERE}.accept_team_t")))
    )
    token = rs_token({"iss": A, "aud": "api-a", "team": "t", "_litellm_team_id": "forged"}, "a")
    assert isinstance(await ask(auth, token), Allow)
    assert isinstance(await ask(auth, token), Allow)  # a cached token: called again
    assert len(CALLS) == 2
    # what LiteLLM shows it: the issuer added, the token's own _litellm_* claims dropped
    assert CALLS[0]["_litellm_jwt_issuer"] == A and "_litellm_team_id" not in CALLS[0]
    got = await ask(auth, rs_token({"iss": A, "aud": "api-a", "team": "u"}, "a"))
    assert isinstance(got, Deny) and (got.status, got.reason) == (
        403,
        Reason.CUSTOM_VALIDATE_REFUSED,
    )


async def test_custom_validate_issuer_fields_are_shown_normalized() -> None:
    CALLS.clear()
    auth = without_global(
        await authorizer(policy_of(config(custom_validate=f"{HERE}.accept_team_t")))
    )
    await ask(auth, rs_token({"iss": B, "aud": "api-b", "org": "o-1", "team": "t"}, "b"))
    assert CALLS[-1]["_litellm_team_id"] == "o-1" and CALLS[-1]["_litellm_jwt_issuer"] == B


async def test_custom_validate_raising_is_a_401_that_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = without_global(await authorizer(policy_of(config(custom_validate=f"{HERE}.explode"))))
    with caplog.at_level(logging.WARNING):
        got = await ask(auth, rs_token({"iss": A, "aud": "api-a", "team": "hush"}, "a"))
    assert isinstance(got, Deny) and (got.status, got.reason) == (
        401,
        Reason.CUSTOM_VALIDATE_REFUSED,
    )
    assert "hush" not in got.message
    assert any(getattr(r, "error_type", None) == "RuntimeError" for r in caplog.records)
    assert not any("hush" in r.getMessage() for r in caplog.records)


async def test_custom_validate_returning_a_non_bool_is_a_deny(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = without_global(await authorizer(policy_of(config(custom_validate=f"{HERE}.say_yes"))))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            got = await ask(auth, rs_token({"iss": A, "aud": "api-a", "team": "t"}, "a"))
            assert isinstance(got, Deny) and got.status == 403
    told = [r for r in caplog.records if getattr(r, "returned_type", None) == "str"]
    assert len(told) == 1  # said once, not once per request


@pytest.mark.parametrize(
    ("dotted", "expect"),
    [
        ("nodots", "not 'module.function'"),
        ("no_such_module_xyz.fn", "cannot be imported (ModuleNotFoundError)"),
        (f"{HERE}.missing_fn", "cannot be imported (AttributeError)"),
        (f"{HERE}.NOT_CALLABLE", "not a function"),
        (f"{HERE}.unannotated", "Literal[True]"),
        ("s3://bucket/mod.fn", "s3://"),
    ],
)
def test_custom_validate_that_cannot_be_used_is_a_config_error(dotted: str, expect: str) -> None:
    with pytest.raises(ConfigError) as exc:
        policy_of(config(custom_validate=dotted))
    assert any("custom_validate" in p and expect in p for p in exc.value.problems), (
        exc.value.problems
    )


def test_custom_validate_is_found_beside_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "my_checks.py").write_text(
        "from typing import Literal\n\ndef ok(claims: dict) -> Literal[True]:\n    return True\n"
    )
    (tmp_path / "config.yaml").write_text("{}")
    policy = policy_of(config(custom_validate="my_checks.ok"), str(tmp_path / "config.yaml"))
    assert policy.custom_validate is not None and policy.custom_validate({}) is True
    assert "my_checks" not in sys.modules  # loaded from the file, not the import path


def test_userinfo_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs oidc_userinfo_endpoint"):
        policy_of(config(oidc_userinfo_enabled=True))
    with pytest.raises(ConfigError, match="not an https"):
        policy_of(config(oidc_userinfo_enabled=True, oidc_userinfo_endpoint="file:///x"))
    data = config(oidc_userinfo_enabled=True, oidc_userinfo_endpoint="https://idp/userinfo")
    data["extauthz"]["non_jwt_tokens"] = "passthrough"
    with pytest.raises(ConfigError, match="cannot be used together"):
        policy_of(data)
    assert json.dumps(policy_of(config(oidc_userinfo_endpoint="https://x/u")).source)

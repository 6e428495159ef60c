"""Issuers and userinfo against a real OpenID provider (npm oidc-provider, see ``op.py``).

Two provider processes, A and B, each with its own key, audience and claim names; the sidecar
is the real ``Sidecar`` (its key sources, verifier and authorizer), started per test and asked
directly. What is shown: each issuer's tokens are judged by its own keys, audience and claim
fields (keys found by OpenID discovery); an unknown issuer is refused; one provider down leaves
the other's callers alone; an opaque token is resolved at userinfo and its answer cached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz.config.loader import load_policy_file
from extauthz.devtokens import new_private_key, sign_token
from extauthz.model import Allow, Decision, Deny, Reason, RequestView
from extauthz.runtime import ServeOptions, Sidecar
from tests.oidc.op import OpenIdProvider


@pytest.fixture
def providers() -> Iterator[tuple[OpenIdProvider, OpenIdProvider]]:
    a, b = OpenIdProvider(), OpenIdProvider()
    a.start("key-a1")
    b.start("key-b1")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def _config(a: OpenIdProvider, b: OpenIdProvider, userinfo: bool = False) -> dict[str, Any]:
    jwtauth: dict[str, Any] = {
        "user_id_jwt_field": "sub",
        "team_id_jwt_field": "team",  # the global field; B names its own
        "issuers": [
            # no jwks_url: the keys come from the issuer's OpenID discovery document
            {"issuer": a.issuer, "audience": "api-a", "user_email_jwt_field": "email"},
            {"issuer": b.issuer, "audience": "api-b", "team_id_jwt_field": "org"},
        ],
    }
    if userinfo:
        jwtauth.update(
            oidc_userinfo_enabled=True,
            oidc_userinfo_endpoint=a.userinfo,
            oidc_userinfo_cache_ttl=60,
        )
    return {
        "general_settings": {"enable_jwt_auth": True, "litellm_jwtauth": jwtauth},
        "extauthz": {"jwks_refetch_interval_seconds": 0.1, "check_timeout_seconds": 5},
    }


@contextlib.asynccontextmanager
async def sidecar(
    tmp_path: Path, config: dict[str, Any], wait_for: tuple[str, ...]
) -> AsyncIterator[Sidecar]:
    """A started sidecar, once the issuers named in ``wait_for`` have keys."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(config))
    options = ServeOptions(config=str(path), grpc_address="127.0.0.1:0", http_address=None)
    car = Sidecar(options, load_policy_file(str(path), os.environ))
    await car.start()
    try:
        deadline = time.monotonic() + 15
        while not all(car.issuer_keys.sources[i].ready for i in wait_for):
            assert time.monotonic() < deadline, car.readiness()
            await asyncio.sleep(0.05)
        yield car
    finally:
        await car.stop(0)


async def ask(car: Sidecar, token: str) -> Decision:
    return await car.authorizer.authorize(
        RequestView(
            method="POST",
            path="/v1/chat/completions",
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            body=b'{"model": "gpt-4o"}',
        )
    )


def allowed(decision: Decision) -> Allow:
    assert isinstance(decision, Allow), decision
    return decision


def denied(decision: Decision, status: int, reason: Reason) -> Deny:
    assert isinstance(decision, Deny), decision
    assert (decision.status, decision.reason) == (status, reason), decision
    return decision


async def test_each_issuer_with_its_own_audience_and_claim_fields(
    providers: tuple[OpenIdProvider, OpenIdProvider], tmp_path: Path
) -> None:
    a, b = providers
    async with sidecar(tmp_path, _config(a, b), (a.issuer, b.issuer)) as car:
        got_a = allowed(
            await ask(
                car, a.token("alice", {"team": "t-a", "email": "al@a.example"}, audience="api-a")
            )
        )
        assert got_a.identity.issuer == a.issuer
        assert (got_a.identity.team_id, got_a.identity.email) == ("t-a", "al@a.example")
        # B's team is in "org"; its "team" claim is not read (its own field wins when present)
        got_b = allowed(
            await ask(car, b.token("bob", {"org": "t-b", "team": "not-this"}, audience="api-b"))
        )
        assert (got_b.identity.issuer, got_b.identity.team_id) == (b.issuer, "t-b")
        # B's field absent: LiteLLM falls back to the global field
        got_b2 = allowed(await ask(car, b.token("bo", {"team": "t-global"}, audience="api-b")))
        assert got_b2.identity.team_id == "t-global"
        # each issuer's audience is its own: A's audience does not open B
        denied(
            await ask(car, b.token("eve", {"org": "t"}, audience="api-a")),
            401,
            Reason.AUDIENCE_MISMATCH,
        )


async def test_unknown_issuer_and_a_token_naming_a_but_signed_by_b(
    providers: tuple[OpenIdProvider, OpenIdProvider], tmp_path: Path
) -> None:
    a, b = providers
    async with sidecar(tmp_path, _config(a, b), (a.issuer, b.issuer)) as car:
        stranger = sign_token(
            new_private_key(), {"iss": "https://idp.other.example", "aud": "api-a", "team": "t"}
        )
        d = denied(await ask(car, stranger), 401, Reason.ISSUER_MISMATCH)
        assert a.issuer in d.message and b.issuer in d.message
        # B's real token with its payload's iss changed to A: A's keys do not hold B's key
        head, body, sig = b.token("mallory", {"team": "t"}, audience="api-a").split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        claims["iss"] = a.issuer
        forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        denied(await ask(car, f"{head}.{forged_body}.{sig}"), 401, Reason.UNKNOWN_KEY)


async def test_one_provider_down_leaves_the_other_alone(
    providers: tuple[OpenIdProvider, OpenIdProvider], tmp_path: Path
) -> None:
    a, b = providers
    b_token = b.token("bob", {"org": "t-b"}, audience="api-b")
    b.stop()  # down before the sidecar ever got B's keys
    async with sidecar(tmp_path, _config(a, b), (a.issuer,)) as car:
        assert car.readiness()[0], "one provider's keys are enough to serve"
        denied(await ask(car, b_token), 503, Reason.KEYS_UNAVAILABLE)
        allowed(await ask(car, a.token("alice", {"team": "t-a"}, audience="api-a")))
        deadline = time.monotonic() + 15
        while not car.readiness()[1]["issuers"][b.issuer]["last_error"]:  # /readyz says why
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def test_key_rotation_at_one_provider(
    providers: tuple[OpenIdProvider, OpenIdProvider], tmp_path: Path
) -> None:
    a, b = providers
    async with sidecar(tmp_path, _config(a, b), (a.issuer, b.issuer)) as car:
        b_token = b.token("bob", {"org": "t-b"}, audience="api-b")
        allowed(await ask(car, a.token("alice", {"team": "t-a"}, audience="api-a")))
        a.stop()
        a.start("key-a2")  # the same issuer, a new signing key
        rotated = a.token("alice", {"team": "t-a"}, audience="api-a")
        got = allowed(await ask(car, rotated))  # unknown kid: A's keys refetched
        assert got.identity.issuer == a.issuer
        ring = car.issuer_keys.sources[a.issuer].ring
        assert ring is not None and ring.has_kid("key-a2")
        allowed(await ask(car, b_token))  # B untouched


async def test_userinfo_resolves_and_caches_opaque_tokens(
    providers: tuple[OpenIdProvider, OpenIdProvider], tmp_path: Path
) -> None:
    a, b = providers
    async with sidecar(tmp_path, _config(a, b, userinfo=True), (a.issuer, b.issuer)) as car:
        opaque = a.token("carol", {"team": "t-c", "email": "c@a.example"}, opaque=True)
        later = a.token("dave", {"team": "t-d"}, opaque=True)
        got = allowed(await ask(car, opaque))
        assert got.identity.userinfo and got.identity.team_id == "t-c"
        assert got.identity.user_id == "carol"
        denied(await ask(car, "not-a-token-the-provider-issued"), 401, Reason.USERINFO_REJECTED)
        a.stop()
        allowed(await ask(car, opaque))  # the cached answer serves while the provider is down
        denied(await ask(car, later), 503, Reason.USERINFO_UNAVAILABLE)
        allowed(await ask(car, b.token("bob", {"org": "t-b"}, audience="api-b")))


def _cli(*args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "extauthz.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_check_config_and_explain_say_which_issuer_and_whether_userinfo(
    providers: tuple[OpenIdProvider, OpenIdProvider], tmp_path: Path
) -> None:
    a, b = providers
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(_config(a, b, userinfo=True)))
    rc, out = _cli("check-config", str(path))
    assert rc == 0, out
    assert f"issuer {a.issuer}: keys {a.issuer}/.well-known/openid-configuration" in out
    assert f"issuer {b.issuer}" in out and "team org" in out
    assert f"opaque tokens: resolved at {a.userinfo}" in out
    token = b.token("bob", {"org": "t-b"}, audience="api-b")
    rc, out = _cli("explain", "--config", str(path), "--token", token, "--path", "/v1/models")
    shown = json.loads(out)
    assert rc == 0 and shown["issuer_chosen"] == b.issuer and shown["userinfo_used"] is False
    assert shown["identity"]["issuer"] == b.issuer and shown["identity"]["team_id"] == "t-b"
    opaque = a.token("carol", {"team": "t-c"}, opaque=True)
    # --token=VALUE: an opaque token may start with "-", which argparse reads as an option
    rc, out = _cli("explain", "--config", str(path), f"--token={opaque}", "--path", "/v1/models")
    shown = json.loads(out)
    assert rc == 0 and shown["userinfo_used"] is True and shown["identity"]["userinfo"] is True
    assert opaque not in out


async def test_a_reload_adds_and_removes_an_issuer(
    providers: tuple[OpenIdProvider, OpenIdProvider], tmp_path: Path
) -> None:
    a, b = providers
    only_a = _config(a, b)
    only_a["general_settings"]["litellm_jwtauth"]["issuers"] = only_a["general_settings"][
        "litellm_jwtauth"
    ]["issuers"][:1]
    b_token = b.token("bob", {"org": "t-b"}, audience="api-b")
    async with sidecar(tmp_path, only_a, (a.issuer,)) as car:
        denied(await ask(car, b_token), 401, Reason.ISSUER_MISMATCH)
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(_config(a, b)))
        car.apply(load_policy_file(str(path), os.environ))
        deadline = time.monotonic() + 15
        while not car.issuer_keys.sources[b.issuer].ready:  # started by the reload
            assert time.monotonic() < deadline, car.readiness()
            await asyncio.sleep(0.05)
        got = allowed(await ask(car, b_token))
        assert (got.identity.issuer, got.identity.team_id) == (b.issuer, "t-b")
        path.write_text(yaml.safe_dump(only_a))
        car.apply(load_policy_file(str(path), os.environ))
        assert b.issuer not in car.issuer_keys.sources
        denied(await ask(car, b_token), 401, Reason.ISSUER_MISMATCH)  # cached verdicts dropped

"""Key fetching: discovery, several URLs, outages, and the rate-limited unknown-kid refetch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from extauthz.errors import KeySourceError
from extauthz.identity.jwks import HttpFetcher, JwksSource, fetch_jwks, split_urls
from extauthz.identity.keyring import KeyRing
from extauthz.identity.tokens import TokenFailure, TokenRules, read_header
from extauthz.identity.verifier import TokenVerifier, Verified
from extauthz.model import Reason
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk


class FakeIdP:
    """A fetch function over a dict of URL → document, counting calls; None = unreachable."""

    def __init__(self, docs: dict[str, dict[str, Any] | None]) -> None:
        self.docs = docs
        self.calls: list[str] = []

    async def __call__(self, url: str) -> dict[str, Any]:
        self.calls.append(url)
        await asyncio.sleep(0)
        doc = self.docs.get(url)
        if doc is None:
            raise KeySourceError(f"{url}: unreachable")
        return doc


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_split_urls() -> None:
    """JWT_PUBLIC_KEY_URL may hold several comma-separated URLs."""
    assert split_urls(" https://a/jwks ,https://b/.well-known/openid-configuration,") == (
        "https://a/jwks",
        "https://b/.well-known/openid-configuration",
    )


async def test_discovery_document_is_followed_to_jwks_uri() -> None:
    """An OpenID discovery URL leads to its jwks_uri."""
    idp = FakeIdP(
        {
            "https://idp/.well-known/openid-configuration": {"jwks_uri": "https://idp/k"},
            "https://idp/k": jwks(rsa_jwk()),
        }
    )
    doc = await fetch_jwks("https://idp/.well-known/openid-configuration", idp)
    assert doc["keys"][0]["kid"] == rsa_jwk()["kid"]


async def test_document_that_is_neither_is_an_error() -> None:
    """A JSON document without keys or jwks_uri is reported, not silently empty."""
    with pytest.raises(KeySourceError, match="neither a JWKS"):
        await fetch_jwks("https://idp/x", FakeIdP({"https://idp/x": {"hello": 1}}))


async def test_keys_from_several_urls_are_merged() -> None:
    """Tokens from either IdP verify."""
    idp = FakeIdP({"u1": jwks(rsa_jwk("a")), "u2": jwks(rsa_jwk("b"))})
    source = JwksSource(("u1", "u2"), fetch=idp)
    assert await source.refresh()
    assert source.ring is not None and len(source.ring) == 2


async def test_outage_keeps_the_last_good_keys() -> None:
    """A failed refresh keeps the keys we had and records the error."""
    idp = FakeIdP({"u1": jwks(rsa_jwk("a"))})
    source = JwksSource(("u1",), fetch=idp)
    await source.refresh()
    idp.docs["u1"] = None
    assert not await source.refresh()
    assert source.ring is not None and source.ring.has_kid(rsa_jwk("a")["kid"])
    assert source.last_error is not None and "unreachable" in source.last_error


async def test_never_fetched_keys_mean_503() -> None:
    """With no keys ever obtained, a JWT gets keys_unavailable (503), not a 401 or a pass."""
    source = JwksSource(("u1",), fetch=FakeIdP({"u1": None}))
    await source.refresh()
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    result = await verifier.verify(rs_token({"sub": "a"}))
    assert isinstance(result, TokenFailure) and result.reason is Reason.KEYS_UNAVAILABLE


async def test_unknown_kid_triggers_one_refetch_then_verifies() -> None:
    """A rotated-in key is picked up on first sight, without waiting for the TTL."""
    idp = FakeIdP({"u1": jwks(rsa_jwk("a"))})
    source = JwksSource(("u1",), fetch=idp, clock=Clock(100.0))
    await source.refresh()
    idp.docs["u1"] = jwks(rsa_jwk("a"), rsa_jwk("b"))
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    result = await verifier.verify(rs_token({"sub": "b"}, name="b"))
    assert isinstance(result, Verified) and result.claims["sub"] == "b"
    assert idp.calls.count("u1") == 2


async def test_unknown_kid_token_is_prepared_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its header is read (and its issuer chosen) once, not again around the refetch."""
    from extauthz.identity import verifier as verifier_module

    reads: list[int] = []

    def counted(token: str, rules: TokenRules) -> Any:
        reads.append(len(token))
        return read_header(token, rules)

    monkeypatch.setattr(verifier_module, "read_header", counted)
    idp = FakeIdP({"u1": jwks(rsa_jwk("a"))})
    source = JwksSource(("u1",), fetch=idp, clock=Clock(100.0))
    await source.refresh()
    idp.docs["u1"] = jwks(rsa_jwk("a"), rsa_jwk("b"))
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    assert isinstance(await verifier.verify(rs_token({"sub": "b"}, name="b")), Verified)
    assert len(reads) == 1
    unknown = await verifier.verify(rs_token({"sub": "c"}, name="c"))  # still unknown after
    assert isinstance(unknown, TokenFailure) and unknown.reason is Reason.UNKNOWN_KEY
    assert len(reads) == 2


async def test_unknown_kid_refetch_is_rate_limited_and_shared() -> None:
    """A flood of made-up kids causes at most one refetch per interval."""
    idp = FakeIdP({"u1": jwks(rsa_jwk("a"))})
    clock = Clock(100.0)
    source = JwksSource(("u1",), fetch=idp, clock=clock, refetch_interval=5.0)
    await source.refresh()
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    tokens = [rs_token({"n": i}, kid=f"made-up-{i}") for i in range(20)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert all(isinstance(r, TokenFailure) and r.reason is Reason.UNKNOWN_KEY for r in results)
    assert len(idp.calls) == 2  # the initial load and one refetch
    clock.t += 6
    await verifier.verify(rs_token({}, kid="another"))
    assert len(idp.calls) == 3


async def test_key_change_clears_the_token_cache() -> None:
    """A key the IdP withdrew stops verifying at once, even for cached tokens."""
    idp = FakeIdP({"u1": jwks(rsa_jwk("a"))})
    source = JwksSource(("u1",), fetch=idp)
    await source.refresh()
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    token = rs_token({"sub": "a"})
    assert isinstance(await verifier.verify(token), Verified)
    assert verifier.cache_size == 1
    idp.docs["u1"] = jwks(rsa_jwk("b"))
    await source.refresh()
    assert verifier.cache_size == 0
    result = await verifier.verify(token)
    assert isinstance(result, TokenFailure)


async def test_cached_token_expires_with_the_token() -> None:
    """A cache entry never outlives exp + leeway."""
    idp = FakeIdP({"u1": jwks(rsa_jwk("a"))})
    source = JwksSource(("u1",), fetch=idp)
    await source.refresh()
    clock = Clock(NOW)
    verifier = TokenVerifier(source, TokenRules(leeway=0), clock=clock)
    token = rs_token({"sub": "a"}, ttl=60)
    assert isinstance(await verifier.verify(token), Verified)
    clock.t = NOW + 61
    result = await verifier.verify(token)
    assert isinstance(result, TokenFailure) and result.reason is Reason.TOKEN_EXPIRED


async def test_a_cached_token_is_verified_again_after_max_age() -> None:
    """``max_age`` bounds how long a cached verdict stands, whatever the token's ``exp``."""
    idp = FakeIdP({"u1": jwks(rsa_jwk("a"))})
    source = JwksSource(("u1",), fetch=idp)
    await source.refresh()
    clock = Clock(NOW)
    verifier = TokenVerifier(source, TokenRules(), clock=clock, max_age=30)
    token = rs_token({"sub": "a"}, ttl=3600)
    assert isinstance(await verifier.verify(token), Verified)
    idp.docs["u1"] = jwks(rsa_jwk("b"))
    doc = idp.docs["u1"]
    assert doc is not None
    source.ring = KeyRing.from_jwks([doc])  # behind the cache's back
    clock.t = NOW + 29
    assert isinstance(await verifier.verify(token), Verified)  # still the cached verdict
    clock.t = NOW + 30
    assert isinstance(await verifier.verify(token), TokenFailure)  # verified again: kid gone


async def test_file_url_is_read(tmp_path: Path) -> None:
    """file:// JWKS (the dev setup) is read from disk."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(rsa_jwk())))
    fetcher = HttpFetcher(timeout=2)
    doc = await fetcher(f"file://{path}")
    assert doc["keys"][0]["kid"] == rsa_jwk()["kid"]
    with pytest.raises(KeySourceError, match="No such file"):
        await fetcher(f"file://{tmp_path}/missing.json")
    with pytest.raises(KeySourceError, match="only https"):
        await fetcher("ftp://x/y")
    await fetcher.close()

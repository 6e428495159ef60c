"""Decision counts and check durations, as a scrape shows them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, generate_latest

from extauthz import metrics
from extauthz.config.loader import compile_policy
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier, Verified
from extauthz.metrics import CheckStats
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk


def scrape(stats: CheckStats) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(stats)
    samples: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_decisions_are_counted_by_outcome_reason_and_status() -> None:
    stats = CheckStats()
    stats.record(("allow", "allowed", "200"), 0.0002)
    stats.record(("allow", "allowed", "200"), 0.0002)
    stats.record(("deny", "team_blocked", "403"), 0.0002)
    got = scrape(stats)
    assert got['extauthz_decisions_total{outcome="allow",reason="allowed",status="200"}'] == 2
    assert got['extauthz_decisions_total{outcome="deny",reason="team_blocked",status="403"}'] == 1


def test_durations_fill_cumulative_buckets_with_inclusive_bounds() -> None:
    stats = CheckStats(buckets=(0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 3.0):
        stats.record(("allow", "allowed", "200"), seconds)
    got = scrape(stats)
    assert got['extauthz_check_duration_seconds_bucket{le="0.001"}'] == 2  # 0.001 <= 0.001
    assert got['extauthz_check_duration_seconds_bucket{le="0.01"}'] == 3
    assert got['extauthz_check_duration_seconds_bucket{le="+Inf"}'] == 4
    assert got["extauthz_check_duration_seconds_count"] == 4
    assert abs(got["extauthz_check_duration_seconds_sum"] - 3.0065) < 1e-9


def test_token_cache_gauge_reads_the_cache_size_when_scraped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No gauge update per new token: a scrape asks for the size (one process)."""
    registry = CollectorRegistry()
    gauge = Gauge("extauthz_token_cache_entries", "Verified tokens.", registry=registry)
    monkeypatch.setattr(metrics, "TOKEN_CACHE_SIZE", gauge)
    monkeypatch.setattr(metrics, "MULTIPROCESS_DIR", None)
    size = [3]
    assert metrics.report_token_cache(lambda: size[0]) is None
    assert registry.get_sample_value("extauthz_token_cache_entries") == 3
    size[0] = 0  # dropped after a key change: no one had to tell the gauge
    assert registry.get_sample_value("extauthz_token_cache_entries") == 0


def test_token_cache_gauge_is_set_on_every_change_with_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``--workers N`` a scrape reads the workers' files: each must write its size."""
    monkeypatch.setattr(metrics, "MULTIPROCESS_DIR", "/unused")
    setter = metrics.report_token_cache(lambda: 0)
    assert setter == metrics.TOKEN_CACHE_SIZE.set


async def test_verifier_tells_its_cache_size_on_every_change() -> None:
    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    sizes: list[int] = []
    verifier.on_size = sizes.append
    assert isinstance(await verifier.verify(rs_token({"sub": "a"})), Verified)
    assert isinstance(await verifier.verify(rs_token({"sub": "b"})), Verified)
    verifier.set_rules(TokenRules(leeway=5))  # cached verdicts dropped
    assert sizes == [1, 2, 0]


async def test_sidecar_gauge_shows_its_verifier_cache(tmp_path: Path) -> None:
    from extauthz.runtime import ServeOptions, Sidecar

    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(rsa_jwk())))
    data = {
        "general_settings": {"enable_jwt_auth": True},
        "extauthz": {"public_key_url": keys.as_uri()},
    }
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps(data))
    options = ServeOptions(config=str(path), grpc_address="127.0.0.1:0", http_address=None)
    car = Sidecar(options, compile_policy(data, {}, str(path)))
    try:
        verifier = car.authorizer.verifier
        assert verifier is not None
        await verifier.keys.refresh()
        assert isinstance(await verifier.verify(rs_token({"sub": "a"}, now=time.time())), Verified)
        assert REGISTRY.get_sample_value("extauthz_token_cache_entries") == 1
        verifier.set_rules(TokenRules(leeway=1))  # cached verdicts dropped: so is the gauge
        assert REGISTRY.get_sample_value("extauthz_token_cache_entries") == 0
    finally:
        await car.stop()

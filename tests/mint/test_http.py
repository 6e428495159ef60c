"""http.py: /healthz, /readyz, /metrics and /status, with no secret in any answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from extauthz.mint.http import build_app, parse_address, start_http
from extauthz.mint.plan import plan_from_config
from extauthz.mint.refresher import Refresher
from extauthz.mint.sources import OidcTokens
from extauthz.mint.transport import HttpClient

from .configs import STATIC_KEY, mint_config, mint_env
from .standins import Cloud


@pytest.fixture
async def served(
    cloud: Cloud, http: HttpClient, out_dir: Path
) -> AsyncIterator[tuple[Refresher, str]]:
    env = mint_env(cloud)
    plan = plan_from_config(mint_config(cloud), env)
    refresher = Refresher(
        plan.credentials, out_dir=out_dir, http=http, tokens=OidcTokens(http, env, time.time)
    )
    runner, address = await start_http(build_app(refresher, time.time), "127.0.0.1:0")
    yield refresher, f"http://{address}"
    await runner.cleanup()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_healthz_is_up_while_readyz_waits_for_every_credential(
    served: tuple[Refresher, str], cloud: Cloud
) -> None:
    """Before minting: alive but not ready; after: ready; a lapsed credential: not ready."""
    refresher, base = served
    assert (await get(base + "/healthz"))[0] == 200
    status, _, body = await get(base + "/readyz")
    assert status == 503 and "anthropic_claude-3-haiku.aws_credentials" in body
    await refresher.run_once()
    assert (await get(base + "/readyz"))[0] == 200
    refresher.states["gpt-4o.sds.yaml"].expires_at = time.time() - 1
    status, _, body = await get(base + "/readyz")
    assert status == 503 and '"not_ready": ["gpt-4o.sds.yaml"]' in body


async def test_status_shows_kind_expiry_refresh_and_error_but_no_secret(
    served: tuple[Refresher, str], cloud: Cloud
) -> None:
    """Per credential: kind, expiry, last refresh, last error; never a token or key."""
    refresher, base = served
    cloud.entra.outage = True
    await refresher.run_once()
    status, ctype, body = await get(base + "/status")
    assert status == 200 and ctype.startswith("application/json")
    import json

    doc = json.loads(body)
    by_name = {c["credential"]: c for c in doc["credentials"]}
    aws = by_name["anthropic_claude-3-haiku.aws_credentials"]
    assert aws["kind"] == "aws_web_identity" and aws["valid"] and aws["expires_at"].endswith("Z")
    assert aws["last_refresh"] and aws["last_error"] is None
    assert aws["source"] == f"oidc/github/sts.amazonaws.com -> STS {cloud.sts.role_arn}"
    azure = by_name["gpt-4o.sds.yaml"]
    assert not azure["valid"] and "HTTP 503" in azure["last_error"]
    assert azure["consecutive_failures"] == 1 and azure["next_refresh_at"]
    assert by_name["claude-direct.sds.yaml"]["expires_at"] is None
    assert doc["ready"] is False
    for secret in [*cloud.secrets(), STATIC_KEY]:
        assert secret not in body


async def test_metrics_are_prometheus_text(served: tuple[Refresher, str]) -> None:
    """/metrics serves the minter's own registry in the text format."""
    refresher, base = served
    await refresher.run_once()
    status, ctype, body = await get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert "extauthz_mint_credential_expiry_timestamp_seconds" in body
    assert "extauthz_mint_refresh_duration_seconds_bucket" in body
    assert "python_gc" not in body  # not the global registry


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:9193", ("0.0.0.0", 9193)), ("[::1]:0", ("::1", 0)), (":80", ("0.0.0.0", 80))],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT, [v6]:PORT and :PORT."""
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9193", "host:", "host:99999", "host:x"])
def test_parse_address_refuses_malformed(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)

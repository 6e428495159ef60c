"""refresher.py in process: real refresh cycles against the stand-ins, failures and retries."""

from __future__ import annotations

import asyncio
import configparser
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from extauthz.logs import JsonFormatter
from extauthz.mint.plan import plan_from_config
from extauthz.mint.refresher import Refresher
from extauthz.mint.sources import OidcTokens
from extauthz.mint.transport import HttpClient, make_ssl_context

from .configs import AZURE, STATIC, STATIC_KEY, VERTEX, mint_config, mint_env
from .standins import Blackhole, Cloud, ServerThread
from .testca import TestCA

AWS_FILE = "anthropic_claude-3-haiku.aws_credentials"
AZURE_FILE = f"{AZURE}.sds.yaml"
STATIC_FILE = f"{STATIC}.sds.yaml"
VERTEX_FILE = f"{VERTEX}.sds.yaml"


def refresher(cloud: Cloud, http: HttpClient, out_dir: Path, **kw: float) -> Refresher:
    env = mint_env(cloud)
    plan = plan_from_config(mint_config(cloud), env)
    return Refresher(
        plan.credentials,
        out_dir=out_dir,
        http=http,
        tokens=OidcTokens(http, env, time.time),
        **kw,  # type: ignore[arg-type]
    )


def access_key(out_dir: Path) -> str:
    ini = configparser.ConfigParser()
    ini.read(out_dir / AWS_FILE)
    return ini["default"]["aws_access_key_id"]


def bearer(out_dir: Path, filename: str = AZURE_FILE) -> str:
    doc = yaml.safe_load((out_dir / filename).read_text())
    return str(doc["resources"][0]["generic_secret"]["secret"]["inline_string"])


@pytest.fixture
def json_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Every log record so far, rendered as the JSON line the minter would print."""
    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()
    return lambda: [formatter.format(r) for r in caplog.records]


async def wait_for(predicate, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class TestOnce:
    async def test_run_once_writes_every_file(
        self, cloud: Cloud, http: HttpClient, out_dir: Path
    ) -> None:
        """One pass mints the STS, Entra, Vertex and static credentials into their files."""
        r = refresher(cloud, http, out_dir)
        assert await r.run_once()
        assert sorted(p.name for p in out_dir.iterdir()) == sorted(  # noqa: ASYNC240
            [AWS_FILE, AZURE_FILE, VERTEX_FILE, STATIC_FILE]
        )
        assert access_key(out_dir) == list(cloud.sts.issued)[-1]
        assert bearer(out_dir) == f"Bearer {cloud.entra.issued[-1]}"
        assert bearer(out_dir, VERTEX_FILE) == f"Bearer {cloud.iam.issued[-1]}"
        static = yaml.safe_load((out_dir / STATIC_FILE).read_text())
        assert static["resources"][0]["generic_secret"]["secret"]["inline_string"] == STATIC_KEY
        assert r.ready()

    async def test_one_failure_fails_the_pass_and_writes_nothing_for_it(
        self, cloud: Cloud, http: HttpClient, out_dir: Path
    ) -> None:
        """An STS outage fails the pass; the others are still written."""
        cloud.sts.outage = True
        r = refresher(cloud, http, out_dir)
        assert not await r.run_once()
        assert not (out_dir / AWS_FILE).exists()
        assert (out_dir / AZURE_FILE).exists()
        state = r.states[AWS_FILE]
        assert state.failures == 1 and "ServiceUnavailable" in (state.last_error or "")
        assert not r.ready()

    async def test_a_credential_expired_on_arrival_is_not_written(
        self, cloud: Cloud, http: HttpClient, out_dir: Path
    ) -> None:
        """An Expiration in the past (clock skew) is a failure that says to check the clock."""
        cloud.sts.lifetimes.append(-30)
        r = refresher(cloud, http, out_dir)
        await r.attempt(r.states[AWS_FILE])
        assert not (out_dir / AWS_FILE).exists()
        assert "already expired" in (r.states[AWS_FILE].last_error or "")


class TestLoop:
    async def test_short_lived_credentials_are_refreshed_once_at_80_percent(
        self, cloud: Cloud, http: HttpClient, out_dir: Path, json_logs: Callable[[], list[str]]
    ) -> None:
        """With ~2-s credentials each is refreshed at 80 % of the lifetime it was given, once."""
        cloud.sts.lifetimes.extend([2.0, 2.0])
        cloud.entra.lifetimes.extend([2, 2])
        r = refresher(cloud, http, out_dir)
        stop = asyncio.Event()
        task = asyncio.create_task(r.run(stop))
        try:
            await wait_for(
                lambda: len(cloud.sts.issue_times) >= 2 and len(cloud.entra.issue_times) >= 2
            )
        finally:
            stop.set()
            await task
        first_exp = datetime.fromisoformat(next(iter(cloud.sts.issued.values()))["Expiration"])
        lifetimes = {
            "sts": first_exp.timestamp() - cloud.sts.issue_times[0],  # Expiration is rounded up
            "entra": 2.0,
        }
        for name, standin in (("sts", cloud.sts), ("entra", cloud.entra)):
            first, second = standin.issue_times[:2]
            expected = 0.8 * lifetimes[name]
            print(
                f"\nMEASURED {name}: lifetime {lifetimes[name]:.3f} s, refreshed after "
                f"{second - first:.3f} s (80 % = {expected:.3f} s)"
            )
            assert abs((second - first) - expected) < 0.25
        # once each: two mints per credential in this window, not a loop
        assert len(cloud.sts.issue_times) == 2 and len(cloud.entra.issue_times) == 2
        assert r.states[STATIC_FILE].next_refresh_at is None
        assert not any(s in line for line in json_logs() for s in [*cloud.secrets(), STATIC_KEY])

    async def test_an_outage_keeps_the_last_good_credential_and_retries_with_backoff(
        self, cloud: Cloud, http: HttpClient, out_dir: Path, json_logs: Callable[[], list[str]]
    ) -> None:
        """During an STS outage the file keeps the valid credential; after it, a new one comes."""
        cloud.sts.lifetimes.append(1.5)
        r = refresher(cloud, http, out_dir, retry_base=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(r.run(stop))
        try:
            await wait_for(lambda: (out_dir / AWS_FILE).exists())
            good = (out_dir / AWS_FILE).read_text()
            cloud.sts.outage = True
            state = r.states[AWS_FILE]
            await wait_for(lambda: state.failures >= 3)
            assert (out_dir / AWS_FILE).read_text() == good
            assert "ServiceUnavailable" in (state.last_error or "")
            gaps = [
                b - a
                for a, b in zip(cloud.sts.issue_times, cloud.sts.issue_times[1:], strict=False)
            ]
            assert not gaps  # nothing issued during the outage
            cloud.sts.outage = False
            await wait_for(lambda: state.failures == 0)
            assert (out_dir / AWS_FILE).read_text() != good
            assert state.last_error is not None  # kept for /status, with its time
        finally:
            stop.set()
            await task
        failed = [json.loads(x) for x in json_logs() if "refresh failed" in x]
        assert failed and all(f["credential"] == AWS_FILE for f in failed)
        assert failed[0]["current_valid_until"] is not None
        assert not any(s in line for line in json_logs() for s in [*cloud.secrets(), STATIC_KEY])

    async def test_metrics_count_results_and_expose_expiry(
        self, cloud: Cloud, http: HttpClient, out_dir: Path
    ) -> None:
        """refresh_total by result, and expiry/validity gauges per credential."""
        from prometheus_client import generate_latest

        cloud.entra.outage = True
        r = refresher(cloud, http, out_dir)
        await r.run_once()
        text = generate_latest(r.metrics.registry).decode()
        assert (
            f'extauthz_mint_refresh_total{{credential="{AWS_FILE}",result="success"}} 1.0' in text
        )
        assert (
            f'extauthz_mint_refresh_total{{credential="{AZURE_FILE}",result="exchange"}} 1.0'
            in text
        )
        assert (
            f'extauthz_mint_credential_valid{{credential="{AZURE_FILE}",kind="azure_entra"}} 0.0'
            in text
        )
        assert (
            f'extauthz_mint_credential_valid{{credential="{STATIC_FILE}",kind="static"}} 1.0'
            in text
        )
        assert f'extauthz_mint_credential_expiry_timestamp_seconds{{credential="{AWS_FILE}"' in text


class TestIndependence:
    async def test_a_provider_that_hangs_never_stops_the_others_refreshing(
        self, cloud: Cloud, test_ca: TestCA, server_thread: ServerThread, out_dir: Path
    ) -> None:
        """Five Bedrock credentials whose STS accepts connections and never answers (the worst
        kind of down: each attempt lasts its whole 30-s timeout) while Entra and Vertex hand out
        1-s tokens: before any hung attempt has ended, those two have been refreshed again and
        again. Counts, not times: with attempts taken one at a time, neither would be refreshed
        until the hung ones gave up."""
        hung = Blackhole(server_thread)
        config = mint_config(cloud)
        bedrock = config["model_list"][0]
        config["model_list"] += [
            {
                "model_name": f"bedrock-{n}",
                "litellm_params": bedrock["litellm_params"]
                | {"aws_sts_endpoint": f"https://127.0.0.1:{hung.port}"},
            }
            for n in range(5)
        ]
        env = mint_env(cloud)
        cloud.entra.default_lifetime = 1
        cloud.iam.lifetimes.extend([1] * 50)
        http = HttpClient(make_ssl_context(str(test_ca.ca_file)), timeout_seconds=30)
        r = Refresher(
            plan_from_config(config, env).credentials,
            out_dir=out_dir,
            http=http,
            tokens=OidcTokens(http, env, time.time),
        )
        hung_states = [s for s in r.states.values() if s.key.startswith("bedrock-")]
        stop = asyncio.Event()
        task = asyncio.create_task(r.run(stop))
        try:
            await wait_for(
                lambda: len(cloud.entra.issued) >= 4 and len(cloud.iam.issued) >= 4, within=25
            )
            # every hung attempt has started and none has ended
            assert all(s.last_attempt_at is not None for s in hung_states)
            assert not any(s.minted or s.failures for s in hung_states)
        finally:
            stop.set()
            await task
            await http.close()
            hung.close()
        # A refreshed token was written (not the first); the last one issued may not be: the
        # stop can land between the stand-in issuing it and the refresher writing it.
        assert bearer(out_dir) in {f"Bearer {t}" for t in cloud.entra.issued[1:]}
        assert bearer(out_dir, VERTEX_FILE) in {f"Bearer {t}" for t in cloud.iam.issued[1:]}
        assert r.states[AWS_FILE].minted  # the real STS, another port, unaffected
        assert not any((out_dir / s.key).exists() for s in hung_states)

"""Through a real Envoy: SigV4 with STS credentials, Bearer with Entra and Vertex (Google STS +
IAM Credentials) tokens, rotation without restart, an STS outage that keeps the last good
credential while the others go on refreshing, and no secret in the minter's logs.

Timeline (the stand-ins hand out short lifetimes so the test takes seconds):
  t=0     the minter mints c1 (STS, 6 s), a1 (Entra, 4 s) and g1 (Vertex, 4 s); Envoy starts
  t≈1     Envoy signs with c1, injects a1, g1 and the static key; the AWS STS outage begins
  t≈3.2   a1 and g1 are refreshed at 80 % → a2 and g2 reach Envoy (rotation measured)
  t≈5     c1's refresh fails (ServiceUnavailable): c1 stays in the file and Envoy keeps using it
  then    STS comes back, the retry mints c2 → c2 reaches Envoy (rotation measured)
"""

from __future__ import annotations

import configparser
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .configs import STATIC_KEY, mint_config, mint_env
from .envoy import HERE, Envoy, render
from .proc import Minter, write_config
from .standins import Cloud
from .testca import TestCA

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

BEDROCK_PATH = "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke"
AZURE_PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"
AWS_FILE = "anthropic_claude-3-haiku.aws_credentials"
AZURE_FILE = "gpt-4o.sds.yaml"
VERTEX_PATH = (
    "/v1/projects/extauthz-demo/locations/us-central1/publishers/google/models/"
    "gemini-1.5-pro:generateContent"
)
VERTEX_FILE = "gemini-1.5-pro.sds.yaml"
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).encode()


def send(envoy: Envoy, path: str) -> dict[str, Any]:
    """POST through Envoy; the upstream stand-in answers with what it received and checked."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{envoy.port}{path}",
        data=BODY,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer caller-jwt"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def assert_signed_by(seen: dict[str, Any], cloud: Cloud, access_key_id: str) -> None:
    sig = seen["sigv4"]
    assert sig["valid"], sig["canonical_request"]
    assert sig["access_key_id"] == access_key_id
    assert (sig["service"], sig["region"]) == ("bedrock", "us-west-2")
    assert sig["session_token_matches"] and sig["payload_hash_matches"]
    assert {"host", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"} <= set(
        sig["signed_headers"]
    )
    assert seen["host"] == "bedrock-runtime.us-west-2.amazonaws.com"
    assert access_key_id in cloud.sts.issued


def current_key(out: Path) -> str:
    ini = configparser.ConfigParser()
    ini.read(out / AWS_FILE)
    return ini["default"]["aws_access_key_id"]


def poll(envoy: Envoy, path: str, done: Any, within: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        seen = send(envoy, path)
        if done(seen):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"Envoy never used the new credential on {path}")


def test_credentials_reach_the_upstream_through_envoy_and_rotate_without_restart(
    cloud: Cloud, test_ca: TestCA, tmp_path: Path, record_property: Any
) -> None:
    """The full path: stand-in clouds → minter → files → Envoy's own filters → upstream."""
    cloud.sts.lifetimes.append(6.0)
    cloud.entra.lifetimes.append(4)
    cloud.iam.lifetimes.append(4)
    out = tmp_path / "out"
    config = write_config(tmp_path / "policy.yaml", mint_config(cloud, str(test_ca.ca_file)))
    minter = Minter(
        ["--config", str(config), "--out", str(out), "--http-address", "127.0.0.1:0"],
        mint_env(cloud),
    )
    envoy = None
    try:
        minter.wait_ready()
        envoy_config = render(
            HERE / "envoy-test.yaml",
            tmp_path / "envoy.yaml",
            DIR=out,
            CA_FILE=test_ca.ca_file,
            UPSTREAM_PORT=cloud.upstream_port,
        )
        envoy = Envoy(envoy_config, tmp_path)
        pid = envoy.pid

        # SigV4 that botocore verifies with the STS credentials; Bearer Entra token; static key.
        assert_signed_by(send(envoy, BEDROCK_PATH), cloud, current_key(out))
        seen = send(envoy, AZURE_PATH)
        assert seen["authorization"] == f"Bearer {cloud.entra.issued[-1]}"
        assert seen["host"] == "example-resource.openai.azure.com"
        assert send(envoy, "/v1/messages")["x_api_key"] == STATIC_KEY
        seen = send(envoy, VERTEX_PATH)
        assert seen["authorization"] in {f"Bearer {token}" for token in cloud.iam.issued}
        assert seen["host"] == "us-central1-aiplatform.googleapis.com"
        cloud.sts.outage = True
        before = current_key(out)

        # Azure rotation: a2 is written at 80 % of a1's life and Envoy picks it up by itself.
        seen = poll(
            envoy,
            AZURE_PATH,
            lambda s: (
                len(cloud.entra.issued) > 1
                and s["authorization"] == f"Bearer {cloud.entra.issued[-1]}"
            ),
        )
        azure_latency = seen["time"] - (out / AZURE_FILE).stat().st_mtime
        # Vertex rotation, during the AWS STS outage: g2 at 80 % of g1's life, through Envoy.
        seen = poll(
            envoy,
            VERTEX_PATH,
            lambda s: (
                len(cloud.iam.issued) > 1 and s["authorization"] == f"Bearer {cloud.iam.issued[-1]}"
            ),
        )
        vertex_latency = seen["time"] - (out / VERTEX_FILE).stat().st_mtime

        # STS outage: the refresh fails, the file keeps its credential, Envoy keeps signing with it.
        good = (out / AWS_FILE).read_text()
        failed = minter.wait_for_record("credential refresh failed")
        assert failed["credential"] == AWS_FILE and "ServiceUnavailable" in failed["error"]
        assert (out / AWS_FILE).read_text() == good and current_key(out) == before
        assert_signed_by(send(envoy, BEDROCK_PATH), cloud, before)
        _, status = minter.get_json("/status")
        aws = next(c for c in status["credentials"] if c["credential"] == AWS_FILE)
        assert aws["consecutive_failures"] >= 1 and "ServiceUnavailable" in aws["last_error"]

        # STS is back: the retry mints a new credential; Envoy signs with it without a restart.
        cloud.sts.outage = False
        seen = poll(envoy, BEDROCK_PATH, lambda s: s["sigv4"]["access_key_id"] != before)
        assert_signed_by(seen, cloud, list(cloud.sts.issued)[-1])
        aws_latency = seen["time"] - (out / AWS_FILE).stat().st_mtime
        assert envoy.running() and envoy.pid == pid

        record_property(
            "rotation_to_envoy_s",
            {"aws": aws_latency, "azure": azure_latency, "vertex": vertex_latency},
        )
        print(
            f"\nMEASURED file rotation -> Envoy using it: aws_request_signing "
            f"{aws_latency * 1000:.0f} ms, credential_injector {azure_latency * 1000:.0f} ms "
            f"(Entra), {vertex_latency * 1000:.0f} ms (Vertex) (polling every ~10 ms)"
        )
    finally:
        if envoy is not None:
            envoy.stop()
        minter.stop()

    leaked = [s for s in [*cloud.secrets(), STATIC_KEY] if any(s in line for line in minter.lines)]
    assert not leaked, "a secret appeared in the minter's logs"
    assert minter.lines and all(line.startswith("{") for line in minter.lines)
    assert os.stat(out / AWS_FILE).st_mode & 0o777 == 0o600

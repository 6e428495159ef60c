"""Nothing secret on the endpoints anyone may call (issue 13): /healthz, /readyz, /metrics, gRPC
health and reflection, and the log, with signing-key URLs that carry secrets.

The sidecar runs in-process with five key URLs in ``JWT_PUBLIC_KEY_URL``: the IdP's discovery
URL with a password and secret query parameters, and its JWKS URL with a token as the user name
(both work, so the sidecar gets ready), and three that fail, each of whose error texts would
quote the URL: a refused connection, an HTTP 404, and a URL too malformed to parse.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from extauthz.config.loader import load_policy_file
from extauthz.logs import JsonFormatter
from extauthz.runtime import ServeOptions, Sidecar
from tests.integration.harness import ConfigMapDir, Idp, LoopThread, example_policy, request

SECRETS = (
    "hunter2-pw",
    "tok-secret-1",
    "key-secret-2",
    "bob-pw-3",
    "api-secret-4",
    "carol-pw-5",
    "sig-secret-6",
    "dave-pw-7",
    "code-secret-8",
    "lone-user-token-9",
)


@dataclass
class Running:
    sidecar: Sidecar
    log: io.StringIO

    @property
    def http_port(self) -> int:
        assert self.sidecar.http_port is not None
        return self.sidecar.http_port

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.sidecar.grpc_port}"


def key_urls(idp_port: int) -> str:
    base = f"127.0.0.1:{idp_port}"
    return ",".join(
        [
            f"http://alice:hunter2-pw@{base}/.well-known/openid-configuration"
            "?token=tok-secret-1&key=key-secret-2&p=B2C_1_signin",
            "http://bob:bob-pw-3@127.0.0.1:1/jwks.json?api_key=api-secret-4",  # refused
            f"http://carol:carol-pw-5@{base}/missing?sig=sig-secret-6",  # HTTP 404
            "http://dave:dave-pw-7@[::1/jwks.json?code=code-secret-8",  # cannot be parsed
            f"http://lone-user-token-9@{base}/jwks.json",
        ]
    )


@pytest.fixture(scope="module")
def running(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    idp = Idp(key)
    loop_thread.run(idp.start())
    policy = example_policy("unused")
    del policy["extauthz"]["public_key_url"]  # so JWT_PUBLIC_KEY_URL is read
    cm = ConfigMapDir(tmp_path_factory.mktemp("secrets") / "policy")
    cm.write(policy)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JWT_PUBLIC_KEY_URL", key_urls(idp.port))  # read on reloads too
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        options = ServeOptions(
            config=str(cm.path), grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"
        )
        sidecar = Sidecar(options, load_policy_file(str(cm.path), os.environ))

        async def start() -> None:
            await sidecar.start()
            deadline = time.monotonic() + 15
            while not (sidecar.readiness()[0] and sidecar.keys.last_error):
                assert time.monotonic() < deadline, sidecar.readiness()
                await asyncio.sleep(0.05)

        try:
            loop_thread.run(start())
            yield Running(sidecar, log)
        finally:
            loop_thread.run(sidecar.stop(0))
            loop_thread.run(idp.stop())
            # The gRPC pool's threads end with the sidecar (grpcio never shuts them down).
            pool = sidecar.grpc_pool
            deadline = time.monotonic() + 10
            while pool is not None and pool.threads and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pool is not None and pool.threads == 0
            root.removeHandler(handler)
            root.setLevel(old_level)


def assert_no_secret(text: str | bytes, where: str) -> None:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    leaked = [s for s in SECRETS if s in shown]
    assert not leaked, f"{where} shows {leaked}"


def test_readyz_shows_the_key_urls_and_their_errors_without_secrets(running: Running) -> None:
    reply = request(running.http_port, "GET", "/readyz")
    assert reply.status == 200, str(reply)
    assert_no_secret(reply.body, "/readyz")
    keys = reply.json()["keys"]
    assert len(keys["urls"]) == 5
    shown = " ".join(keys["urls"])
    assert "alice" not in shown and "***@127.0.0.1" in shown  # user-info is a credential
    assert "token=***" in shown and "key=***" in shown and "p=B2C_1_signin" in shown
    error = keys["last_error"]
    assert "HTTP 404" in error and "unreachable" in error and "cannot be parsed" in error


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/nonexistent"])
def test_other_http_endpoints_show_no_secret(running: Running, path: str) -> None:
    reply = request(running.http_port, "GET", path)
    assert reply.status in (200, 404), str(reply)
    assert_no_secret(reply.body, path)
    assert_no_secret(json.dumps(reply.headers), f"{path} headers")


@pytest.mark.parametrize("service", ["", "readiness", "nonexistent"])
def test_grpc_health_shows_no_secret(running: Running, service: str) -> None:
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = str(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5))
        except grpc.RpcError as exc:
            answer = f"{exc.code()} {exc.details()}"
    assert_no_secret(answer, f"health {service!r}")


def test_grpc_reflection_shows_no_secret(running: Running) -> None:
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        asks = [reflection_pb2.ServerReflectionRequest(list_services="")]
        answers = list(stub.ServerReflectionInfo(iter(asks), timeout=5))
        services = [s.name for s in answers[0].list_services_response.service]
        asks = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in services]
        answers += list(stub.ServerReflectionInfo(iter(asks), timeout=5))
    assert len(services) >= 4
    for answer in answers:
        assert_no_secret(answer.SerializeToString(), "reflection")


def test_the_log_shows_no_secret(running: Running) -> None:
    text = running.log.getvalue()
    assert "signing-key fetch failed" in text  # the failing URLs were logged ...
    assert_no_secret(text, "the log")  # ... without their secrets


def test_check_config_prints_no_secret(running: Running, tmp_path: Path) -> None:
    """``extauthz check-config`` lists the key URLs; a terminal or CI log is no place for them."""
    import subprocess
    import sys

    policy = running.sidecar.options.config  # JWT_PUBLIC_KEY_URL is inherited
    done = subprocess.run(
        [sys.executable, "-m", "extauthz.cli", "check-config", policy],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signing keys:" in done.stdout
    assert_no_secret(done.stdout + done.stderr, "check-config")

"""The sidecar's gRPC side as a user meets it with grpcurl: reflection, health, Check; on
each gRPC server ``serve`` can run (pygrpc-native, the default, and grpcio's own)."""

from __future__ import annotations

import json
import queue
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz import threads
from extauthz.dev.envoyconf import find_binary
from extauthz.grpcserver import CHOICES
from tests.integration.harness import LoopThread, Stack, chat_body, start_stack

AUTHZ = "envoy.service.auth.v3.Authorization"
HEALTH = "grpc.health.v1.Health"


@pytest.fixture(scope="module", params=CHOICES)
def stack(
    request: pytest.FixtureRequest,
    loop_thread: LoopThread,
    key: rsa.RSAPrivateKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("grpcurl")
    s = start_stack(loop_thread, workdir, key, envoy=False, grpc_server=request.param)
    assert s.sidecar.grpc_server_kind == request.param  # the server asked for, not a fallback
    yield s
    s.close()


def grpcurl(stack: Stack, *args: str, data: dict[str, Any] | None = None) -> str:
    cmd = [find_binary("grpcurl"), "-plaintext", "-max-time", "10"]
    if data is not None:
        cmd += ["-d", "@"]
    cmd += [f"127.0.0.1:{stack.grpc_port}", *args]
    done = subprocess.run(
        cmd,
        input=json.dumps(data) if data is not None else None,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_list_shows_services(stack: Stack) -> None:
    """`grpcurl list` (server reflection) shows ext_authz, health and reflection."""
    services = set(grpcurl(stack, "list").split())
    assert {AUTHZ, HEALTH} <= services
    assert any(s.startswith("grpc.reflection.") for s in services)


def test_describe_authorization(stack: Stack) -> None:
    """`grpcurl describe` resolves the Authorization service and its Check method."""
    out = grpcurl(stack, "describe", AUTHZ)
    assert "rpc Check ( .envoy.service.auth.v3.CheckRequest )" in out


@pytest.mark.parametrize("service", ["", "readiness"])
def test_health_check_serving(stack: Stack, service: str) -> None:
    """Health Check for liveness ("") and readiness says SERVING."""
    out = grpcurl(stack, f"{HEALTH}/Check", data={"service": service})
    assert json.loads(out) == {"status": "SERVING"}


def check_request(token: str | None, model: str) -> dict[str, Any]:
    headers = {"content-type": "application/json", ":path": "/v1/chat/completions"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return {
        "attributes": {
            "request": {
                "http": {
                    "method": "POST",
                    "path": "/v1/chat/completions",
                    "headers": headers,
                    "body": chat_body(model).decode(),
                }
            }
        }
    }


@pytest.mark.parametrize(
    ("claims", "model", "code", "http_status"),
    [
        ({"sub": "alice", "roles": ["basic_user"]}, "gpt-4o-mini", 0, None),
        ({"sub": "alice", "roles": ["basic_user"]}, "gpt-4o", 7, "Forbidden"),
        (None, "gpt-4o-mini", 16, "Unauthorized"),
    ],
    ids=["allow", "deny-model", "deny-no-token"],
)
def test_check_with_grpcurl(
    stack: Stack,
    claims: dict[str, Any] | None,
    model: str,
    code: int,
    http_status: str | None,
) -> None:
    """A hand-written JSON CheckRequest gets an ok_response or a denied_response."""
    token = stack.token(claims) if claims is not None else None
    out = json.loads(grpcurl(stack, f"{AUTHZ}/Check", data=check_request(token, model)))
    assert out["status"].get("code", 0) == code
    if code == 0:
        headers = {h["header"]["key"]: h["header"]["value"] for h in out["ok_response"]["headers"]}
        assert headers["x-auth-user-id"] == "alice"
        assert headers["x-auth-user-role"] == "internal_user"
        assert "authorization" in out["ok_response"]["headers_to_remove"]
        assert out["dynamic_metadata"]["model"] == "gpt-4o-mini"
    else:
        denied = out["denied_response"]
        assert denied["status"]["code"] == http_status
        assert json.loads(denied["body"])["error"]["type"] == "auth_error"


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xff\xff\xff", b"\x0a\x05abc", b"\x0a" + b"\x80" * 11],
    ids=["bad-tag", "truncated", "bad-varint"],
)
def test_undecodable_check_request_is_an_error_and_the_server_goes_on(
    stack: Stack, payload: bytes
) -> None:
    """Bytes that are no CheckRequest get a gRPC error status (Envoy denies: failure_mode_allow
    is off), never an OK; the next well-formed check is answered as usual."""
    target = f"127.0.0.1:{stack.grpc_port}"
    with grpc.insecure_channel(target) as channel:
        raw = channel.unary_unary(f"/{AUTHZ}/Check")  # no serializers: the bytes as given
        with pytest.raises(grpc.RpcError) as failed:
            raw(payload, timeout=10)
        assert failed.value.code() is grpc.StatusCode.INTERNAL
    token = stack.token({"sub": "alice", "roles": ["basic_user"]})
    out = json.loads(grpcurl(stack, f"{AUTHZ}/Check", data=check_request(token, "gpt-4o-mini")))
    assert out["status"].get("code", 0) == 0


def _reflection_stream(channel: grpc.Channel) -> tuple[Any, queue.Queue[Any]]:
    """An open reflection stream that has answered once; the client holds it open."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    requests: queue.Queue[Any] = queue.Queue()
    requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter(requests.get, None), timeout=30
    )
    return call, requests


def test_open_streams_leave_checks_answered_and_are_bounded(stack: Stack) -> None:
    """With more reflection and health Watch streams held open than the pool has threads at
    work (4), health checks and Checks are still answered; past ``STREAMS_MOST`` open streams
    a new one is refused with RESOURCE_EXHAUSTED (without the bound: any number, each holding
    a thread while open)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = f"127.0.0.1:{stack.grpc_port}"
    with grpc.insecure_channel(target) as channel:
        streams: list[tuple[Any, queue.Queue[Any] | None]] = []
        try:
            for _ in range(6):  # more than the pool's 4 threads
                watch = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(service=""), timeout=30
                )
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
                streams.append((watch, None))
            for _ in range(6):
                call, requests = _reflection_stream(channel)
                assert next(call).list_services_response.service
                streams.append((call, requests))
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            token = stack.token({"sub": "alice", "roles": ["basic_user"]})
            out = grpcurl(stack, f"{AUTHZ}/Check", data=check_request(token, "gpt-4o-mini"))
            assert json.loads(out)["status"].get("code", 0) == 0

            # Fill the open-stream slots with reflection streams: the next one is refused.
            with pytest.raises(grpc.RpcError) as refused:
                for _ in range(threads.STREAMS_MOST + 1):
                    call, requests = _reflection_stream(channel)
                    streams.append((call, requests))
                    next(call)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many open streams" in (refused.value.details() or "")
        finally:
            for call, sent in streams:
                if sent is not None:
                    sent.put(None)  # the request stream ends
                call.cancel()

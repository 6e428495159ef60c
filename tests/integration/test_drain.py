"""SIGTERM's order, in-process: readiness NOT_SERVING on both surfaces while the sidecar keeps
deciding and liveness stays SERVING, for the drain delay (or until a second signal); only then do
the ports close. Through a real Envoy with two replicas: tests/state/test_envoy_replicas.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz.runtime import Sidecar
from tests.state.conftest import PolicyFiles, token, write_policy
from tests.state.helpers import Checker, Http, sidecar, wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TEAM = token({"sub": "svc", "client_id": "team-b"})


async def health(car: Sidecar, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{car.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(resp.status)


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PolicyFiles:
    f = write_policy(tmp_path, upsert=False)
    for k, v in f.env.items():
        monkeypatch.setenv(k, v)
    return f


async def test_readiness_goes_off_first_and_the_sidecar_serves_through_the_delay(
    files: PolicyFiles,
) -> None:
    """During the drain delay: gRPC readiness NOT_SERVING and /readyz 503 "draining", liveness
    SERVING, checks still decided; a second signal ends the delay; then the port closes."""
    async with sidecar(files, "memory://") as car:
        assert car.grpc_port is not None and car.http_port is not None
        http, check = Http(car.http_port), Checker(car.grpc_port)
        try:
            for _ in range(100):  # the gRPC status follows readiness within 0.2 s
                if await health(car, "readiness") == SERVING:
                    break
                await asyncio.sleep(0.05)
            assert await health(car, "readiness") == SERVING
            assert (await http.call("GET", "/readyz")).status == 200

            hurry = asyncio.Event()
            drain = asyncio.ensure_future(car.drain(60.0, hurry))
            await wait_for(lambda: car.draining, 5.0)
            assert await health(car, "readiness") == NOT_SERVING  # at once, not after a poll
            ready = await http.call("GET", "/readyz")
            assert ready.status == 503 and ready.body["draining"] is True, ready.body
            assert await health(car, "") == SERVING  # alive: not to be restarted
            assert await check.status(TEAM) == 200  # still deciding
            await asyncio.sleep(0.5)
            assert not drain.done()  # the delay holds ...
            assert await health(car, "readiness") == NOT_SERVING  # ... and readiness stays off

            hurry.set()  # a second SIGTERM
            await asyncio.wait_for(drain, 5.0)
            await car.stop(5.0)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await check.status(TEAM)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await http.close()
            await check.close()

"""In-process sidecars, ext_authz Check calls and HTTP admin calls for the state tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from extauthz.admin.state import StateOptions
from extauthz.config.loader import load_policy_file
from extauthz.dev import upstream
from extauthz.dev.envoyconf import EnvoyPorts, EnvoyProcess, load_config, render_envoy_config
from extauthz.runtime import ServeOptions, Sidecar
from extauthz.state.urls import StoreSettings
from extauthz.state.users import RecorderSettings
from extauthz.state.watcher import WatchSettings
from tests.state.conftest import MASTER_KEY, PolicyFiles

FAST_STATE = StateOptions(
    store=StoreSettings(poll_interval=0.1, op_timeout=2.0, connect_timeout=1.0),
    watch=WatchSettings(
        resync_interval=2.0, backoff_initial=0.1, backoff_max=0.5, unready_after=0.5
    ),
    users=RecorderSettings(flush_interval=0.1),
    open_timeout=5.0,
)
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@contextlib.asynccontextmanager
async def sidecar(
    files: PolicyFiles, state_url: str, state: StateOptions = FAST_STATE
) -> AsyncIterator[Sidecar]:
    """``extauthz serve`` in-process on free loopback ports, ready (keys and state loaded)."""
    options = ServeOptions(
        config=str(files.policy),
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        state_url=state_url,
        state=state,
    )
    car = Sidecar(options, load_policy_file(str(files.policy), {**os.environ, **files.env}))
    await car.start()
    try:
        await wait_for(lambda: car.readiness()[0], 10.0, lambda: str(car.readiness()[1]))
        yield car
    finally:
        try:
            async with asyncio.timeout(15.0):
                await car.stop(0)
        except TimeoutError:
            raise AssertionError("sidecar did not stop within 15 s:\n" + task_stacks()) from None


def task_stacks() -> str:
    """Every pending task with its stack (to diagnose a hang)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(file=out)
    return out.getvalue()


async def wait_for(
    condition: Callable[[], bool], within: float, why: Callable[[], str] = lambda: ""
) -> float:
    """Poll ``condition`` every 10 ms; the seconds it took, or AssertionError after ``within``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within}s {why()}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def check_request(
    token: str | None, path: str = "/v1/chat/completions", model: str = "gpt-4o"
) -> external_auth_pb2.CheckRequest:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method = "POST"
    http.path = path
    http.headers.update(headers)
    http.raw_body = json.dumps({"model": model}).encode()
    return req


class Checker:
    """Calls ``Authorization/Check`` on a sidecar's gRPC port; answers the HTTP status."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = external_auth_pb2_grpc.AuthorizationStub(self.channel)

    async def status(
        self, token: str | None, path: str = "/v1/chat/completions", model: str = "gpt-4o"
    ) -> int:
        resp = await self.stub.Check(check_request(token, path, model), timeout=5)
        if resp.HasField("ok_response"):
            return 200
        return int(resp.denied_response.status.code)

    async def reason(self, token: str | None) -> str:
        resp = await self.stub.Check(check_request(token), timeout=5)
        if resp.HasField("ok_response"):
            return "allowed"
        for h in resp.denied_response.headers:
            if h.header.key == "x-extauthz-reason":
                return str(h.header.value)
        return "?"

    async def close(self) -> None:
        await self.channel.close()


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Http:
    """JSON calls to a sidecar's HTTP port."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        async with self.session.request(
            method, self.base + path, data=data, headers=headers or {}
        ) as resp:
            text = await resp.text()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return Reply(resp.status, parsed, {k.lower(): v for k, v in resp.headers.items()})

    async def admin(self, method: str, path: str, body: Any = None) -> Reply:
        return await self.call(method, path, body, ADMIN)

    async def close(self) -> None:
        await self.session.close()


ENVOY_YAML = Path(__file__).resolve().parents[2] / "envoy.yaml"
Send = Callable[[str, str, str, object], Awaitable[tuple[int, str]]]


@contextlib.asynccontextmanager
async def envoy_in_front(files: PolicyFiles, tmp_path: Path) -> AsyncIterator[Send]:
    """The shipped envoy.yaml in front of an in-process sidecar (SQLite state in ``tmp_path``)
    and the demo upstream; yields ``send(method, path, token, json_body) -> (status, text)``."""
    runner = aiohttp.web.AppRunner(upstream.build_app(), access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    try:
        async with sidecar(files, f"sqlite:///{tmp_path}/state.db") as car:
            assert car.grpc_port and car.http_port
            ports = EnvoyPorts(
                listener=0,
                admin=0,
                extauthz_grpc=car.grpc_port,
                extauthz_http=car.http_port,
                upstream=upstream_port,
            )
            envoy = EnvoyProcess(
                render_envoy_config(load_config(ENVOY_YAML), ports), tmp_path, die_with_parent=True
            )
            envoy.start()
            try:
                await asyncio.to_thread(envoy.wait_ready, 20.0)
                base = f"http://127.0.0.1:{envoy.listener_port}"
                async with aiohttp.ClientSession() as session:

                    async def send(
                        method: str, path: str, tok: str, body: object
                    ) -> tuple[int, str]:
                        headers = {
                            "authorization": f"Bearer {tok}",
                            "content-type": "application/json",
                        }
                        async with session.request(
                            method, base + path, data=json.dumps(body), headers=headers
                        ) as resp:
                            return resp.status, await resp.text()

                    yield send
            finally:
                await asyncio.to_thread(envoy.stop)
    finally:
        await runner.cleanup()

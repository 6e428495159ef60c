"""Through a real Envoy running the shipped envoy.yaml: an admin blocks a team with
POST /team/block (routed to the sidecar's HTTP port), and that team's next request is 403."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from extauthz.dev import upstream
from extauthz.dev.envoyconf import EnvoyPorts, EnvoyProcess, load_config, render_envoy_config
from tests.state.conftest import MASTER_KEY, token, write_policy
from tests.state.helpers import sidecar

ENVOY_YAML = Path(__file__).resolve().parents[2] / "envoy.yaml"
TEAM_A = token({"sub": "svc-a", "client_id": "team-a"})
TEAM_B = token({"sub": "svc-b", "client_id": "team-b"})


KEEP_CREDENTIALS = "  remove_credential_headers: false"


@pytest.mark.envoy
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(KEEP_CREDENTIALS, id="credentials-kept"),
        pytest.param("", id="default-policy"),
    ],
)
async def test_admin_block_through_envoy(
    extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/team/block through Envoy blocks the team; others still reach the upstream; the admin
    routes refuse a non-admin at Envoy's ext_authz and again at the sidecar."""
    policy_files = write_policy(tmp_path, ours=extra)
    for k, v in policy_files.env.items():
        monkeypatch.setenv(k, v)
    runner = aiohttp.web.AppRunner(upstream.build_app(), access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    async with sidecar(policy_files, f"sqlite:///{tmp_path}/state.db") as car:
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

                async def send(method: str, path: str, tok: str, body: object) -> tuple[int, str]:
                    async with session.request(
                        method,
                        base + path,
                        data=json.dumps(body),
                        headers={
                            "authorization": f"Bearer {tok}",
                            "content-type": "application/json",
                        },
                    ) as resp:
                        return resp.status, await resp.text()

                chat = {"model": "gpt-4o", "messages": []}
                assert (await send("POST", "/v1/chat/completions", TEAM_A, chat))[0] == 200
                status, text = await send("POST", "/team/block", TEAM_A, {"team_id": "team-a"})
                assert status == 403, text  # a team may not manage teams
                status, text = await send("POST", "/team/block", MASTER_KEY, {"team_id": "team-a"})
                assert status == 200, text
                assert json.loads(text)["blocked"] is True
                status, text = await send("POST", "/v1/chat/completions", TEAM_A, chat)
                assert status == 403, text
                assert "team-a" in json.loads(text)["error"]["message"]
                assert (await send("POST", "/v1/chat/completions", TEAM_B, chat))[0] == 200
                status, text = await send("GET", "/team/info?team_id=team-a", MASTER_KEY, None)
                assert status == 200 and json.loads(text)["team_info"]["changed_by"] == "master_key"
                status, _ = await send("POST", "/team/unblock", MASTER_KEY, {"team_id": "team-a"})
                assert status == 200
                assert (await send("POST", "/v1/chat/completions", TEAM_A, chat))[0] == 200
        finally:
            await asyncio.to_thread(envoy.stop)
            await runner.cleanup()

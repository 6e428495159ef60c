"""Through a real Envoy running the shipped envoy.yaml: an admin blocks a team with
POST /team/block (routed to the sidecar's HTTP port), and that team's next request is 403."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.state.conftest import MASTER_KEY, token, write_policy
from tests.state.helpers import envoy_in_front

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
    async with envoy_in_front(policy_files, tmp_path) as send:
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

"""The gRPC admin service through the real grpcurl: reflection, calls, authentication."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from extauthz.dev.envoyconf import find_binary
from extauthz.runtime import Sidecar
from tests.state.conftest import MASTER_KEY, PolicyFiles, token

SERVICE = "extauthz.admin.v1.Admin"
TEAM_A = token({"sub": "svc-a", "client_id": "team-a"})


@pytest.fixture
async def car(policy_files: PolicyFiles, tmp_path: Path) -> AsyncIterator[Sidecar]:
    from tests.state.helpers import sidecar

    async with sidecar(policy_files, f"sqlite:///{tmp_path}/state.db") as running:
        yield running


async def grpcurl(
    car: Sidecar, *verb: str, flags: tuple[str, ...] = (), auth: str | None = MASTER_KEY
) -> tuple[int, str]:
    """Run grpcurl against the sidecar (without blocking the loop that serves it)."""
    cmd = [find_binary("grpcurl"), "-plaintext", "-max-time", "10", *flags]
    if auth is not None:
        cmd += ["-H", f"authorization: Bearer {auth}"]
    cmd += [f"127.0.0.1:{car.grpc_port}", *verb]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def call(car: Sidecar, method: str, body: dict[str, Any], **kw: Any) -> tuple[int, str]:
    return await grpcurl(car, f"{SERVICE}/{method}", flags=("-d", json.dumps(body)), **kw)


async def test_reflection_lists_the_admin_service(car: Sidecar) -> None:
    """`grpcurl list` shows the admin service next to ext_authz and health."""
    code, out = await grpcurl(car, "list", auth=None)
    assert code == 0, out
    assert SERVICE in out.split()
    assert "envoy.service.auth.v3.Authorization" in out.split()
    code, out = await grpcurl(car, "describe", SERVICE, auth=None)
    assert code == 0 and "rpc Explain" in out and "rpc BlockTeam" in out


async def test_block_get_list_and_explain(car: Sidecar) -> None:
    """BlockTeam, GetTeam, ListTeams and Explain work with the master key."""
    code, out = await call(car, "BlockTeam", {"team_id": "team-a"})
    assert code == 0, out
    team = json.loads(out)
    assert team["team_id"] == "team-a" and team["blocked"] is True
    assert team["changed_by"] == "master_key" and team["changed_at"].endswith("Z")
    code, out = await call(car, "GetTeam", {"team_id": "team-a"})
    assert code == 0 and json.loads(out)["blocked"] is True
    code, out = await call(car, "ListTeams", {})
    assert code == 0 and [t["team_id"] for t in json.loads(out)["teams"]] == ["team-a"]
    code, out = await call(
        car,
        "Explain",
        {"token": TEAM_A, "path": "/v1/chat/completions", "body": '{"model": "gpt-4o"}'},
    )
    assert code == 0, out
    explained = json.loads(out)
    assert explained.get("allowed", False) is False
    assert explained["status"] == 403 and explained["reason"] == "team_blocked"
    assert explained["identity"]["team_id"] == "team-a"
    code, out = await call(car, "UnblockTeam", {"team_id": "team-a"})
    assert code == 0 and json.loads(out).get("blocked", False) is False
    code, out = await call(car, "Explain", {"token": TEAM_A, "path": "/v1/chat/completions"})
    assert code == 0 and json.loads(out)["allowed"] is True
    await car.state.recorder.flush()
    code, out = await call(car, "ListUsers", {"page_size": 5})
    assert code == 0 and "users" not in json.loads(out), out  # explaining records nobody


@pytest.mark.parametrize(
    "auth,code_name",
    [
        (None, "Unauthenticated"),
        ("sk-wrong", "Unauthenticated"),
        (token({"sub": "alice"}), "PermissionDenied"),
    ],
    ids=["none", "wrong-key", "not-admin"],
)
async def test_calls_without_an_admin_are_refused(
    car: Sidecar, auth: str | None, code_name: str
) -> None:
    """No credential or a bad one: Unauthenticated; a verified non-admin: PermissionDenied."""
    for method, body in [("BlockTeam", {"team_id": "t"}), ("ListTeams", {}), ("Explain", {})]:
        code, out = await call(car, method, body, auth=auth)
        assert code != 0 and f"Code: {code_name}" in out, out
    code, out = await call(car, "ListTeams", {})
    assert code == 0 and "teams" not in json.loads(out)  # nothing was blocked


async def test_bad_input_and_unknown_teams(car: Sidecar) -> None:
    """Invalid ids are InvalidArgument; a team never blocked is NotFound."""
    code, out = await call(car, "BlockTeam", {"team_id": ""})
    assert code != 0 and "Code: InvalidArgument" in out and "team_id" in out
    code, out = await call(car, "GetTeam", {"team_id": "ghost"})
    assert code != 0 and "Code: NotFound" in out

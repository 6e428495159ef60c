"""``extauthz serve`` runs on uvloop (extauthz/eventloop.py): the HTTP-service mode, the admin API
and the state store answer on it as on asyncio's loop (the in-process tests use asyncio's)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from harness.procs import free_port
from tests.state.conftest import MASTER_KEY, token, write_policy
from tests.state.processes import ServeProcess

pytest.importorskip("uvloop")


def http_check(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """One HTTP-service check as Envoy forwards a chat request: its status and headers."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/extauthz/v1/chat/completions",
        data=b'{"model": "gpt-4o", "messages": []}',
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as refused:
        return refused.code, {k.lower(): v for k, v in refused.headers.items()}


def admin_call(port: int, path: str, body: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


async def test_serve_answers_http_checks_and_admin_calls_on_uvloop(tmp_path: Path) -> None:
    files = write_policy(tmp_path)
    authz = free_port()
    serve = ServeProcess(
        files,
        f"sqlite:///{tmp_path / 'state.db'}",
        tmp_path,
        "uvloop",
        args=("--authz-http-address", f"127.0.0.1:{authz}"),
    )
    serve.start()
    try:
        await serve.wait_ready()
        assert '"event_loop": "uvloop"' in serve.log_path.read_text()
        allowed, headers = await asyncio.to_thread(
            http_check, authz, {"authorization": f"Bearer {token({'sub': 'u-loop'})}"}
        )
        assert (allowed, headers.get("x-auth-user-id")) == (200, "u-loop")
        refused, headers = await asyncio.to_thread(http_check, authz, {})
        assert (refused, headers.get("x-extauthz-reason")) == (401, "missing_credential")
        # The admin API writes the store on the same loop; the block reaches the next check.
        assert (
            await asyncio.to_thread(
                admin_call, serve.http_port, "/team/block", {"team_id": "team-loop"}
            )
            == 200
        )
        team = token({"sub": "svc", "client_id": "team-loop"})
        blocked, headers = await asyncio.to_thread(
            http_check, authz, {"authorization": f"Bearer {team}"}
        )
        assert (blocked, headers.get("x-extauthz-reason")) == (403, "team_blocked")
    finally:
        assert await serve.stop() == 0

"""Replicas sharing one store: a block made through any of them reaches all of them fast,
and survives restarts.

PostgreSQL: two real ``extauthz serve`` processes; the contract is 1 s (LISTEN/NOTIFY).
SQLite: two in-process sidecars on one file; the contract is 2 s (version polling).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest

from extauthz.state.urls import StoreSettings
from tests.state.conftest import PolicyFiles, token
from tests.state.helpers import FAST_STATE, Checker, Http, sidecar
from tests.state.processes import ServeProcess

ROUNDS = 5


async def propagation(writer: Http, reader: Checker, team: str, block: bool) -> float:
    """Seconds from sending the admin call to ``writer`` until ``reader`` decides accordingly."""
    tok = token({"sub": f"svc-{team}", "client_id": team})
    want = 403 if block else 200
    start = time.monotonic()
    reply = await writer.admin(
        "POST", "/team/block" if block else "/team/unblock", {"team_id": team}
    )
    assert reply.status == 200, reply.body
    while (status := await reader.status(tok)) != want:
        assert status in (200, 403)
        assert time.monotonic() - start < 5.0, f"{team}: not propagated within 5 s"
    return time.monotonic() - start


@pytest.mark.slow
async def test_two_postgres_processes(
    policy_files: PolicyFiles, pg_url: str, tmp_path: Path, record_property: object
) -> None:
    """Block through A: B denies within 1 s; unblock through B: A allows within 1 s;
    a restarted B still enforces the block."""
    a = ServeProcess(policy_files, pg_url, tmp_path, "a")
    b = ServeProcess(policy_files, pg_url, tmp_path, "b")
    a.start()
    b.start()
    http_a = http_b = None
    check_a = check_b = None
    try:
        await a.wait_ready()
        await b.wait_ready()
        http_a, http_b = Http(a.http_port), Http(b.http_port)
        check_a, check_b = Checker(a.grpc_port), Checker(b.grpc_port)
        blocks = [await propagation(http_a, check_b, f"t{i}", True) for i in range(ROUNDS)]
        unblocks = [await propagation(http_b, check_a, f"t{i}", False) for i in range(ROUNDS)]
        times = blocks + unblocks
        summary = (
            f"PostgreSQL propagation over {len(times)} changes: median "
            f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
        )
        print(summary)
        assert callable(record_property)
        record_property("postgres_propagation", summary)
        assert max(times) < 1.0, summary

        await http_a.admin("POST", "/team/block", {"team_id": "kept"})
        await check_b.close()
        check_b = None
        assert await b.stop() == 0, b.log_tail()
        b.start()
        await b.wait_ready()
        check_b = Checker(b.grpc_port)
        assert await check_b.status(token({"sub": "s", "client_id": "kept"})) == 403
        assert await check_b.status(token({"sub": "s", "client_id": "t0"})) == 200
    finally:
        for client in (http_a, http_b, check_a, check_b):
            if client is not None:
                await client.close()
        await a.stop()
        await b.stop()


async def test_two_sqlite_sidecars_share_a_file(policy_files: PolicyFiles, tmp_path: Path) -> None:
    """Two sidecars on one SQLite file see each other's blocks within 2 s, and a sidecar
    started later on the same file enforces them."""
    url = f"sqlite:///{tmp_path}/state.db"
    production = replace(FAST_STATE, store=StoreSettings())  # the shipped 0.5 s polling
    async with (
        sidecar(policy_files, url, production) as a,
        sidecar(policy_files, url, production) as b,
    ):
        assert a.http_port and a.grpc_port and b.http_port and b.grpc_port
        http_a, check_b = Http(a.http_port), Checker(b.grpc_port)
        http_b, check_a = Http(b.http_port), Checker(a.grpc_port)
        try:
            assert await propagation(http_a, check_b, "s1", True) < 2.0
            assert await propagation(http_b, check_a, "s2", True) < 2.0
            assert await propagation(http_a, check_b, "s2", False) < 2.0
        finally:
            await http_a.close()
            await http_b.close()
            await check_a.close()
            await check_b.close()
    async with sidecar(policy_files, url) as late:
        assert late.grpc_port
        check_c = Checker(late.grpc_port)
        try:
            assert await check_c.status(token({"sub": "x", "client_id": "s1"})) == 403
            assert await check_c.status(token({"sub": "x", "client_id": "s2"})) == 200
        finally:
            await check_c.close()

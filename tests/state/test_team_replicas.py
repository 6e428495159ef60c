"""The team registry across replicas and from tokens: a team's new model list reaches every
replica within the same bound as a block (SQLite 2 s by polling, PostgreSQL 1 s by NOTIFY);
team_id_upsert registers a token's team off the request path; an unknown team is refused
once the registry is in use."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from extauthz.state.urls import StoreSettings
from tests.state.conftest import PolicyFiles, token, write_policy
from tests.state.helpers import FAST_STATE, Checker, Http, sidecar, wait_for

ENG = token({"sub": "svc-eng", "client_id": "eng"})


async def model_switch(writer: Http, reader: Checker, models: list[str], now_ok: str) -> float:
    """Seconds from /team/update on ``writer`` until ``reader`` allows ``now_ok``."""
    start = time.monotonic()
    reply = await writer.admin("POST", "/team/update", {"team_id": "eng", "models": models})
    assert reply.status == 200, reply.body
    while (status := await reader.status(ENG, model=now_ok)) != 200:
        assert status == 403
        assert time.monotonic() - start < 5.0, "model list not propagated within 5 s"
    return time.monotonic() - start


async def two_replicas(files: PolicyFiles, url: str, bound: float) -> None:
    production = replace(FAST_STATE, store=StoreSettings())  # shipped polling / NOTIFY
    async with sidecar(files, url, production) as a, sidecar(files, url, production) as b:
        assert a.http_port and b.grpc_port
        http_a, check_b = Http(a.http_port), Checker(b.grpc_port)
        try:
            reply = await http_a.admin(
                "POST", "/team/new", {"team_id": "eng", "models": ["gpt-4o"]}
            )
            assert reply.status == 200, reply.body
            await wait_for(lambda: "eng" in b.state.view.current.teams if b.state else False, 5.0)
            assert await check_b.status(ENG, model="gpt-4o") == 200
            assert await check_b.status(ENG, model="claude") == 403
            times = [
                await model_switch(http_a, check_b, ["claude"], "claude"),
                await model_switch(http_a, check_b, ["gpt-4o"], "gpt-4o"),
                await model_switch(http_a, check_b, [], "claude"),  # [] is every model
            ]
            shown = [round(t, 3) for t in times]
            print(f"\n{url.split(':')[0]}: team model list propagation {shown} s")
            assert max(times) < bound, times
            assert await check_b.status(ENG, model="gpt-4o") == 200
        finally:
            await http_a.close()
            await check_b.close()


async def test_two_sqlite_sidecars_see_new_model_lists(
    policy_files: PolicyFiles, tmp_path: Path
) -> None:
    await two_replicas(policy_files, f"sqlite:///{tmp_path}/state.db", 2.0)


async def test_two_postgres_sidecars_see_new_model_lists(
    policy_files: PolicyFiles, pg_url: str
) -> None:
    await two_replicas(policy_files, pg_url, 1.0)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_team_id_upsert_registers_the_token_team(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    files = write_policy(tmp_path, extra="    team_id_upsert: true\n")
    for k, v in files.env.items():
        monkeypatch.setenv(k, v)
    url = (
        f"sqlite:///{tmp_path}/state.db"
        if kind == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    async with sidecar(files, url) as car:
        assert car.http_port and car.grpc_port and car.state
        http, check = Http(car.http_port), Checker(car.grpc_port)
        try:
            fresh = token({"sub": "svc", "client_id": "fresh"})
            assert await check.status(fresh) == 200  # allowed at once: no wait for the write
            state = car.state
            await wait_for(lambda: "fresh" in state.view.current.teams, 5.0)
            info = await http.admin("GET", "/team/info?team_id=fresh")
            assert info.body["team_info"]["registered"] is True
            assert info.body["team_info"]["changed_by"] == "team_id_upsert"
            assert info.body["team_info"]["models"] == []
            # An admin narrows it; the upsert never resets it.
            await http.admin("POST", "/team/update", {"team_id": "fresh", "models": ["x"]})
            assert await check.status(fresh, model="gpt-4o") == 403
            assert await check.status(token({"sub": "svc2", "client_id": "fresh"})) == 403
        finally:
            await http.close()
            await check.close()


async def test_an_unknown_team_is_refused_once_the_registry_is_in_use(
    policy_files: PolicyFiles, tmp_path: Path
) -> None:
    async with sidecar(policy_files, f"sqlite:///{tmp_path}/state.db") as car:
        assert car.http_port and car.grpc_port
        http, check = Http(car.http_port), Checker(car.grpc_port)
        try:
            ghost = token({"sub": "svc", "client_id": "ghost"})
            assert await check.status(ghost) == 200  # no registry yet: every team exists
            assert (await http.admin("POST", "/team/new", {"team_id": "eng"})).status == 200
            assert await check.status(ghost) == 403
            assert await check.reason(ghost) == "team_not_found"
            assert await check.status(ENG) == 200
            # A user (no team claim; missing_team_claim: as_user) is not affected.
            assert await check.status(token({"sub": "alice"})) == 200
        finally:
            await http.close()
            await check.close()

"""The HTTP admin API of an in-process sidecar: authentication, validation, effects on decisions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from extauthz.runtime import Sidecar
from tests.state.conftest import PolicyFiles, token, write_policy
from tests.state.helpers import ADMIN, Checker, Http, sidecar, wait_for

TEAM_A = token({"sub": "svc-a", "client_id": "team-a"})
TEAM_B = token({"sub": "svc-b", "client_id": "team-b"})
ADMIN_JWT = token({"sub": "ops", "email": "ops@corp.io", "scope": "litellm_proxy_admin"})
USER = token({"sub": "alice", "email": "alice@corp.io"})


@dataclass
class Stack:
    car: Sidecar
    http: Http
    check: Checker


@pytest.fixture
async def stack(policy_files: PolicyFiles, tmp_path: Path) -> AsyncIterator[Stack]:
    async with sidecar(policy_files, f"sqlite:///{tmp_path}/state.db") as car:
        assert car.http_port is not None and car.grpc_port is not None
        http, check = Http(car.http_port), Checker(car.grpc_port)
        try:
            yield Stack(car, http, check)
        finally:
            await http.close()
            await check.close()


@pytest.mark.parametrize(
    "headers,status,reason",
    [
        ({}, 401, "missing_credential"),
        ({"authorization": "Bearer sk-wrong"}, 401, "invalid_api_key"),
        ({"authorization": "Bearer a.b.c"}, 401, "malformed_token"),
        ({"authorization": f"Bearer {USER}"}, 403, "not_admin"),
        ({"authorization": f"Bearer {TEAM_A}"}, 403, "not_admin"),
    ],
    ids=["none", "wrong-key", "bad-jwt", "user", "team"],
)
async def test_admin_calls_need_an_admin(
    stack: Stack, headers: dict[str, str], status: int, reason: str
) -> None:
    """No or bad credential is 401 (with a challenge); a verified non-admin is 403."""
    for method, path, body in [
        ("POST", "/team/block", {"team_id": "team-a"}),
        ("GET", "/team/list", None),
        ("GET", "/user/list", None),
        ("POST", "/customer/block", {"user_ids": ["x"]}),
    ]:
        reply = await stack.http.call(method, path, body, headers)
        assert reply.status == status, (path, reply.body)
        assert reply.headers["x-extauthz-reason"] == reason
        assert reply.body["error"]["code"] == str(status)
        assert reply.body["error"]["type"] == "auth_error"
        assert ("www-authenticate" in reply.headers) == (status == 401)
    assert await stack.check.status(TEAM_A) == 200  # nothing was blocked


async def test_block_denies_the_team_at_once_and_unblock_lifts_it(stack: Stack) -> None:
    """After POST /team/block returns, this replica denies the team; others pass."""
    reply = await stack.http.admin("POST", "/team/block", {"team_id": "team-a"})
    assert reply.status == 200
    assert reply.body["team_id"] == "team-a" and reply.body["blocked"] is True
    assert reply.body["changed_by"] == "master_key"
    assert reply.body["changed_at"].endswith("Z")
    assert await stack.check.reason(TEAM_A) == "team_blocked"
    assert await stack.check.status(TEAM_A) == 403
    assert await stack.check.status(TEAM_B) == 200
    again = await stack.http.admin("POST", "/team/block", {"team_id": "team-a"})
    assert again.status == 200 and again.body == reply.body  # idempotent, first record kept
    reply = await stack.http.admin("POST", "/team/unblock", {"team_id": "team-a"})
    assert reply.status == 200 and reply.body["blocked"] is False
    assert await stack.check.status(TEAM_A) == 200


async def test_team_info_shows_who_blocked_and_when(stack: Stack) -> None:
    """An admin JWT's subject is recorded with the block; /team/info and /team/list show it."""
    headers = {"authorization": f"Bearer {ADMIN_JWT}"}
    assert (await stack.http.call("POST", "/team/block", {"team_id": "t1"}, headers)).status == 200
    info = await stack.http.admin("GET", "/team/info?team_id=t1")
    assert info.status == 200
    assert info.body["team_id"] == "t1"
    assert info.body["team_info"]["changed_by"] == "ops"
    assert info.body["team_info"]["blocked"] is True
    listed = await stack.http.admin("GET", "/team/list")
    assert [t["team_id"] for t in listed.body] == ["t1"]
    missing = await stack.http.admin("GET", "/team/info?team_id=nope")
    assert missing.status == 404 and "nope" in missing.body["error"]["message"]
    no_param = await stack.http.admin("GET", "/team/info")
    assert no_param.status == 400 and "team_id" in no_param.body["error"]["message"]


@pytest.mark.parametrize(
    "raw,needle",
    [
        (b"", "JSON object"),
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"team_id": ""}', "empty"),
        (b'{"team_id": 5.0}', "float"),
        (b'{"team_id": true}', "boolean"),
        (b'{"team_id": null}', "empty"),
        (b'{"team_id": " team-a "}', "whitespace"),
        (b'{"team_id": "' + b"x" * 1025 + b'"}', "1024"),
        (b'{"team_id": "a\\nb"}', "control character"),
        (b'{"team_id": "a\\u0000"}', "control character"),
        (b'{"team_id": "a\\ud800"}', "control character"),
        (b'{"team_id": "t", "blocked": true}', "unknown field"),
        (b'{"team": "t"}', "unknown field"),
        (b"{}", "missing field"),
    ],
)
async def test_bad_bodies_are_400_with_a_reason(stack: Stack, raw: bytes, needle: str) -> None:
    """Invalid team ids and unknown or malformed JSON are refused with a clear message."""
    reply = await stack.http.call("POST", "/team/block", headers=ADMIN, raw=raw)
    assert reply.status == 400, reply.body
    assert needle in reply.body["error"]["message"]
    assert reply.headers["x-extauthz-reason"] == "bad_request"


async def test_large_bodies_are_refused(stack: Stack) -> None:
    """Bodies over 16 KiB are refused before parsing, with or without a content-length."""
    raw = b'{"team_id": "' + b"x" * 20_000 + b'"}'
    reply = await stack.http.call("POST", "/team/block", headers=ADMIN, raw=raw)
    assert reply.status == 413 and reply.body["error"]["code"] == "413"

    async def chunks(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 1000):
            yield b" " * 1000

    for size in (30_000, 200_000):  # above our 16 KiB cap, then above aiohttp's own
        async with stack.http.session.post(
            stack.http.base + "/team/block", data=chunks(size), headers=ADMIN
        ) as resp:
            assert resp.status == 413, await resp.text()


async def test_a_body_sent_in_pieces_is_read_whole(stack: Stack) -> None:
    """A chunked body is parsed once complete, not from its first piece."""

    async def pieces() -> AsyncIterator[bytes]:
        for part in (b'{"team', b'_id": "pie', b'ces"}'):
            yield part
            await asyncio.sleep(0.01)

    async with stack.http.session.post(
        stack.http.base + "/team/block", data=pieces(), headers=ADMIN
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["team_id"] == "pieces"


async def test_numeric_ids_are_blocked_as_tokens_carry_them(stack: Stack) -> None:
    """An admin's 4242 and a token's 4242 are the same id, "4242" (LiteLLM's str()); a spaced id
    is refused by both, so a block and a token never disagree about an id."""
    numeric = token({"sub": "svc", "client_id": 4242})
    assert await stack.check.status(numeric) == 200
    reply = await stack.http.admin("POST", "/team/block", {"team_id": 4242})
    assert reply.status == 200 and reply.body["team_id"] == "4242"
    assert await stack.check.reason(numeric) == "team_blocked"
    assert await stack.check.reason(token({"sub": "svc", "client_id": "4242"})) == "team_blocked"
    info = await stack.http.admin("GET", "/team/info?team_id=4242")
    assert info.status == 200 and info.body["team_info"]["blocked"] is True
    spaced = await stack.http.admin("GET", "/team/info?team_id=%204242%20")
    assert spaced.status == 400 and "whitespace" in spaced.body["error"]["message"]
    assert await stack.check.reason(token({"sub": "svc", "client_id": " 4242 "})) == (
        "malformed_token"
    )
    shopper = token({"sub": "app", "client_id": "team-a", "end_user": 77})
    reply = await stack.http.admin("POST", "/customer/block", {"user_ids": [77]})
    assert reply.status == 200 and reply.body["blocked_users"] == ["77"]
    assert await stack.check.reason(shopper) == "end_user_blocked"


async def test_customer_block_denies_the_end_user(stack: Stack) -> None:
    """/customer/block takes LiteLLM's user_ids; the end_user claim is then refused."""
    shopper = token({"sub": "app", "client_id": "team-a", "end_user": "cust-1"})
    other = token({"sub": "app", "client_id": "team-a", "end_user": "cust-2"})
    reply = await stack.http.admin("POST", "/customer/block", {"user_ids": ["cust-1"]})
    assert reply.status == 200 and reply.body["blocked_users"] == ["cust-1"]
    assert await stack.check.reason(shopper) == "end_user_blocked"
    assert await stack.check.status(other) == 200
    listed = await stack.http.admin("GET", "/customer/list")
    assert [(u["user_id"], u["blocked"]) for u in listed.body] == [("cust-1", True)]
    reply = await stack.http.admin("POST", "/customer/unblock", {"user_ids": ["cust-1"]})
    assert reply.status == 200 and reply.body["unblocked_users"] == ["cust-1"]
    assert await stack.check.status(shopper) == 200
    bad = await stack.http.admin("POST", "/customer/block", {"user_ids": "cust-1"})
    assert bad.status == 400 and "list" in bad.body["error"]["message"]


async def test_users_seen_in_valid_tokens_are_listed(stack: Stack) -> None:
    """user_id_upsert: a user whose token was verified appears in /user/info and /user/list."""
    assert await stack.check.status(USER) == 200
    assert await stack.check.status(token({"sub": "bob"})) == 200
    assert await stack.check.status(token({"sub": "mallory"}, ttl=-100)) == 401

    async def listed() -> list[str]:
        reply = await stack.http.admin("GET", "/user/list?page_size=10")
        return [u["user_id"] for u in reply.body["users"]]

    deadline = time.monotonic() + 5.0
    while (ids := await listed()) != ["alice", "bob"]:  # recorded in the background
        assert time.monotonic() < deadline, ids
        await asyncio.sleep(0.05)
    info = await stack.http.admin("GET", "/user/info?user_id=alice")
    assert info.status == 200
    assert info.body["user_info"]["user_email"] == "alice@corp.io"
    assert info.body["user_info"]["first_seen"] <= info.body["user_info"]["last_seen"]
    page = await stack.http.admin("GET", "/user/list?page=2&page_size=1")
    assert page.body["total"] == 2 and page.body["total_pages"] == 2
    assert [u["user_id"] for u in page.body["users"]] == ["bob"]
    assert (await stack.http.admin("GET", "/user/info?user_id=mallory")).status == 404
    assert (await stack.http.admin("GET", "/user/list?page=0")).status == 400
    assert (await stack.http.admin("GET", "/user/list?page_size=x")).status == 400


async def test_email_domain_gate_keeps_users_out_of_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With user_allowed_email_domain set, a user from another domain is neither let in nor
    recorded."""
    files = write_policy(
        tmp_path,
        extra="    user_allowed_email_domain: corp.io\n",
    )
    for k, v in files.env.items():
        monkeypatch.setenv(k, v)
    async with sidecar(files, "memory://") as car:
        assert car.grpc_port is not None and car.http_port is not None
        check, http = Checker(car.grpc_port), Http(car.http_port)
        try:
            assert await check.status(USER) == 200
            assert await check.status(token({"sub": "eve", "email": "eve@evil.io"})) == 403
            await wait_for(lambda: car.state.recorder.pending == 0, 5.0)
            await car.state.recorder.flush()
            reply = await http.admin("GET", "/user/list")
            assert [u["user_id"] for u in reply.body["users"]] == ["alice"]
        finally:
            await check.close()
            await http.close()


async def test_metrics_show_the_store_and_admin_calls(stack: Stack) -> None:
    """/metrics carries the store's health and the admin call counter."""
    await stack.http.admin("POST", "/team/block", {"team_id": "m"})
    text = (await stack.http.call("GET", "/metrics")).body
    assert "extauthz_state_store_up 1.0" in text
    assert 'extauthz_state_blocked{kind="team"} 1.0' in text
    assert (
        'extauthz_admin_requests_total{operation="team_block",status="200",transport="http"}'
        in (text)
    )
    ready = await stack.http.call("GET", "/readyz")
    assert ready.status == 200 and ready.body["state"]["reachable"] is True

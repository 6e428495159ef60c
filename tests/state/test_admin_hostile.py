"""Hostile input to the admin API (issue 13): every bad input is a 400 that says what is wrong,
never a 500, over HTTP and, where the same input can reach it, over gRPC.

One in-process sidecar answers the whole table (a row's failure is reported with its label).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from extauthz._gen.extauthz.admin.v1 import admin_pb2 as pb
from extauthz._gen.extauthz.admin.v1 import admin_pb2_grpc as pb_grpc
from extauthz.runtime import Sidecar
from tests.state.conftest import MASTER_KEY, PolicyFiles
from tests.state.helpers import ADMIN, Http, sidecar


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    path: str
    body: bytes | None
    needle: str  # in the error message
    status: int = 400
    headers: tuple[tuple[str, str], ...] = ()


def deep(levels: int, inner: bytes = b"1") -> bytes:
    return b"[" * levels + inner + b"]" * levels


def rows() -> list[Row]:
    deep_value = b'{"team_id": ' + deep(3000) + b"}"
    deep_object = b'{"a":' * 2000 + b"1" + b"}" * 2000
    deep_ids = b'{"user_ids": ' + deep(3000, b'"u"') + b"}"
    huge_int = b'{"team_id": ' + b"9" * 5000 + b"}"
    many_ids = json.dumps({"user_ids": [f"u{i}" for i in range(1001)]}).encode()
    large = json.dumps({"team_id": "x" * 20_000}).encode()
    gzipped = (("content-encoding", "gzip"),)
    return [
        # /user/list paging: out of range, not a whole number in digits, given twice
        Row("page-huge", "GET", "/user/list?page=99999999999999999999", None, "page"),
        Row("page-int64", "GET", "/user/list?page=9223372036854775807", None, "page"),
        Row("page-past-int32", "GET", "/user/list?page=2147483648", None, "page"),
        Row("page-5000-digits", "GET", "/user/list?page=" + "9" * 5000, None, "page"),
        Row("page-zero", "GET", "/user/list?page=0", None, "page"),
        Row("page-negative", "GET", "/user/list?page=-1", None, "page"),
        Row("page-word", "GET", "/user/list?page=abc", None, "page"),
        Row("page-fraction", "GET", "/user/list?page=1.5", None, "page"),
        Row("page-exponent", "GET", "/user/list?page=1e3", None, "page"),
        Row("page-plus", "GET", "/user/list?page=%2B1", None, "page"),
        Row("page-space", "GET", "/user/list?page=%201", None, "page"),
        Row("page-arabic-digit", "GET", "/user/list?page=%D9%A1", None, "page"),
        Row("page-nul", "GET", "/user/list?page=%00", None, "page"),
        Row("page-twice", "GET", "/user/list?page=1&page=2", None, "page"),
        Row("page-size-zero", "GET", "/user/list?page_size=0", None, "page_size"),
        Row("page-size-negative", "GET", "/user/list?page_size=-5", None, "page_size"),
        Row("page-size-over-max", "GET", "/user/list?page_size=1001", None, "page_size"),
        Row("page-size-huge", "GET", "/user/list?page_size=99999999999999999999", None, "1000"),
        Row("page-size-word", "GET", "/user/list?page_size=x", None, "page_size"),
        # ids in the query string
        Row("team-id-missing", "GET", "/team/info", None, "team_id"),
        Row("team-id-empty", "GET", "/team/info?team_id=", None, "empty"),
        Row("team-id-twice", "GET", "/team/info?team_id=a&team_id=b", None, "team_id"),
        Row("team-id-nul", "GET", "/team/info?team_id=%00", None, "control character"),
        Row("team-id-long", "GET", "/team/info?team_id=" + "x" * 1100, None, "1024"),
        Row("team-id-not-utf8", "GET", "/team/info?team_id=%FF", None, "UTF-8"),
        Row("team-id-surrogate", "GET", "/team/info?team_id=%ED%A0%80", None, "UTF-8"),
        Row("user-id-missing", "GET", "/user/info", None, "user_id"),
        Row("user-id-twice", "GET", "/user/info?user_id=a&user_id=b", None, "user_id"),
        Row("user-id-not-utf8", "GET", "/user/info?user_id=a%C3", None, "UTF-8"),
        # bodies: not a JSON object
        Row("body-empty", "POST", "/team/block", b"", "JSON object"),
        Row("body-not-json", "POST", "/team/block", b"not json", "not JSON"),
        Row("body-trailing-bytes", "POST", "/team/block", b'{"team_id": "t"}\x00', "not JSON"),
        Row("body-null", "POST", "/team/block", b"null", "JSON object"),
        Row("body-array", "POST", "/team/block", b'["team_id"]', "JSON object"),
        Row("body-string", "POST", "/team/block", b'"t"', "JSON object"),
        Row("body-number", "POST", "/team/block", b"1e999999", "JSON object"),
        Row("body-not-utf8", "POST", "/team/block", b'{"team_id": "\xff"}', "UTF-8"),
        Row("body-utf16", "POST", "/team/block", '{"team_id": "t"}'.encode("utf-16"), "UTF-8"),
        Row("body-nan", "POST", "/team/block", b'{"team_id": NaN}', "NaN"),
        # bodies nested deeper than any admin call needs (3,000 levels raised RecursionError)
        Row("body-deep-array", "POST", "/team/block", deep(3000), "deep"),
        Row("body-deep-value", "POST", "/team/block", deep_value, "deep"),
        Row("body-deep-object", "POST", "/team/block", deep_object, "deep"),
        Row("user-ids-deep", "POST", "/customer/block", deep_ids, "deep"),
        # bodies: fields
        Row("field-twice", "POST", "/team/block", b'{"team_id": "a", "team_id": "b"}', "twice"),
        Row("field-unknown", "POST", "/team/block", b'{"team": "t"}', "unknown field"),
        Row("field-missing", "POST", "/team/block", b"{}", "missing field"),
        Row("team-id-float", "POST", "/team/block", b'{"team_id": 5.5}', "float"),
        Row("team-id-huge-int", "POST", "/team/block", huge_int, "1024 digits"),
        Row("team-id-inf", "POST", "/team/block", b'{"team_id": 1e999}', "string"),
        Row("team-id-null", "POST", "/team/block", b'{"team_id": null}', "string"),
        Row("team-id-bool", "POST", "/team/unblock", b'{"team_id": true}', "string"),
        Row("team-id-list", "POST", "/team/block", b'{"team_id": ["t"]}', "string"),
        Row("team-id-object", "POST", "/team/block", b'{"team_id": {"id": "t"}}', "string"),
        Row("team-id-surrogate", "POST", "/team/block", b'{"team_id": "\\ud800"}', "control"),
        Row("user-ids-string", "POST", "/customer/block", b'{"user_ids": "u"}', "list"),
        Row("user-ids-floats", "POST", "/customer/block", b'{"user_ids": [1.5]}', "user_ids[0]"),
        Row("user-ids-empty", "POST", "/customer/unblock", b'{"user_ids": []}', "empty"),
        Row("user-ids-too-many", "POST", "/customer/block", many_ids, "1000"),
        # how the body is sent
        Row("gzip-garbage", "POST", "/team/block", b"not gzip", "Content-Encoding", 400, gzipped),
        Row("gzip", "POST", "/team/block", gzip.compress(b'{"team_id": "t"}'), "Content-Encoding",
            400, gzipped),
        Row("body-too-large", "POST", "/team/block", large, "16384", status=413),
    ]  # fmt: skip


@pytest.fixture
async def car(policy_files: PolicyFiles, tmp_path: Path) -> AsyncIterator[Sidecar]:
    async with sidecar(policy_files, f"sqlite:///{tmp_path}/state.db") as running:
        yield running


async def test_hostile_http_admin_inputs_are_400_with_a_reason(
    car: Sidecar, caplog: pytest.LogCaptureFixture
) -> None:
    assert car.http_port is not None
    http = Http(car.http_port)
    failures: list[str] = []
    try:
        for row in rows():
            headers = {**ADMIN, **dict(row.headers)}
            try:
                reply = await http.call(row.method, row.path, headers=headers, raw=row.body)
            except aiohttp.ClientError as exc:  # the server dropped the connection
                failures.append(f"{row.label}: {type(exc).__name__}")
                await http.close()
                http = Http(car.http_port)
                continue
            error = reply.body.get("error", {}) if isinstance(reply.body, dict) else {}
            message = str(error.get("message", ""))
            if (
                reply.status != row.status
                or row.needle not in message
                or error.get("code") != str(row.status)
                or reply.headers.get("x-extauthz-reason")
                != ("bad_request" if row.status == 400 else "body_too_large")
            ):
                failures.append(f"{row.label}: {reply.status} {str(reply.body)[:200]}")
        # the connection and the store still work after all that
        ok = await http.admin("GET", "/user/list?page=2&page_size=1000")
        assert ok.status == 200 and ok.body["page"] == 2, ok.body
    finally:
        await http.close()
    assert not failures, "\n".join(failures)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, [f"{r.name}: {r.getMessage()}" for r in logged]


# (label, method, request, the message must contain)
GRPC_ROWS: list[tuple[str, str, Any, str]] = [
    ("page-negative", "ListUsers", pb.ListUsersRequest(page=-1), "page"),
    ("page-int32-min", "ListUsers", pb.ListUsersRequest(page=-(2**31)), "page"),
    ("page-size-negative", "ListUsers", pb.ListUsersRequest(page_size=-5), "page_size"),
    ("page-size-over-max", "ListUsers", pb.ListUsersRequest(page_size=1001), "page_size"),
    ("team-id-empty", "BlockTeam", pb.BlockTeamRequest(team_id=""), "empty"),
    ("team-id-nul", "BlockTeam", pb.BlockTeamRequest(team_id="a\x00"), "control character"),
    ("team-id-long", "GetTeam", pb.GetTeamRequest(team_id="x" * 1100), "1024"),
    ("user-id-empty", "GetUser", pb.GetUserRequest(user_id=""), "empty"),
    ("user-ids-empty", "BlockEndUsers", pb.EndUsersRequest(user_ids=[]), "empty"),
    ("user-ids-bad", "UnblockEndUsers", pb.EndUsersRequest(user_ids=["ok", "\x7f"]), "[1]"),
    ("user-ids-too-many", "BlockEndUsers", pb.EndUsersRequest(user_ids=["u"] * 1001), "1000"),
    ("explain-no-path", "Explain", pb.ExplainRequest(token="t"), "path"),
    ("explain-huge-body", "Explain", pb.ExplainRequest(path="/v1/x", body="x" * 1_100_000), "body"),
]


async def test_hostile_grpc_admin_inputs_are_invalid_argument_with_a_reason(car: Sidecar) -> None:
    failures: list[str] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{car.grpc_port}") as channel:
        stub = pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        metadata = (("authorization", f"Bearer {MASTER_KEY}"),)
        for label, method, request, needle in GRPC_ROWS:
            try:
                await getattr(stub, method)(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.INVALID_ARGUMENT or needle not in (
                    exc.details() or ""
                ):
                    failures.append(f"{label}: {exc.code()} {exc.details()}")
            else:
                failures.append(f"{label}: accepted")
        # the largest page the API accepts is served, not an overflow
        page = await stub.ListUsers(
            pb.ListUsersRequest(page=2**31 - 1, page_size=1000), metadata=metadata, timeout=10
        )
        assert page.page == 2**31 - 1 and not page.users
    assert not failures, "\n".join(failures)

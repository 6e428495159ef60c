"""The HTTP server against hostile and odd clients, over raw sockets.

Whatever arrives, the server answers well-formed checks in order, refuses the rest with a
status and a close, never lets one client hold unbounded memory or a connection forever, and
keeps serving everyone else. Timeouts here are set short and only waited for; nothing asserts
how fast anything is.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from extauthz.envoy.http_service import (
    AuthzHttpServer,
    encode_verdict,
    start_authz_http,
    strip_prefix,
    to_request_view,
)
from extauthz.envoy.httpserver import HttpLimits, header_line, run_eagerly
from extauthz.model import Allow, Deny, Identity, Reason, RequestView, Role
from extauthz.policy.compiled import Policy
from extauthz.policy.verdict import render
from tests.httpmode.client import Conn, check_request, exchange
from tests.integration.harness import LoopThread

LIMITS = HttpLimits(
    max_header_bytes=8192,
    max_headers=32,
    max_body_bytes=65536,
    request_timeout=0.5,
    idle_timeout=1.0,
    max_pipelined=4,
    max_connections=50,
)


@dataclass
class Echo:
    """Denies every check with a 403 whose message names the path and method it saw.

    ``slow`` paths wait (a real ``asyncio.wait_for``, as a key refetch does) before deciding, so
    answers to pipelined checks must be reordered by nothing.
    """

    policy: Policy = field(default_factory=Policy)
    seen: list[RequestView] = field(default_factory=list)
    allow: Allow | None = None

    async def authorize(self, view: RequestView) -> Any:
        self.seen.append(view)
        if "slow" in view.path:
            await asyncio.wait_for(asyncio.sleep(0.05), 1.0)
        if self.allow is not None:
            return self.allow
        return Deny(403, Reason.ROUTE_NOT_ALLOWED, f"{view.method} {view.path}")


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def server(loop_thread: LoopThread, echo: Echo) -> Iterator[AuthzHttpServer]:
    srv = loop_thread.run(start_authz_http(echo, "127.0.0.1", 0, limits=LIMITS))
    yield srv
    loop_thread.run(srv.close(0.5))


def message(reply: Any) -> str:
    return str(json.loads(reply.body)["error"]["message"])


# -- the protocol as Envoy uses it --------------------------------------------------------------


def test_keep_alive_answers_every_check_on_one_connection(server: AuthzHttpServer) -> None:
    with Conn(server.port) as conn:
        for i in range(3):
            conn.send(check_request(path=f"/v1/{i}"))
            reply = conn.read()
            assert reply is not None and message(reply) == f"POST /v1/{i}"


def test_request_view_reads_what_envoy_sends(server: AuthzHttpServer, echo: Echo) -> None:
    """Prefix stripped, query kept, names lower-cased, repeats joined, body and cut flag read."""
    headers = [
        ("Authorization", "Bearer a"),
        ("X-Api-Key", "k1"),
        ("x-api-key", "k2"),
        ("X-Request-Id", "rid-1"),
        ("x-envoy-auth-partial-body", "true"),
    ]
    exchange(server.port, check_request("PUT", "/v1/x?y=%2F&z", headers, b"\xff\x00body"))
    view = echo.seen[-1]
    assert (view.method, view.path, view.body, view.body_cut, view.request_id) == (
        "PUT",
        "/v1/x?y=%2F&z",
        b"\xff\x00body",
        True,
        "rid-1",
    )
    assert view.headers["authorization"] == "Bearer a"
    assert view.headers["x-api-key"] == "k1,k2"


def test_chunked_bodies_are_read_whole(server: AuthzHttpServer, echo: Echo) -> None:
    raw = (
        b"POST /extauthz/v1/c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    exchange(server.port, raw)
    assert echo.seen[-1].body == b"abcde"


@pytest.mark.parametrize(
    "target", ["/v1/chat", "/other/v1/chat", "/extauthzv1", "/extauthz", "/extauthz?x=1", "*"]
)
def test_a_check_without_the_prefix_is_refused(server: AuthzHttpServer, target: str) -> None:
    """Strict: only prefix + '/...' is a check; anything else is a 500 (fail closed)."""
    reply = exchange(server.port, check_request(path=target, prefix=""))
    assert reply.status == 500
    assert "path_prefix" in message(reply)


def test_strip_prefix_is_exact() -> None:
    assert strip_prefix("/extauthz/v1/x?q", "/extauthz") == "/v1/x?q"
    assert strip_prefix("/extauthz//v1", "/extauthz") == "//v1"  # the core refuses it later
    assert strip_prefix("/v1/x", "") == "/v1/x"
    assert strip_prefix("/EXTAUTHZ/v1", "/extauthz") is None
    assert to_request_view("GET", "/x/v1", {}, b"", "/extauthz") is None


def test_pipelined_checks_are_answered_in_order(server: AuthzHttpServer) -> None:
    """Several checks in one write, some of whose decisions wait: answers keep request order."""
    paths = [f"/v1/{'slow' if i % 3 == 0 else 'fast'}/{i}" for i in range(12)]
    with Conn(server.port) as conn:
        conn.send(b"".join(check_request(path=p) for p in paths))
        got = []
        for _ in paths:
            reply = conn.read()
            assert reply is not None
            got.append(message(reply).removeprefix("POST "))
    assert got == paths


def test_head_answers_carry_no_body(server: AuthzHttpServer) -> None:
    """A HEAD check's deny has headers only, so the next answer on the connection stays framed."""
    with Conn(server.port) as conn:
        conn.send(check_request("HEAD", "/v1/models") + check_request("GET", "/v1/next"))
        head = conn.read_head()
        assert head is not None and head[0] == 403 and int(head[1]["content-length"]) > 0
        reply = conn.read()
        assert reply is not None and message(reply) == "GET /v1/next"


@pytest.mark.parametrize(
    ("version", "extra"),
    [("HTTP/1.1", [("connection", "close")]), ("HTTP/1.0", [])],
    ids=["connection-close", "http-1.0"],
)
def test_close_is_honoured(server: AuthzHttpServer, version: str, extra: list[Any]) -> None:
    with Conn(server.port) as conn:
        conn.send(check_request(headers=extra, version=version))
        reply = conn.read()
        assert reply is not None and reply.headers["connection"] == "close"
        assert conn.closed_by_server()


def test_expect_100_continue(server: AuthzHttpServer) -> None:
    with Conn(server.port) as conn:
        conn.send(
            b"POST /extauthz/v1/x HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: 2\r\n\r\n"
        )
        interim = conn.read_head()
        assert interim is not None and interim[0] == 100
        conn.send(b"{}")
        reply = conn.read()
        assert reply is not None and reply.status == 403


def test_half_closed_client_still_gets_its_answers(server: AuthzHttpServer) -> None:
    with Conn(server.port) as conn:
        conn.send(check_request(path="/v1/slow") + check_request(path="/v1/b"))
        conn.sock.shutdown(socket.SHUT_WR)
        assert [message(conn.read()) for _ in range(2)] == ["POST /v1/slow", "POST /v1/b"]
        assert conn.closed_by_server()


# -- hostile input ------------------------------------------------------------------------------


def _refused(port: int, data: bytes, status: int) -> None:
    with Conn(port) as conn:
        conn.send(data)
        reply = conn.read()
        assert reply is not None and reply.status == status, reply
        assert reply.headers["connection"] == "close"
        assert conn.closed_by_server()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (check_request(headers=[("x-big", "a" * 9000)]), 431),
        (check_request(headers=[(f"x-h{i}", "v") for i in range(40)]), 431),
        (check_request(path="/v1/" + "a" * 9000), 414),
        (b"POST /extauthz/v1 HTTP/1.1\r\ncontent-length: 70000\r\n\r\n", 413),
        (
            b"POST /extauthz/v1 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
            + b"8000\r\n" + b"a" * 0x8000 + b"\r\n" + b"8000\r\n" + b"a" * 0x8000 + b"\r\n"
            + b"10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
            413,
        ),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /extauthz/v1 HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"GET /extauthz/v1 HTTP/1.1\r\nx: a\rb\r\n\r\n", 400),
        (b"GET /extauthz/v1 HTTP/1.1\r\nx: a\nb: c\r\n\r\n", 400),
        (b"POST /extauthz/v1 HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd", 400),
        (
            b"POST /extauthz/v1 HTTP/1.1\r\ncontent-length: 3\r\n"
            b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"GET /extauthz/v1 HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n", 400),
        (b"GET /extauthz/v1\x00 HTTP/1.1\r\n\r\n", 400),
    ],
    ids=[
        "huge-header",
        "too-many-headers",
        "huge-target",
        "content-length-over-limit",
        "chunked-over-limit",
        "garbage",
        "header-without-colon",
        "bare-cr",
        "bare-lf",
        "two-content-lengths",
        "cl-and-chunked",
        "upgrade",
        "nul-in-target",
    ],
)  # fmt: skip
def test_malformed_or_oversized_requests_are_refused(
    server: AuthzHttpServer, data: bytes, status: int
) -> None:
    _refused(server.port, data, status)


def test_a_header_that_never_ends_is_cut_off(server: AuthzHttpServer) -> None:
    """llhttp holds an unfinished header line: bytes past the limit end the connection."""
    with Conn(server.port) as conn:
        conn.send(b"GET /extauthz/v1 HTTP/1.1\r\nx-endless: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                conn.send(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            pytest.fail("the server kept reading a header that never ends")
    assert exchange(server.port, check_request()).status == 403


def test_an_error_after_pipelined_checks_comes_after_their_answers(server: AuthzHttpServer) -> None:
    with Conn(server.port) as conn:
        conn.send(
            check_request(path="/v1/slow/a") + check_request(path="/v1/b") + b"NOT HTTP\r\n\r\n"
        )
        assert message(conn.read()) == "POST /v1/slow/a"
        assert message(conn.read()) == "POST /v1/b"
        reply = conn.read()
        assert reply is not None and reply.status == 400
        assert conn.closed_by_server()


def test_slowloris_is_timed_out(server: AuthzHttpServer) -> None:
    """A request that never completes is answered 408 and closed after request_timeout."""
    with Conn(server.port) as conn:
        conn.send(b"POST /extauthz/v1 HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        reply = conn.read()
        assert reply is not None and reply.status == 408
        assert conn.closed_by_server()


def test_idle_connections_are_closed(server: AuthzHttpServer) -> None:
    with Conn(server.port) as conn:
        conn.send(check_request())
        assert conn.read() is not None
        assert conn.closed_by_server()
    for _ in range(500):  # the server forgets the connection once asyncio reports it lost
        if server.connections == 0:
            break
        time.sleep(0.01)
    assert server.connections == 0


def test_a_client_that_reads_nothing_cannot_grow_the_server(
    server: AuthzHttpServer, loop_thread: LoopThread
) -> None:
    """Thousands of pipelined checks, no reads: the server stops reading (its buffers stay
    bounded); once the client reads, every check is answered, in order."""
    count = 5000
    data = b"".join(check_request(path=f"/v1/{i}/" + "p" * 200) for i in range(count))
    with Conn(server.port, bufsize=4096) as conn:
        conn.sock.setblocking(False)
        sent, stalls = 0, 0
        while sent < len(data) and stalls < 3:
            try:
                sent += conn.sock.send(data[sent:])
            except BlockingIOError:
                stalls += 1
                loop_thread.run(asyncio.sleep(0.05))
        assert sent < len(data), "the server read everything without anyone reading answers"
        held = max(c.transport.get_write_buffer_size() for c in list(server.http._connections))  # type: ignore[union-attr]
        assert held < 4 * 1024 * 1024
        conn.sock.setblocking(True)
        conn.sock.settimeout(10)
        rest = threading.Thread(target=conn.sock.sendall, args=(data[sent:],))
        rest.start()
        for i in range(count):
            reply = conn.read()
            assert reply is not None and message(reply).startswith(f"POST /v1/{i}/")
        rest.join()


def test_connection_limit(loop_thread: LoopThread, echo: Echo) -> None:
    limits = HttpLimits(max_connections=2)
    srv = loop_thread.run(start_authz_http(echo, "127.0.0.1", 0, limits=limits))
    try:
        with Conn(srv.port) as a, Conn(srv.port) as b, Conn(srv.port) as c:
            for conn in (a, b):
                conn.send(check_request())
                assert conn.read() is not None
            assert c.closed_by_server()
    finally:
        loop_thread.run(srv.close(0))


def test_random_bytes_never_break_the_server(server: AuthzHttpServer) -> None:
    """Seeded noise and truncated requests: each connection ends; the server keeps serving."""
    rng = random.Random(7)
    valid = check_request(headers=[("authorization", "Bearer x")], body=b'{"model": "m"}')
    samples = [rng.randbytes(rng.randint(1, 300)) for _ in range(20)]
    samples += [valid[: rng.randint(1, len(valid) - 1)] + rng.randbytes(8) for _ in range(20)]
    for data in samples:
        with Conn(server.port, timeout=5) as conn:
            conn.send(data)
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.closed_by_server()
    assert exchange(server.port, valid).status == 403


# -- what goes into response headers ------------------------------------------------------------


def test_header_values_cannot_inject_lines(loop_thread: LoopThread) -> None:
    """An identity value with CR/LF (the core already refuses such claims) fails closed: 500,
    and nothing of it reaches the response."""
    evil = Allow(Identity("jwt", user_id="u\r\nx-auth-user-role: proxy_admin"), Role.TEAM)
    srv = loop_thread.run(start_authz_http(Echo(allow=evil), "127.0.0.1", 0))
    try:
        reply = exchange(srv.port, check_request())
    finally:
        loop_thread.run(srv.close(0))
    assert reply.status == 500
    assert "x-auth-user-role" not in reply.headers and "proxy_admin" not in reply.body.decode()


def test_unsafe_metadata_is_left_out_not_fatal() -> None:
    """Metadata is informational: a value that cannot be a header is dropped, the allow stands."""
    decision = Allow(Identity("jwt", user_id="u"), Role.TEAM, model="m\x7f")
    response = encode_verdict(render(decision, Policy()))
    assert response.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\nmodel:" not in response.head and b"\nuser_id: u\r\n" in response.head


@pytest.mark.parametrize(
    ("name", "value"),
    [("x", "a\rb"), ("x", "a\nb"), ("x", "a\x00"), ("x y", "v"), ("x:", "v"), ("x", "\ud800")],
)
def test_header_line_refuses_what_would_break_framing(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        header_line(name, value)


def test_utf8_values_are_sent_as_utf8() -> None:
    assert header_line("x-auth-user-id", "jos\u00e9") == "x-auth-user-id: jos\u00e9\r\n".encode()


# -- the driver and shutdown --------------------------------------------------------------------


def test_run_eagerly_finishes_synchronous_coroutines_and_hands_over_the_rest(
    loop_thread: LoopThread,
) -> None:
    async def quick() -> int:
        return 1

    async def waits() -> int:
        await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.sleep(0.01), 1)
        return 2

    async def both() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        first = run_eagerly(quick(), loop)
        done, task = run_eagerly(waits(), loop)
        assert not done
        return first, await task

    assert loop_thread.run(both()) == ((True, 1), 2)


def test_close_lets_a_waiting_decision_finish(loop_thread: LoopThread, echo: Echo) -> None:
    srv = loop_thread.run(start_authz_http(echo, "127.0.0.1", 0))
    with Conn(srv.port) as conn:
        conn.send(check_request(path="/v1/slow"))
        while not echo.seen:
            loop_thread.run(asyncio.sleep(0.01))
        loop_thread.run(srv.close(5.0))
        reply = conn.read()
        assert reply is not None and message(reply) == "POST /v1/slow"
        assert conn.closed_by_server()


def test_close_answers_every_check_already_received(loop_thread: LoopThread, echo: Echo) -> None:
    """Checks pipelined behind one whose decision waits are answered too before the close (they
    were dropped once the first was answered), and an idle connection is closed, not reset."""
    srv = loop_thread.run(start_authz_http(echo, "127.0.0.1", 0))
    paths = ["/v1/slow/1", "/v1/slow/2", "/v1/fast/3", "/v1/slow/4"]
    with Conn(srv.port) as conn, Conn(srv.port) as idle:
        assert message(exchange_on(idle, "/v1/fast/0")) == "POST /v1/fast/0"
        conn.send(b"".join(check_request(path=p) for p in paths))
        while not echo.seen or echo.seen[-1].path != "/v1/slow/1":
            loop_thread.run(asyncio.sleep(0.01))
        loop_thread.run(srv.close(5.0))
        got: list[str] = []
        for _ in paths:
            reply = conn.read()
            assert reply is not None, f"answered only {got}"
            got.append(message(reply).removeprefix("POST "))
        assert got == paths
        assert conn.closed_by_server()
        assert idle.sock.recv(1) == b""  # a close (FIN), not a reset


def exchange_on(conn: Conn, path: str) -> Any:
    conn.send(check_request(path=path))
    reply = conn.read()
    assert reply is not None
    return reply


def test_bad_prefix_configuration_is_refused() -> None:
    for prefix in ("extauthz", "/extauthz/"):
        with pytest.raises(ValueError):
            AuthzHttpServer(Echo(), path_prefix=prefix)

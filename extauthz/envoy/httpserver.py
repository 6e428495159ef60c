"""A small HTTP/1.1 server for one kind of peer (Envoy), behind a handler.

Asyncio's Protocol API with httptools (llhttp) parsing: measured against a hand-written parser,
the difference was within noise, and llhttp is strict about framing (Content-Length with
chunked, bare CR/LF), which matters more than a microsecond. Bounded in every dimension
(header bytes, headers, body, pipelined requests, connections, slow senders, idle peers);
answers go out in request order; a handler that finishes without waiting is answered without
creating a task. What the requests mean is the handler's business (``http_service``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import sys
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

import httptools

from extauthz.model import deny_body

log = logging.getLogger("extauthz.http")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # CR, LF, NUL, ...: never into a response header

Handler = Callable[[str, str, dict[str, str], bytes], Coroutine[Any, Any, "Response"]]
"""``handler(method, target, headers, body)``: the answer to one request. Must not raise."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on what one client may make the server hold or wait for.

    The body limit sits above the shipped ``with_request_body.max_request_bytes`` (8 MiB): Envoy
    never sends more than that, so only a stray client meets it. The request timeout covers one
    request from its first byte to its last (Envoy sends a check in one go; a slow sender is a
    slowloris). The idle timeout must stay above Envoy's cluster ``idle_timeout`` so Envoy, not
    the sidecar, closes idle pooled connections (no request races a close).
    """

    max_header_bytes: int = 64 * 1024  # request line + all headers
    max_headers: int = 128
    max_body_bytes: int = 16 * 1024 * 1024
    request_timeout: float = 10.0
    idle_timeout: float = 120.0
    max_pipelined: int = 64  # requests queued on one connection before reading pauses
    max_connections: int = 10_000


# -- responses ----------------------------------------------------------------------------------


class UnsafeHeader(ValueError):
    """A header name or value that cannot be written without changing the response's framing."""


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


_STATUS_LINES = {s.value: _status_line(s.value) for s in http.HTTPStatus}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <phrase>\r\n`` (cached for the known statuses)."""
    return _STATUS_LINES.get(status) or _status_line(status)


def header_line(name: str, value: str) -> bytes:
    """``name: value\\r\\n`` as bytes, or UnsafeHeader if either could break the framing.

    Values come from tokens and bodies, so CR, LF, NUL and other controls are refused here
    whatever the core already checked; non-ASCII text is sent as UTF-8 (Envoy keeps it).
    """
    if not _TOKEN.match(name):
        raise UnsafeHeader(f"header name {name[:64]!r} is not an HTTP token")
    if _CONTROL.search(value) is not None:
        raise UnsafeHeader(f"value of header {name!r} holds control characters")
    try:
        return b"%s: %s\r\n" % (name.encode("ascii"), value.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafeHeader(f"value of header {name!r} is not encodable as UTF-8") from None


class Response:
    """An encoded answer: status line and headers (without the blank line), and body.

    ``data`` is the common case pre-joined (keep-alive, not HEAD), so answering a warm caller
    is one cached bytes object and one write.
    """

    __slots__ = ("body", "data", "head")

    def __init__(self, head: bytes, body: bytes = b"") -> None:
        self.head = head
        self.body = body
        self.data = head + b"\r\n" + body

    def wire(self, *, close: bool = False, head_only: bool = False) -> bytes:
        """The bytes to send; HEAD answers carry no body, ``close`` announces the close."""
        end = b"connection: close\r\n\r\n" if close else b"\r\n"
        return self.head + end if head_only else self.head + end + self.body


def protocol_error(status: int, message: str) -> Response:
    """A plain answer to a request that is not a well-formed check (sent with a close)."""
    body = deny_body(status, message).encode()
    head = (
        _STATUS_LINES[status]
        + b"content-type: application/json\r\n"
        + b"content-length: %d\r\n" % len(body)
    )
    return Response(head, body)


# -- running a decision without a task per request ----------------------------------------------


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Go on driving ``coro`` after its first step yielded ``pending``, inside a Task.

    The same delegation ``yield from`` performs: the Task waits on what ``coro`` yields and
    sends results (or throws cancellation) back into it.
    """
    while True:
        try:
            sent = yield pending
        except BaseException as exc:  # cancellation or a thrown error goes into coro
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coro.send(sent)
            except StopIteration as stop:
                return stop.value


if sys.version_info >= (3, 12):

    def run_eagerly(
        coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop
    ) -> tuple[bool, Any]:
        """(True, result) if ``coro`` finished without waiting, else (False, its Task).

        Python 3.12+: an eager Task (its first step runs now, as a real task).
        """
        task = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        if task.done():
            return True, task.result()
        return False, task

else:

    def run_eagerly(
        coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop
    ) -> tuple[bool, Any]:
        """(True, result) if ``coro`` finished without waiting, else (False, a Task going on).

        Python 3.11 has no eager tasks: the first step runs here, outside any task (about 8 µs
        less per check than creating one; a warm decision never waits). A decision that does
        wait (a key refetch) continues in a Task. The first step must not need a current task:
        ``asyncio.wait_for`` is fine on 3.11, ``asyncio.timeout`` would not be.
        """
        try:
            pending = coro.send(None)
        except StopIteration as stop:
            return True, stop.value
        return False, loop.create_task(_resume(coro, pending))


# -- the server -----------------------------------------------------------------------------------


class _ProtocolError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = protocol_error(status, message)


class _Pending:
    """A parsed request queued behind one in flight (answers go out in request order)."""

    __slots__ = ("body", "head_only", "headers", "keep_alive", "method", "target")

    def __init__(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        head_only: bool,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.head_only = head_only
        self.keep_alive = keep_alive


class HttpServer:
    """HTTP/1.1 on one listening socket, every request answered by ``handler``.

    ``start`` binds; ``port`` is the bound port; ``close`` stops accepting, lets requests in
    flight finish within a grace period, then closes every connection. ``failure`` answers a
    request whose handler raised (it must not), so the server itself never fails a request.
    """

    def __init__(
        self, handler: Handler, failure: Response, limits: HttpLimits | None = None
    ) -> None:
        self.handler = handler
        self.failure = failure
        self.limits = limits or HttpLimits()
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()
        self._inflight: set[asyncio.Task[Response]] = set()  # answers that had to wait
        self._all_closed: asyncio.Event | None = None  # set by close(): the last one is gone

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Bind ``host:port`` (port 0: any free port) and start the timeout sweeper.
        ``reuse_port``: share the port with the other ``--workers`` processes."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.ensure_future(self._sweep())

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; answer every request already received (in progress or pipelined
        behind one) within ``grace`` s, closing each connection after its last answer and idle
        ones at once; then drop what is left."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._all_closed = asyncio.Event()
        for conn in list(self._connections):
            conn.finish()
        if not self._connections:
            self._all_closed.set()
        with contextlib.suppress(TimeoutError):  # answers being decided, written, then closed
            async with asyncio.timeout(grace):
                await self._all_closed.wait()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _sweep(self) -> None:
        """Close connections past their request or idle timeout (one timer for all)."""
        limits = self.limits
        while True:
            await asyncio.sleep(min(1.0, limits.request_timeout / 4, limits.idle_timeout / 4))
            now = time.monotonic()
            for conn in list(self._connections):
                conn.check_timeouts(now, limits)


class _Connection(asyncio.Protocol):
    """One client connection: parse with llhttp, answer in order, bounded in every dimension.

    Requests are decided one at a time per connection (answers must go out in request order);
    pipelined requests queue behind one whose decision waits, and reading pauses when the
    queue is full or the client stops reading answers. Sizes are checked as bytes arrive, so
    no client makes the server hold more than about the limits.
    """

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = limits = server.limits
        self.max_head = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_body = limits.max_body_bytes
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Any] = deque()  # _Pending, or a final Response / _CLOSE
        self.busy = False  # a decision is running in a Task
        self.closing = False
        self.closing_since = 0.0
        self.paused = False
        self.write_paused = False
        self.last_active = time.monotonic()
        self.request_started = 0.0  # > 0 while a request is partly read
        self.in_head = False
        self.head_seen = 0  # bytes received while a head was incomplete
        self._target = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0

    # asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        if len(self.server._connections) >= self.limits.max_connections:
            log.warning("connection refused: too many connections")
            self.transport.abort()
            return
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server._connections.discard(self)
        if server._all_closed is not None and not server._connections:
            server._all_closed.set()
        self.closing = True
        self.queue.clear()
        self.transport = None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_active = time.monotonic()  # the client reads again: progress
        self._maybe_resume()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.in_head:  # a head still incomplete: llhttp holds an unfinished header line
            self.head_seen += len(data)  # (reset when a new request begins in this chunk)
        try:
            self.parser.feed_data(data)
            if self.in_head and self.head_seen > self.max_head:
                raise _ProtocolError(431, "request headers too large")
        except _ProtocolError as exc:
            self._fail(exc.response)
        except httptools.HttpParserUpgrade:
            self._fail(protocol_error(400, "protocol upgrades are not supported"))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _ProtocolError):
                self._fail(cause.response)
            else:
                log.error("request handling failed", extra={"error_type": type(cause).__name__})
                self._fail(protocol_error(400, "malformed HTTP request"))
        except httptools.HttpParserError:
            self._fail(protocol_error(400, "malformed HTTP request"))

    def eof_received(self) -> bool | None:
        """The client sends no more: answer what it sent, then close."""
        self._start_closing()
        if not self.busy and not self.queue:
            return False  # asyncio closes the transport
        self.queue.append(_CLOSE)
        return True

    # httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request_started = time.monotonic()
        self.in_head = True
        self.head_seen = 0
        self._target = b""
        self._headers = {}
        self._head_bytes = 0
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._head_bytes += len(url)
        if self._head_bytes > self.max_head:
            raise _ProtocolError(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        headers = self._headers
        if self._head_bytes > self.max_head or len(headers) >= self.max_headers:
            raise _ProtocolError(431, "request headers too large or too many")
        key = name.decode("latin-1").lower()
        if key in headers:  # repeats joined with ",", as Envoy does
            headers[key] = f"{headers[key]},{value.decode('utf-8', 'surrogateescape')}"
        else:
            headers[key] = value.decode("utf-8", "surrogateescape")

    def on_headers_complete(self) -> None:
        self.in_head = False
        headers = self._headers
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise _ProtocolError(413, "request body too large")
        if (
            "expect" in headers
            and headers["expect"].lower() == "100-continue"
            and not (self.busy or self.queue)  # an interim answer must not overtake others
            and self.transport is not None
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body:
            raise _ProtocolError(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.request_started = 0.0
        parser = self.parser
        if self.closing or parser.should_upgrade():
            return  # feed_data raises HttpParserUpgrade next: refused there
        method = parser.get_method().decode("ascii", "replace")
        target = self._target.decode("utf-8", "surrogateescape")
        parts = self._body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        pending = _Pending(
            method, target, self._headers, body, method == "HEAD", parser.should_keep_alive()
        )
        if self.busy or self.queue:
            self.queue.append(pending)
            if len(self.queue) >= self.limits.max_pipelined:
                self._pause()
        else:
            self._run(pending)

    # answering -----------------------------------------------------------------------------

    def _run(self, request: _Pending) -> None:
        """Answer now if the handler needs no waiting (the warm path), else when its Task ends."""
        head_only, keep_alive = request.head_only, request.keep_alive
        server = self.server
        try:
            done, value = run_eagerly(
                server.handler(request.method, request.target, request.headers, request.body),
                self.loop,
            )
        except Exception:  # handlers never raise; this guards the driver itself
            done, value = True, server.failure
        if done:
            self._send(value, head_only, keep_alive)
            return
        self.busy = True
        inflight = server._inflight
        inflight.add(value)
        value.add_done_callback(inflight.discard)
        value.add_done_callback(lambda task: self._finished(task, head_only, keep_alive))

    def _finished(self, task: asyncio.Task[Response], head_only: bool, keep_alive: bool) -> None:
        self.busy = False
        if task.cancelled() or task.exception() is not None:
            response = self.server.failure
        else:
            response = task.result()
        self._send(response, head_only, keep_alive)
        self._drain()

    def _send(self, response: Response, head_only: bool, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if keep_alive and not head_only:
            transport.write(response.data)
        else:
            transport.write(response.wire(close=not keep_alive, head_only=head_only))
        self.last_active = time.monotonic()
        if not keep_alive:
            self._start_closing()
            self.queue.clear()
            transport.close()

    def _drain(self) -> None:
        """Answer queued requests in order until one must wait."""
        queue = self.queue
        while queue and not self.busy:
            item = queue.popleft()
            if isinstance(item, _Pending):
                self._run(item)
                continue
            queue.clear()  # a final answer (protocol error) or the client's EOF
            if self.transport is not None and not self.transport.is_closing():
                if isinstance(item, Response):
                    self.transport.write(item.wire(close=True))
                self.transport.close()
            return
        self._maybe_resume()

    def _fail(self, response: Response) -> None:
        """Refuse a malformed or oversized request: earlier answers first, then this, then close."""
        self._start_closing()
        self._pause()
        if self.busy or self.queue:
            self.queue.append(response)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response.wire(close=True))
            self.transport.close()

    def finish(self) -> None:
        """The server is closing: read nothing more, answer what was received, then close."""
        self._start_closing()
        if self.transport is None or self.transport.is_closing():
            return
        if self.busy or self.queue:
            self.queue.append(_CLOSE)  # after the answers (as for the client's EOF)
        else:
            self.transport.close()  # idle: close now (anything written is still sent)

    def _start_closing(self) -> None:
        """No more requests are read; the sweeper aborts if closing stalls (unread answers)."""
        if not self.closing:
            self.closing = True
            self.closing_since = time.monotonic()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def _maybe_resume(self) -> None:
        if (
            self.paused
            and not self.closing
            and not self.write_paused
            and len(self.queue) < self.limits.max_pipelined // 2
            and self.transport is not None
        ):
            self.paused = False
            if self.request_started:  # its clock stopped while the server was not reading
                self.request_started = time.monotonic()
            self.transport.resume_reading()

    # timeouts ------------------------------------------------------------------------------

    def check_timeouts(self, now: float, limits: HttpLimits) -> None:
        """Called by the server's sweeper about once a second.

        A request must arrive whole within ``request_timeout`` of its first byte (slowloris),
        except while the server itself stopped reading; a connection that makes no progress
        for ``idle_timeout`` (idle, or not reading its answers) is dropped.
        """
        if self.closing:
            if self.closing_since and now - self.closing_since > 2.0:
                self.abort()  # e.g. a client that reads nothing holds a close() open
            return
        if self.paused or self.busy or self.queue:  # waiting on a decision or on the client
            if self.write_paused and now - self.last_active > limits.idle_timeout:
                self.abort()
            return
        if self.request_started and now - self.request_started > limits.request_timeout:
            self._fail(protocol_error(408, "request not received in time"))
        elif now - self.last_active > limits.idle_timeout:
            self.abort()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


_CLOSE: Any = object()  # queue marker: the client half-closed; close after earlier answers

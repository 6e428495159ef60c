"""The gRPC server's elastic pool: at most ``size`` calls at work, more threads only while some
wait (extauthz/threads.py), so slow checks cannot stall the others."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc

from extauthz import threads
from extauthz.envoy.grpc_service import AuthorizationService, add_authorization_to_server
from extauthz.model import Allow, Deny, Identity, Reason, RequestView, Role
from extauthz.policy.compiled import Policy
from extauthz.threads import ElasticPool
from tests.unit.test_envoy_grpc import check_request

SLOW = "slow"


def eventually(condition: Any, seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (a bound on hangs, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def pool() -> Iterator[ElasticPool]:
    created = ElasticPool(2, 5, "test-pool")
    yield created
    created.shutdown(wait=True, cancel_futures=True)


def test_results_and_exceptions_reach_the_future(pool: ElasticPool) -> None:
    assert pool.submit(pow, 2, 10).result(5) == 1024
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)


def test_blocked_calls_count_against_the_size(pool: ElasticPool) -> None:
    """Two calls blocked outside ``wait`` fill a pool of size 2: a third waits in the queue."""
    release = threading.Event()
    blocked = [pool.submit(release.wait, 10) for _ in range(2)]
    third = pool.submit(lambda: "third")
    assert pool.threads == 2
    assert not third.done()
    release.set()
    assert third.result(10) == "third"
    assert all(f.result(10) for f in blocked)


def test_waiting_calls_let_others_run_up_to_most(pool: ElasticPool) -> None:
    """Calls inside ``wait`` do not count: queued work gets a new thread, up to ``most`` in all."""
    never: concurrent.futures.Future[None] = concurrent.futures.Future()
    release = threading.Event()

    def waiter() -> str:
        try:
            threads.wait(never, 10)
        except concurrent.futures.TimeoutError:
            return "timed out"
        return "unreachable"

    def until_released() -> str:
        release.wait(10)
        return "released"

    waiters = [pool.submit(until_released) for _ in range(6)]  # more than most
    assert pool.threads == 2  # none waits through threads.wait: the size holds
    release.set()
    assert [f.result(10) for f in waiters] == ["released"] * 6

    # Now calls that wait through threads.wait: each lets another thread start.
    pending = [pool.submit(waiter) for _ in range(4)]
    quick = pool.submit(lambda: "quick")
    assert quick.result(10) == "quick"  # answered while four calls wait
    assert 2 < pool.threads <= 5
    never.set_result(None)
    assert [f.result(10) for f in pending] == ["unreachable"] * 4


def test_threads_beyond_the_size_end_when_idle(
    pool: ElasticPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "IDLE_SECONDS", 0.05)
    gate: concurrent.futures.Future[None] = concurrent.futures.Future()
    pending = [pool.submit(threads.wait, gate, 10) for _ in range(4)]
    assert eventually(lambda: pool.threads == 4)  # two more than the size: one per waiter
    gate.set_result(None)
    assert [f.result(10) for f in pending] == [None] * 4
    assert eventually(lambda: pool.threads == 2)


def test_open_streams_do_not_count_and_are_bounded(
    pool: ElasticPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call inside ``stream_slot`` (an open reflection or Watch stream) lets queued work
    start a thread, as a waiting call does; past ``STREAMS_MOST`` open ones the slot says no."""
    monkeypatch.setattr(threads, "STREAMS_MOST", 2)
    release = threading.Event()
    answers: list[bool] = []

    def stream() -> None:
        with threads.stream_slot() as free:
            answers.append(free)
            if free:
                release.wait(10)

    open_ = [pool.submit(stream) for _ in range(2)]  # the pool's size, both held open
    assert eventually(lambda: answers == [True, True])
    assert pool.submit(lambda: "check").result(10) == "check"  # not stalled by the streams
    third = pool.submit(stream)
    third.result(10)
    assert answers == [True, True, False]  # refused at once, no thread held
    release.set()
    for f in open_:
        f.result(10)
    pool.submit(stream).result(10)
    assert answers[-1] is True  # the slots are free again once the streams ended


def test_stream_slot_off_a_pool_is_always_free() -> None:
    with threads.stream_slot() as free:
        assert free


def test_shutdown_refuses_new_work_and_ends_threads() -> None:
    pool = ElasticPool(1, 2, "test-shutdown")
    assert pool.submit(lambda: 1).result(5) == 1
    pool.shutdown(wait=True)
    assert pool.threads == 0
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: 1)


def test_size_must_fit_in_most() -> None:
    with pytest.raises(ValueError):
        ElasticPool(3, 2)


class SlowOrFast:
    """An authorizer whose checks on path /slow wait on the event loop until ``release``."""

    policy = Policy()
    check_timeout = 10.0

    def __init__(self) -> None:
        self.release: asyncio.Event | None = None
        self.waiting = 0

    def decide_now(self, view: RequestView) -> Any:
        if view.path == "/slow":
            return SLOW
        return Allow(Identity("jwt", user_id="fast"), Role.INTERNAL_USER)

    async def finish(self, _view: RequestView, _step: object) -> Any:
        if self.release is None:
            self.release = asyncio.Event()
        self.waiting += 1
        await self.release.wait()
        return Deny(401, Reason.UNKNOWN_KEY, "slow")

    async def authorize(self, view: RequestView) -> Any:
        raise NotImplementedError


def test_checks_waiting_on_the_loop_do_not_stall_the_grpc_server() -> None:
    """A gRPC server whose pool has ONE thread at work answers a fast check while three slow
    ones wait on the event loop (with a fixed pool of one thread it could not)."""
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    authorizer = SlowOrFast()
    pool = ElasticPool(1, 8, "test-grpc")
    server = grpc.server(pool)
    add_authorization_to_server(AuthorizationService(authorizer, loop), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            slow = [stub.Check.future(check_request({}, "/slow"), timeout=20) for _ in range(3)]
            assert eventually(lambda: authorizer.waiting == 3)
            fast = stub.Check(check_request({}, "/v1/chat/completions"), timeout=10)
            assert fast.status.code == 0
            assert not any(f.done() for f in slow)
            release = authorizer.release
            assert release is not None
            loop.call_soon_threadsafe(release.set)
            assert [f.result(10).denied_response.status.code for f in slow] == [401] * 3
    finally:
        server.stop(None).wait(5)
        pool.shutdown(wait=True)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
        loop.close()

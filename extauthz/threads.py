"""The gRPC server's threads: few at work at once, more while some wait for I/O.

The gRPC server (pygrpc-native's, or grpcio's synchronous one) holds one pool thread per call
from its arrival to its answer, and
every pool thread takes turns at the GIL. Measured with ``python -m bench`` on two cores, a pool
of 4 threads answered about 1.5 times the checks a pool of 16 did, at two thirds of the CPU
per check (the trivial floor server alike): more threads in flight cost context switches and
GIL hand-offs, not throughput. But a check that waits (a key refetch, a userinfo call, a large
body read by the worker process, an admin call on the event loop) holds its thread, and with 4
threads four such checks would stall every other caller.

So a thread that waits through :func:`wait` stops counting against the pool's size: another
thread may start for queued work, up to ``most`` threads in all. Threads beyond ``size`` end
after ``IDLE_SECONDS`` without work, so a burst of slow checks does not leave the pool large.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
IDLE_SECONDS = 30.0
"""How long a thread beyond the pool's size stays without work before it ends."""
STREAMS_MOST = 16
"""Long-lived streams (server reflection, health Watch) open at once on one pool."""

_current = threading.local()  # .pool: the ElasticPool the running thread belongs to


class _Work:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(
        self,
        future: concurrent.futures.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # handed to whoever holds the future, as a pool does
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class ElasticPool(concurrent.futures.Executor):
    """An executor running at most ``size`` tasks at once that are not inside :func:`wait`,
    on at most ``most`` threads."""

    def __init__(self, size: int, most: int, name: str = "pool") -> None:
        if not 1 <= size <= most:
            raise ValueError("need 1 <= size <= most")
        self.size, self.most, self._name = size, most, name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # alive
        self._idle = 0  # waiting for work
        self._queued = 0  # submitted, not yet taken
        self._waiting = 0  # inside wait() or stream_slot()
        self._streams = 0  # inside stream_slot()
        self._workers: set[threading.Thread] = set()
        self._started = 0  # for thread names
        self._shutdown = False

    @property
    def threads(self) -> int:
        """Threads alive now (for tests and metrics)."""
        return self._threads

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._queued += 1
            self._queue.put(_Work(future, fn, args, kwargs))
            self._grow()
        return future

    def _grow(self) -> None:
        """Start a thread when queued work has no idle thread to take it and fewer than
        ``size`` threads are at work (those inside ``wait`` do not count). Under the lock."""
        if (
            not self._shutdown
            and self._queued > self._idle
            and self._threads - self._waiting < self.size
            and self._threads < self.most
        ):
            self._threads += 1
            self._started += 1
            thread = threading.Thread(
                target=self._run, name=f"{self._name}-{self._started}", daemon=True
            )
            self._workers.add(thread)
            thread.start()

    def _run(self) -> None:
        _current.pool = self
        while True:
            with self._lock:
                self._idle += 1
                extra = self._threads > self.size
            try:
                work = self._queue.get(timeout=IDLE_SECONDS if extra else None)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._threads > self.size:
                        self._leave()
                        return
                continue
            with self._lock:
                self._idle -= 1
                if work is None:  # shutdown
                    self._leave()
                    return
                self._queued -= 1
            work.run()
            del work  # no reference to a finished call's request while idle

    def _leave(self) -> None:
        """This thread ends. Under the lock."""
        self._threads -= 1
        self._workers.discard(threading.current_thread())

    @contextlib.contextmanager
    def _waiting_here(self, stream: bool = False) -> Iterator[bool]:
        """This thread stops counting against the size (another may start for queued work).
        A ``stream`` also takes one of ``STREAMS_MOST`` slots: False when none is free (then
        nothing changes)."""
        with self._lock:
            free = not stream or self._streams < STREAMS_MOST
            if free:
                self._streams += stream
                self._waiting += 1
                self._grow()
        try:
            yield free
        finally:
            if free:
                with self._lock:
                    self._streams -= stream
                    self._waiting -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = self._threads
            workers = list(self._workers)
        if cancel_futures:
            while True:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    with self._lock:
                        self._queued -= 1
                    work.future.cancel()
        for _ in range(threads):
            self._queue.put(None)
        if wait:
            for thread in workers:
                if thread is not threading.current_thread():
                    thread.join()


def wait(future: concurrent.futures.Future[T], timeout: float) -> T:
    """``future.result(timeout)``; on an :class:`ElasticPool` thread, the wait lets another
    thread take queued work meanwhile."""
    pool: ElasticPool | None = getattr(_current, "pool", None)
    if pool is None:
        return future.result(timeout)
    with pool._waiting_here():
        return future.result(timeout)


@contextlib.contextmanager
def stream_slot() -> Iterator[bool]:
    """For a call its client may keep open as long as it likes (a server-reflection or health
    Watch stream): on an :class:`ElasticPool` thread it stops counting against the pool's size,
    so open streams cannot take the threads checks need, and at most ``STREAMS_MOST`` are open
    at once. Yields False when none is free: the caller refuses the stream."""
    pool: ElasticPool | None = getattr(_current, "pool", None)
    if pool is None:
        yield True
        return
    with pool._waiting_here(stream=True) as free:
        yield free

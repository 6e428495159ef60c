"""Large request bodies are read in a worker process, so one caller cannot stall every check.

Reading the models of an 8 MiB body takes tens of milliseconds of parsing (``read_models`` is
bounded, but parsing is not free), and the event loop answers nothing else meanwhile: one caller
sending such bodies in a loop made every other caller's checks wait (``python -m
bench.bystanders``). Bodies above ``threshold`` bytes are parsed by one worker process instead;
the event loop only hands the bytes over and awaits the small answer. The worker is started on
the first large body (most deployments never see one) and again after a crash; until it has
answered once (a second or so: a fresh interpreter), large bodies are read inline as before, so
the first ones never wait for it to start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
from concurrent.futures.process import BrokenProcessPool

from extauthz.policy.models import ModelRead, read_models

log = logging.getLogger("extauthz.bodyreader")

LARGE_BODY_BYTES = 128 * 1024
"""Bodies larger than this are read in the worker (a chat body is a few kilobytes)."""


class BodyReader:
    """``read_models`` in a worker process, for bodies larger than ``threshold``."""

    def __init__(self, threshold: int = LARGE_BODY_BYTES, workers: int = 1) -> None:
        self.threshold = threshold
        self._workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._warm: concurrent.futures.Future[ModelRead] | None = None

    def wants(self, size: int) -> bool:
        """Whether a body of ``size`` bytes goes to the worker: large, and the worker is up.

        A large body seen before the worker answered starts it (once) and is read inline.
        """
        if size <= self.threshold:
            return False
        warm = self._warm
        if warm is None:
            self._start()
            return False
        return warm.done() and warm.exception() is None

    def _start(self) -> concurrent.futures.Future[ModelRead]:
        if self._warm is None:
            # spawn: a fork of a process running grpc's threads is not safe.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._workers, mp_context=multiprocessing.get_context("spawn")
            )
            self._warm = self._pool.submit(read_models, "/", "", "POST", None, b"{}", False)
        return self._warm

    async def started(self) -> None:
        """Start the worker and wait until it has answered once (tests, benchmarks)."""
        await asyncio.wrap_future(self._start())

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        self._start()
        assert self._pool is not None
        return self._pool

    async def read(
        self,
        wait: float,
        path: str,
        query: str,
        method: str,
        content_type: str | None,
        body: bytes,
        model_header: str | None,
    ) -> ModelRead | None:
        """The body's models, or None when the worker did not answer within ``wait`` seconds."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(
                self._executor(),
                read_models,
                path,
                query,
                method,
                content_type,
                body,
                False,
                model_header,
            )
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            return None
        except BrokenProcessPool:
            log.error("the body-reading worker died; starting a new one")
            self.close()
            return None

    def close(self) -> None:
        """Stop the worker (queued reads are cancelled)."""
        pool, self._pool, self._warm = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

"""``extauthz serve --workers N``: N sidecar processes on the same ports, under one supervisor.

One Python process decides on one core at a time (the GIL). With ``--workers N`` the supervisor
(this process) starts N ordinary sidecars (``runtime.run``) that bind the gRPC, HTTP-service and
admin HTTP ports with SO_REUSEPORT, so the kernel spreads connections across them. Each worker
loads the policy, fetches keys, watches the policy file and the state store by itself, so blocks
made through any worker's admin API reach the others through the store (within its poll
interval) — which is why the per-process ``memory://`` store is refused. Metrics use
prometheus_client's multiprocess mode: a scrape of any worker shows every worker's counters
added up and gauges per worker (``pid`` label). Readiness is each worker's own.

Signals: SIGTERM/SIGINT are passed to every worker, which drain as one sidecar does; a second
signal ends their drain delay. A worker that exits on its own (a crash, a port in use at start)
stops the rest, and the supervisor exits 1 so the orchestrator restarts the whole sidecar.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType

from extauthz import eventloop
from extauthz.errors import ConfigError
from extauthz.listen import parse_address
from extauthz.runtime import ServeOptions, run

MEMORY_REFUSAL = (
    "--workers {n} needs a state store the workers share: memory:// lives in one process, so a "
    "block made through one worker would not reach the others. Use --state sqlite:///PATH "
    "(the default) or postgresql://..., or --workers 1"
)


def refusal(options: ServeOptions, workers: int) -> str | None:
    """Why ``options`` cannot run as ``workers`` processes (None: they can)."""
    if workers < 1:
        return f"--workers must be at least 1 (got {workers})"
    if workers == 1:
        return None
    if options.state_url.startswith("memory:"):
        return MEMORY_REFUSAL.format(n=workers)
    for flag, address in (
        ("--grpc-address", options.grpc_address),
        ("--http-address", options.http_address),
        ("--authz-http-address", options.authz_http_address),
    ):
        if address and parse_address(address)[1] == 0:
            return f"--workers {workers} needs a fixed port: {flag} {address} asks for any free one"
    return None


def run_one(options: ServeOptions) -> int:
    """Run one sidecar until SIGTERM/SIGINT; print why it cannot start. The exit code."""
    try:
        return eventloop.run(run(options))
    except ConfigError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a port already in use
        print(f"extauthz serve: cannot start: {exc}", file=sys.stderr)
        return 1


def _worker(options: ServeOptions, log_level: str) -> None:
    from extauthz.logs import setup_logging

    setup_logging(log_level)
    sys.exit(run_one(options))


def serve_workers(options: ServeOptions, workers: int, log_level: str) -> int:
    """Start ``workers`` sidecars sharing the ports; return when all have stopped."""
    metrics_dir = tempfile.mkdtemp(prefix="extauthz-metrics-")
    # Read by prometheus_client when a worker first imports it (workers are spawned afresh).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")  # not fork: grpcio's threads do not survive it
    shared = dataclasses.replace(options, shared_ports=True)
    procs = [
        context.Process(target=_worker, args=(shared, log_level), name=f"extauthz-worker-{i}")
        for i in range(workers)
    ]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for proc in procs:
            if stopping:  # a signal while starting: the workers not yet started would miss it
                break
            proc.start()
        running = [p for p in procs if p.pid is not None]
        while running:
            multiprocessing.connection.wait([p.sentinel for p in running])
            for proc in [p for p in running if p.exitcode is not None]:
                running.remove(proc)
                if proc.exitcode != 0:
                    code = 1
                if not stopping:  # a worker ended on its own: stop the others, report it
                    print(
                        f"extauthz serve: worker {proc.name} (pid {proc.pid}) exited with "
                        f"{proc.exitcode}; stopping the other workers",
                        file=sys.stderr,
                    )
                    code = 1
                    forward(signal.SIGTERM, None)
                    forward(signal.SIGTERM, None)  # a second signal: no drain delay
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in procs:
            if proc.exitcode is None and proc.pid is not None:
                proc.kill()
                proc.join()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code

"""``extauthz serve --workers 2``: two processes on the same ports behave as one sidecar.

Each new gRPC connection goes to one worker (the kernel's SO_REUSEPORT spread), so the test
opens connections until both workers have answered, as the per-worker gauges of one scrape show.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc

from tests.state.conftest import token, write_policy
from tests.state.helpers import Checker, Http
from tests.state.processes import ServeProcess

TEAM = token({"sub": "svc", "client_id": "team-w"})


class OwnConnection(Checker):
    """A Checker on a connection of its own (grpc otherwise shares one between channels)."""

    def __init__(self, port: int) -> None:  # not Checker's: its channel would share
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.stub = external_auth_pb2_grpc.AuthorizationStub(self.channel)


async def workers_with(http: Http, gauge: str) -> set[str]:
    """The workers (pids) whose ``gauge`` is above 0, from one scrape of /metrics."""
    reply = await http.call("GET", "/metrics")
    sample = re.compile(rf'^extauthz_{gauge}\{{pid="(\d+)"\}} (\S+)$', re.M)
    return {pid for pid, value in sample.findall(reply.body) if float(value) > 0}


def total(text: str, metric: str, labels: str = "[^}]*") -> float:
    """A counter added up over its label sets, as one scrape shows it."""
    pattern = rf"^extauthz_{metric}_total\{{{labels}\}} (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.M))


async def scrape(http: Http) -> str:
    return str((await http.call("GET", "/metrics")).body)


async def test_two_workers_serve_block_and_drain_together(tmp_path: Path) -> None:
    files = write_policy(tmp_path, upsert=False)
    car = ServeProcess(
        files, f"sqlite:///{tmp_path / 'state.db'}", tmp_path, "serve", drain_delay=0.5,
        args=("--workers", "2"),
    )  # fmt: skip
    car.start()
    http = Http(car.http_port)
    checkers: list[Checker] = []
    try:
        await car.wait_ready()  # one worker is; the other may still be binding its ports
        for _ in range(200):  # set by each worker once its ports are bound
            if len(await workers_with(http, "policy_last_reload_ok")) == 2:
                break
            await asyncio.sleep(0.1)
        # Both workers answer: new connections until each has verified the token once.
        while len(await workers_with(http, "token_cache_entries")) < 2:
            assert len(checkers) < 64, "one worker answered every connection"
            checkers.append(OwnConnection(car.grpc_port))
            assert await checkers[-1].status(TEAM) == 200
        # One scrape adds up both workers' decisions.
        scraped = total(await scrape(http), "decisions")
        assert scraped == len(checkers), scraped

        # A policy edit is reloaded by both (each counts its own reload; the scrape adds them).
        files.policy.write_text(files.policy.read_text() + "\n# edited\n")
        for _ in range(200):
            if total(await scrape(http), "policy_reloads", 'result="ok"') >= 2:
                break
            await asyncio.sleep(0.1)
        assert total(await scrape(http), "policy_reloads", 'result="ok"') == 2

        # A block through the admin API (whichever worker takes it) reaches both.
        blocked = await http.admin("POST", "/team/block", {"team_id": "team-w"})
        assert blocked.status == 200, blocked.body

        for _ in range(500):  # each worker's watcher polls the store every second or so
            if [await c.status(TEAM) for c in checkers] == [403] * len(checkers):
                break
            await asyncio.sleep(0.05)
        assert {await c.status(TEAM) for c in checkers} == {403}

        # SIGTERM to the supervisor: both workers drain and stop; the supervisor exits 0.
        assert car.proc is not None
        car.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(car.proc.wait, 20)
        log = car.log_path.read_text()
        assert code == 0, car.log_tail()
        assert log.count("draining: readiness NOT_SERVING") == 2, car.log_tail()
        assert log.count('"stopped"') == 2, car.log_tail()
    finally:
        for c in checkers:
            await c.close()
        await http.close()
        await car.stop()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--state", "memory://"], "memory://"),
        (["--grpc-address", "127.0.0.1:0"], "needs a fixed port"),
        (["--workers", "0"], "at least 1"),
    ],
)
def test_workers_refuse_what_cannot_be_shared(
    tmp_path: Path, args: list[str], says: str
) -> None:
    """Refused at once, exit 2, with a message saying what to change."""
    files = write_policy(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "extauthz.cli", "serve", "--config", str(files.policy),
         "--workers", "2", "--state", f"sqlite:///{tmp_path / 's.db'}", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **files.env},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert says in done.stderr


async def test_a_worker_that_dies_stops_the_sidecar(tmp_path: Path) -> None:
    """One worker killed: the supervisor stops the other and exits 1 (the orchestrator restarts
    the whole sidecar rather than run on with fewer workers than asked)."""
    files = write_policy(tmp_path, upsert=False)
    car = ServeProcess(
        files, f"sqlite:///{tmp_path / 'state.db'}", tmp_path, "serve", args=("--workers", "2")
    )
    car.start()
    http = Http(car.http_port)
    try:
        await car.wait_ready()
        for _ in range(200):
            pids = await workers_with(http, "policy_last_reload_ok")
            if len(pids) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(pids) == 2
        os.kill(int(sorted(pids)[0]), signal.SIGKILL)
        assert car.proc is not None
        code = await asyncio.to_thread(car.proc.wait, 20)
        assert code == 1, car.log_tail()
        assert "stopping the other workers" in car.log_tail()
        for pid in pids:  # both gone, none left behind
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid), 0)
    finally:
        await http.close()
        await car.stop()


class _FakeProcess:
    """A worker process that never runs: the supervisor's bookkeeping alone is under test."""

    def __init__(self, started: list[_FakeProcess], on_start: object, name: str) -> None:
        self.name, self.sentinel = name, object()
        self.pid: int | None = None
        self.exitcode: int | None = None
        self._started, self._on_start = started, on_start

    def start(self) -> None:
        self._started.append(self)
        self.pid = 1_000_000 + len(self._started)  # never signalled: os.kill is replaced
        if callable(self._on_start):
            self._on_start(self)

    def kill(self) -> None:
        self.exitcode = -9

    def join(self) -> None:
        pass


def test_a_signal_while_workers_start_starts_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM after the first worker started (the others not yet): the supervisor starts no
    more workers and returns once the started one stopped. Before the fix it started the
    rest, which never heard of the signal, and waited for them forever."""
    from extauthz import workers
    from extauthz.runtime import ServeOptions

    started: list[_FakeProcess] = []
    killed: list[tuple[int, int]] = []

    def signal_once(proc: _FakeProcess) -> None:
        if len(started) == 1:  # the handler serve_workers installed, as the kernel would call it
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            handler(signal.SIGTERM, None)

    class Context:
        def Process(self, target: object, args: object, name: str) -> _FakeProcess:
            return _FakeProcess(started, signal_once, name)

    def kill(pid: int, signum: int) -> None:
        killed.append((pid, signum))
        for proc in started:
            if proc.pid == pid:
                proc.exitcode = 0  # a worker stops on SIGTERM

    waits = 0

    def wait(sentinels: list[object]) -> list[object]:
        nonlocal waits
        waits += 1
        if waits > 10:
            raise RuntimeError("the supervisor waits for a worker that will never stop")
        return sentinels

    monkeypatch.setattr(multiprocessing, "get_context", lambda _method: Context())
    monkeypatch.setattr(multiprocessing.connection, "wait", wait)
    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # serve_workers sets it; restored after
    options = ServeOptions(config="unused.yaml", state_url="sqlite:///unused.db")
    assert workers.serve_workers(options, 3, "info") == 0
    assert [p.name for p in started] == ["extauthz-worker-0"]
    assert killed == [(1_000_001, signal.SIGTERM)]

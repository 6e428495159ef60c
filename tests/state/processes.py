"""``extauthz serve`` as a real process, on free loopback ports, for multi-replica tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.procs import free_port
from tests.state.conftest import PolicyFiles


class ServeProcess:
    """One ``extauthz serve`` child; its log goes to ``workdir/<name>.log``."""

    def __init__(
        self,
        files: PolicyFiles,
        state_url: str,
        workdir: Path,
        name: str,
        *,
        drain_delay: float | None = 0.0,  # None: the shipped default
        args: tuple[str, ...] = (),  # more command-line arguments (e.g. --workers 2)
    ) -> None:
        self.args = args
        self.files = files
        self.state_url = state_url
        self.log_path = workdir / f"{name}.log"
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.drain_delay = drain_delay
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.files.env, "EXTAUTHZ_LOG_LEVEL": "info"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "extauthz.cli",
                    "serve",
                    "--config",
                    str(self.files.policy),
                    "--grpc-address",
                    f"127.0.0.1:{self.grpc_port}",
                    "--http-address",
                    f"127.0.0.1:{self.http_port}",
                    "--state",
                    self.state_url,
                    *([] if self.drain_delay is None else ["--drain-delay", str(self.drain_delay)]),
                    *self.args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def _ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.http_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    async def wait_ready(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not await asyncio.to_thread(self._ready):
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"extauthz serve exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"extauthz serve not ready:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        return self.proc.returncode

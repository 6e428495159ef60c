"""`make run` (python -m extauthz.dev.stack): it comes up, its printed examples do what their
comments say, it stops cleanly on SIGTERM, and it exits 1 naming a child that died."""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO

pytestmark = pytest.mark.envoy

READY_LINE = "Ctrl-C stops everything."


class DevStack:
    """The stack as a subprocess on free ports (--ports auto), output collected."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "extauthz.dev.stack", "--ports", "auto",
             "--run-dir", str(run_dir)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: list[str] = []

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # the stack prints everything at once
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                return
        _, err = self.proc.communicate(timeout=15)
        raise AssertionError(f"stack not ready: {self.lines[-5:]}\n{err}")

    def child_pid(self, word: str) -> int:
        """The pid of the stack's child whose command line contains ``word``."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        for pid in children.split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if word.encode() in cmdline:
                return int(pid)
        raise AssertionError(f"no child running {word!r}")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[DevStack]:
    stack = DevStack(tmp_path / "run")
    yield stack
    if stack.proc.poll() is None:
        stack.stop(signal.SIGKILL)


def examples(lines: list[str]) -> list[tuple[int, str]]:
    """(expected status, curl command) for each curl line after a '# NNN: ...' comment."""
    out = []
    for comment, command in itertools.pairwise(lines):
        m = re.match(r"# (\d{3}): ", comment)
        if m and command.startswith("curl "):
            out.append((int(m.group(1)), command))
    return out


def test_dev_stack_examples_work_and_it_stops_cleanly(dev_stack: DevStack) -> None:
    """Every printed curl example gets its commented status; grpcurl lines work; SIGTERM → 0."""
    dev_stack.wait_ready()
    cases = examples(dev_stack.lines)
    assert [status for status, _ in cases] == [200, 403, 200, 200, 403, 200, 403, 401]
    tokens = dev_stack.run_dir / "tokens.env"
    for status, command in cases:
        done = subprocess.run(
            ["bash", "-c", f"source {tokens} && {command}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert f"-> HTTP {status}" in done.stdout, f"{command}\n{done.stdout}{done.stderr}"
        if status == 200:
            assert '"x-auth-user-id"' in done.stdout
            assert '"authorization"' not in done.stdout
    grpc_lines = [line for line in dev_stack.lines if "grpcurl -plaintext" in line]
    assert len(grpc_lines) == 3
    outputs = [
        subprocess.run(
            ["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=20
        ).stdout
        for line in grpc_lines
    ]
    assert "envoy.service.auth.v3.Authorization" in outputs[0]
    assert all('"SERVING"' in out for out in outputs[1:])

    code, err = dev_stack.stop()
    assert code == 0, err
    assert "stopped: envoy (0), extauthz (0), upstream (0)" in err


def test_dev_stack_reports_a_dead_child(dev_stack: DevStack) -> None:
    """If the sidecar dies, the stack says so, stops the rest and exits non-zero."""
    dev_stack.wait_ready()
    subprocess.run(["kill", "-KILL", str(dev_stack.child_pid("serve"))], check=True)
    _, err = dev_stack.proc.communicate(timeout=30)
    assert dev_stack.proc.returncode == 1, err
    assert "extauthz exited with code -9" in err
    assert "stopped: envoy (0)" in err

"""Run ``python -m extauthz.mint`` as a subprocess and keep every line it logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Minter:
    """The minter process; ``lines`` fills with its JSON log lines as they come."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        # The machine's own proxy settings would route the stand-ins' traffic elsewhere; a test
        # that wants a proxy passes one in env.
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k != "EXTAUTHZ_CONFIG" and not k.lower().endswith("_proxy")
        }
        full_env = inherited | env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "extauthz.mint", *args],
            env=full_env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line, "not_json": True})
        return out

    def wait_for_record(self, msg: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if record.get("msg") == msg:
                    return record
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                break
            time.sleep(0.02)
        raise AssertionError(f"no {msg!r} log line; got:\n" + "\n".join(self.lines))

    def http_base(self) -> str:
        return "http://" + str(self.wait_for_record("http listening")["address"])

    def get_json(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.http_base() + path, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get_json("/readyz")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError("minter never ready:\n" + "\n".join(self.lines))

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):  # no file left for the collector
            if stream is not None:
                stream.close()
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.wait()

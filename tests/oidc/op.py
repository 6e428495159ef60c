"""Run the real OpenID provider (npm ``oidc-provider``, ``tests/oidc/op/op.mjs``) as a process.

Installed into ``.tools/oidc-op`` by ``tests.deploy.tools.oidc_provider`` (``make test`` runs the
installer first). One process per provider, so a test can stop one, or restart it with another
signing key (a key rotation), on the same port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from typing import Any

from harness.procs import free_port
from tests.deploy.tools import oidc_provider


class OpenIdProvider:
    """One oidc-provider instance at http://127.0.0.1:<port>, signing with key ``kid``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.userinfo = f"{self.issuer}/me"  # oidc-provider's userinfo route
        self._proc: subprocess.Popen[str] | None = None

    def start(self, kid: str) -> OpenIdProvider:
        node = shutil.which("node")
        assert node is not None, "node not found: install Node.js (Debian: nodejs, npm)"
        script = oidc_provider() / "op.mjs"
        self._proc = subprocess.Popen(
            [node, str(script), str(self.port), kid],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # "ready <issuer>", or "" if it died
        assert line.startswith("ready "), f"oidc-provider did not start: {line!r}"
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def token(
        self,
        sub: str,
        claims: dict[str, Any] | None = None,
        *,
        audience: str | None = None,
        opaque: bool = False,
    ) -> str:
        """An access token the provider issues: a JWT for ``audience``, or an opaque one."""
        body = {
            "sub": sub,
            "claims": claims or {},
            "format": "opaque" if opaque else "jwt",
            "audience": audience,
        }
        req = urllib.request.Request(
            f"{self.issuer}/_test/token", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.loads(resp.read())["access_token"])

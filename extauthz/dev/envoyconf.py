"""Render the shipped ``envoy.yaml`` with other ports, and run an Envoy from it.

One renderer for ``make run`` and the integration tests, so the configuration the tests exercise
is the one users run: only addresses (and, for tests, the body limit and an access log) change.
Port 0 is allowed for the listener and the admin API: :class:`EnvoyProcess` reads the ports
Envoy was given back from its admin API.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
EXT_AUTHZ_METADATA = "envoy.filters.http.ext_authz"
FILE_ACCESS_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


@dataclass(frozen=True, slots=True)
class EnvoyPorts:
    """Where Envoy listens and where its clusters point (the shipped config's defaults)."""

    listener: int = 8080
    admin: int = 9901
    extauthz_grpc: int = 9191
    extauthz_http: int = 9192
    upstream: int = 8081


def find_binary(name: str) -> str:
    """A command next to the running interpreter (the virtualenv's bin), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name}: not found next to {sys.executable} nor on PATH")
    return found


def load_config(path: str | Path) -> dict[str, Any]:
    """Read an Envoy bootstrap YAML file."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an Envoy bootstrap (expected a mapping)")
    return data


def _hcm(config: Mapping[str, Any]) -> dict[str, Any]:
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == HCM_FILTER:
                    typed: dict[str, Any] = f["typed_config"]
                    return typed
    raise ValueError("no http_connection_manager in the Envoy config")


def _ext_authz(config: Mapping[str, Any]) -> dict[str, Any]:
    for f in _hcm(config)["http_filters"]:
        if f["name"] == EXT_AUTHZ_FILTER:
            typed: dict[str, Any] = f["typed_config"]
            return typed
    raise ValueError(f"no {EXT_AUTHZ_FILTER} filter in the Envoy config")


def _set_cluster_port(config: Mapping[str, Any], name: str, port: int) -> None:
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == name:
            for group in cluster["load_assignment"]["endpoints"]:
                for ep in group["lb_endpoints"]:
                    ep["endpoint"]["address"]["socket_address"]["port_value"] = port
            return
    raise ValueError(f"no cluster named {name!r} in the Envoy config")


def render_envoy_config(
    config: Mapping[str, Any],
    ports: EnvoyPorts,
    *,
    max_request_bytes: int | None = None,
    access_log_path: str | None = None,
    access_log_fields: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of ``config`` with ``ports`` swapped in.

    ``max_request_bytes`` replaces ext_authz's body limit; ``access_log_path`` adds a JSON file
    access log (``access_log_fields``: key → Envoy format string; default: status, the test's
    ``x-test-id`` header, and the ext_authz dynamic metadata).
    """
    out = copy.deepcopy(dict(config))
    out["admin"]["address"]["socket_address"]["port_value"] = ports.admin
    listeners = out["static_resources"]["listeners"]
    if len(listeners) != 1:
        raise ValueError("expected exactly one listener in the Envoy config")
    listeners[0]["address"]["socket_address"]["port_value"] = ports.listener
    _set_cluster_port(out, "extauthz", ports.extauthz_grpc)
    _set_cluster_port(out, "extauthz_http", ports.extauthz_http)
    _set_cluster_port(out, "upstream", ports.upstream)
    if max_request_bytes is not None:
        _ext_authz(out)["with_request_body"]["max_request_bytes"] = max_request_bytes
    if access_log_path is not None:
        fields = dict(access_log_fields or default_access_log_fields())
        _hcm(out).setdefault("access_log", []).append(
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": FILE_ACCESS_LOG_TYPE,
                    "path": access_log_path,
                    "log_format": {"json_format": fields},
                },
            }
        )
    return out


def default_access_log_fields() -> dict[str, str]:
    """JSON access-log fields: status, test id, and every ext_authz metadata key."""
    fields = {"status": "%RESPONSE_CODE%", "test_id": "%REQ(X-TEST-ID)%"}
    for key in ("user_id", "team_id", "org_id", "end_user_id", "role", "model", "decision"):
        fields[key] = f"%DYNAMIC_METADATA({EXT_AUTHZ_METADATA}:{key})%"
    return fields


def write_config(config: Mapping[str, Any], path: str | Path) -> Path:
    """Write a rendered config as YAML and return its path."""
    p = Path(path)
    p.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return p


def validate(path: str | Path, binary: str | None = None) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate -c PATH`` (binds no port)."""
    return subprocess.run(
        [
            binary or find_binary("envoy"),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--use-dynamic-base-id",
            "--log-level",
            "warn",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def die_with_parent(cmd: Sequence[str]) -> list[str]:
    """``cmd`` run so that Linux sends it SIGTERM when its parent dies (PR_SET_PDEATHSIG).

    util-linux's ``setpriv --pdeathsig`` sets it and execs ``cmd``, so the child needs no
    ``preexec_fn``: a Python fork of a process with gRPC's threads running can abort in the child
    before it execs (seen here: Envoy "exited" with SIGABRT at start). Unchanged where there is
    no setpriv.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else list(cmd)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM a running child, SIGKILL it after ``timeout`` seconds; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class EnvoyProcess:
    """One Envoy, started from a config in ``workdir``, with output in ``workdir/<name>.log``."""

    def __init__(
        self,
        config: Mapping[str, Any] | Path,
        workdir: str | Path,
        *,
        name: str = "envoy",
        binary: str | None = None,
        concurrency: int | None = 1,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.name = name
        # A Path is run as it is; a mapping (a rendered config) is written to workdir first.
        self.config = None if isinstance(config, Path) else dict(config)
        self.config_path = config if isinstance(config, Path) else self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.admin_address_path = self.workdir / f"{name}.admin-address"
        self.binary = binary or find_binary("envoy")
        self.concurrency = concurrency
        self.extra_args = tuple(extra_args)
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.admin_url = ""
        self.listener_port = 0

    def start(self) -> None:
        """Start Envoy (``--use-dynamic-base-id``, so several can run on one host)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            write_config(self.config, self.config_path)
        with contextlib.suppress(FileNotFoundError):
            self.admin_address_path.unlink()
        cmd = [
            self.binary,
            "-c",
            str(self.config_path),
            "--use-dynamic-base-id",
            "--admin-address-path",
            str(self.admin_address_path),
            "--log-level",
            "warn",
        ]
        if self.concurrency is not None:
            cmd += ["--concurrency", str(self.concurrency)]
        cmd += list(self.extra_args)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            die_with_parent(cmd) if self.die_with_parent else cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _admin_get(self, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as resp:  # noqa: S310
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the admin API says LIVE; learn the admin URL and the listener's port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc is not None else None
                raise RuntimeError(f"envoy exited with {code}:\n{self.log_tail()}")
            if not self.admin_url:
                with contextlib.suppress(OSError):
                    address = self.admin_address_path.read_text().strip()
                    if address:
                        self.admin_url = f"http://{address}"
            if self.admin_url:
                with contextlib.suppress(OSError):
                    status, body = self._admin_get("/ready")
                    if status == 200 and body.strip() == b"LIVE":
                        self.listener_port = self._listener_port()
                        return
            time.sleep(0.05)
        raise TimeoutError(f"envoy not ready after {timeout:g}s:\n{self.log_tail()}")

    def _listener_port(self) -> int:
        _, body = self._admin_get("/listeners?format=json")
        statuses = json.loads(body)["listener_statuses"]
        return int(statuses[0]["local_address"]["socket_address"]["port_value"])

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``. Returns the exit code."""
        code = None if self.proc is None else stop_process(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

"""``make run``: Envoy + ``extauthz serve`` + the demo upstream + a dev signing key, on localhost.

``python -m extauthz.dev.stack`` (from the repository root) creates ``.run/`` with a dev key and
its JWKS, starts the three processes (logs in ``.run/*.log``), waits until each is ready, mints
three tokens with ``extauthz token`` and prints curl and grpcurl lines to try. Ctrl-C or SIGTERM
stops everything; if a process dies, the stack says which, stops the rest and exits 1.

Ports are the shipped ones (Envoy 8080, admin 9901, sidecar 9191/9192, upstream 8081), or any
free ports with ``--ports auto`` (or ``EXTAUTHZ_DEV_PORTS=auto``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from extauthz.dev.envoyconf import (
    EnvoyPorts,
    EnvoyProcess,
    die_with_parent,
    find_binary,
    load_config,
    render_envoy_config,
    stop_process,
)
from extauthz.state.protocol import TeamConflict, TeamState
from extauthz.state.urls import store_from_url

READY_TIMEOUT = 60.0  # first starts on a busy 2-core machine import slowly
ADMIN_SCOPE = "litellm_proxy_admin"

# The three callers the printed examples use; claims follow examples/policy.yaml.
TOKENS: dict[str, dict[str, object]] = {
    "USER_TOKEN": {  # internal_user (role basic_user), allowed gpt-4o-mini only
        "sub": "alice",
        "email": "alice@example.com",
        "roles": ["basic_user"],
        "org_id": "org-acme",
        "customer_id": "cust-42",
    },
    "TEAM_TOKEN": {  # a team (an OAuth client), allowed gpt-4o-mini and gpt-4o
        "sub": "svc-research-bot",
        "client_id": "team-research",
        "org_id": "org-acme",
    },
    "GROUP_TOKEN": {  # internal_user whose IdP groups are teams (team_ids_jwt_field: groups)
        "sub": "gina",
        "email": "gina@example.com",
        "roles": ["basic_user"],
        "groups": ["data-eng", "ml-platform"],
    },
    "ADMIN_TOKEN": {  # proxy_admin through the admin scope: any model, the admin API
        "sub": "root",
        "email": "admin@example.com",
        "scope": ADMIN_SCOPE,
    },
}


class StackError(Exception):
    """Start-up failed; the message says what and where to look."""


@dataclass
class Child:
    """A process of the stack and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Stack:
    """The running stack; ``start`` then ``wait``; ``stop`` always."""

    policy: Path
    envoy_config: Path
    run_dir: Path
    auto_ports: bool
    children: list[Child] = field(default_factory=list)
    envoy: EnvoyProcess | None = None
    stopping: bool = False
    ports: EnvoyPorts = field(default_factory=EnvoyPorts)
    tokens: dict[str, str] = field(default_factory=dict)

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None) -> Child:
        log_path = self.run_dir / f"{name}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            die_with_parent(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            # Own session: Ctrl-C reaches only the stack, which stops the children in order;
            # if the stack itself is killed, Linux sends them SIGTERM (PR_SET_PDEATHSIG).
            start_new_session=True,
        )
        child = Child(name, proc, log_path, log)
        self.children.append(child)
        return child

    def _check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise StackError(
                    f"{child.name} exited with code {code}; last lines of {child.log_path}:\n"
                    + child.tail()
                )
        if self.envoy is not None and self.envoy.proc is not None:
            code = self.envoy.proc.poll()
            if code is not None:
                raise StackError(
                    f"envoy exited with code {code}; last lines of {self.envoy.log_path}:\n"
                    + "\n".join("    " + line for line in self.envoy.log_tail(15).splitlines())
                )

    def _wait_for(self, what: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.stopping:
                raise StackError("interrupted during start-up")
            self._check_children()
            with contextlib.suppress(OSError, ValueError):
                if probe():
                    return
            time.sleep(0.1)
        raise StackError(f"{what} not ready after {READY_TIMEOUT:g}s (see {self.run_dir}/*.log)")

    # -- start-up ----------------------------------------------------------------------------

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.policy, self.envoy_config):
            if not path.is_file():
                raise StackError(f"{path}: not found (run from the repository root, or pass it)")
        extauthz = _extauthz_command()
        key, jwks = self.run_dir / "dev-key.pem", self.run_dir / "jwks.json"
        subprocess.run(
            [*extauthz, "dev-key", "--key", str(key), "--jwks", str(jwks)],
            check=True,
            capture_output=True,
        )
        minting = {
            name: subprocess.Popen(
                [*extauthz, "token", "--key", str(key), "--claims", json.dumps(claims),
                 "--ttl", "43200"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for name, claims in TOKENS.items()
        }  # fmt: skip

        auto = self.auto_ports
        wanted = EnvoyPorts(0, 0, 0, 0, 0) if auto else EnvoyPorts()
        port_file = self.run_dir / "upstream.port"
        with contextlib.suppress(FileNotFoundError):
            port_file.unlink()
        self._spawn(
            "upstream",
            [sys.executable, "-m", "extauthz.dev.upstream", "--host", "127.0.0.1",
             "--port", str(wanted.upstream), "--port-file", str(port_file)],
        )  # fmt: skip
        state_url = f"sqlite:///{self.run_dir / 'state.db'}"
        asyncio.run(_register_teams(state_url))
        env = dict(os.environ)
        env["JWT_PUBLIC_KEY_URL"] = jwks.resolve().as_uri()
        sidecar = self._spawn(
            "extauthz",
            [*extauthz, "serve", "--config", str(self.policy),
             "--grpc-address", f"127.0.0.1:{wanted.extauthz_grpc}",
             "--http-address", f"127.0.0.1:{wanted.extauthz_http}",
             "--state", state_url,
             # Envoy, its only client, is stopped first: nothing to wait for.
             "--drain-delay", "0"],
            env,
        )  # fmt: skip

        upstream_port = 0

        def upstream_ready() -> bool:
            nonlocal upstream_port
            upstream_port = int(port_file.read_text())
            return _http_status(f"http://127.0.0.1:{upstream_port}/") == 200

        self._wait_for("demo upstream", upstream_ready)
        grpc_port, http_port = wanted.extauthz_grpc, wanted.extauthz_http

        def sidecar_ready() -> bool:
            nonlocal grpc_port, http_port
            if auto and not http_port:
                found = _serving_ports(sidecar.log_path)
                if found is None:
                    return False
                grpc_port, http_port = found
            return _http_status(f"http://127.0.0.1:{http_port}/readyz") == 200

        self._wait_for("extauthz (GET /readyz)", sidecar_ready)

        if auto:
            ports = EnvoyPorts(0, 0, grpc_port, http_port, upstream_port)
            config = render_envoy_config(load_config(self.envoy_config), ports)
            self.envoy = EnvoyProcess(config, self.run_dir, concurrency=None, die_with_parent=True)
        else:
            self.envoy = EnvoyProcess(
                self.envoy_config.resolve(), self.run_dir, concurrency=None, die_with_parent=True
            )
        self.envoy.start()
        self.envoy.wait_ready(READY_TIMEOUT)
        admin_port = int(self.envoy.admin_url.rpartition(":")[2])
        self.ports = EnvoyPorts(
            self.envoy.listener_port, admin_port, grpc_port, http_port, upstream_port
        )

        for name, proc in minting.items():
            out, err = proc.communicate(timeout=READY_TIMEOUT)
            if proc.returncode != 0:
                raise StackError(f"extauthz token failed for {name}: {err.decode().strip()}")
            self.tokens[name] = out.decode().strip()
        env_file = self.run_dir / "tokens.env"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in self.tokens.items()))

    # -- running -----------------------------------------------------------------------------

    def wait(self) -> None:
        """Until a signal (returns) or a dead child (raises StackError)."""
        while not self.stopping:
            self._check_children()
            time.sleep(0.2)

    def stop(self) -> list[str]:
        """Stop Envoy first (no new requests), then the sidecar (drains), then the upstream."""
        stopped: list[str] = []
        if self.envoy is not None:
            stopped.append(f"envoy ({self.envoy.stop()})")
        for child in reversed(self.children):
            stop_process(child.proc)
            child.log.close()
            stopped.append(f"{child.name} ({child.proc.returncode})")
        return stopped

    def instructions(self) -> str:
        p = self.ports
        run = _shown(self.run_dir)
        grpcurl = _shown(Path(find_binary("grpcurl")))
        base = f"http://localhost:{p.listener}"
        w = "-w '\\n-> HTTP %{http_code}\\n'"
        chat = "/v1/chat/completions"
        ct = "-H 'Content-Type: application/json'"

        def body(model: str) -> str:
            return shlex.quote(
                json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
            )

        def auth(var: str) -> str:
            return f'-H "Authorization: Bearer ${var}"'

        lines = [
            "",
            "extauthz dev stack is up (logs: " + run + "/*.log)",
            f"  envoy     {base}  (admin http://127.0.0.1:{p.admin})",
            f"  extauthz  gRPC localhost:{p.extauthz_grpc}, "
            f"HTTP http://localhost:{p.extauthz_http} (/readyz, /metrics)",
            f"  upstream  http://localhost:{p.upstream} (echoes each request as JSON)",
            "",
            "# Tokens: alice (internal_user), a team, gina (IdP groups), an admin",
            f"# (also in {run}/tokens.env)",
            *(f"export {k}={v}" for k, v in self.tokens.items()),
            "",
            "# 200: alice may use gpt-4o-mini; the echo shows x-auth-* headers, no Authorization",
            f"curl -s {w} {base}{chat} {auth('USER_TOKEN')} {ct} -d {body('gpt-4o-mini')}",
            "# 403: alice may not use gpt-4o (internal_user: gpt-4o-mini only)",
            f"curl -s {w} {base}{chat} {auth('USER_TOKEN')} {ct} -d {body('gpt-4o')}",
            "# 200: the team may use gpt-4o (x-auth-team-id: team-research)",
            f"curl -s {w} {base}{chat} {auth('TEAM_TOKEN')} {ct} -d {body('gpt-4o')}",
            "# 200: the admin may use any model",
            f"curl -s {w} {base}{chat} {auth('ADMIN_TOKEN')} {ct} -d {body('claude-sonnet')}",
            "# 403: a management route (/team/block) for a non-admin",
            f"curl -s {w} -X POST {base}/team/block {auth('USER_TOKEN')} {ct} "
            + '-d \'{"team_id": "team-research"}\'',
            "# Teams from IdP groups: gina's token carries groups [data-eng, ml-platform]; the",
            "# team registry (made at start, as POST /team/new would) holds ml-platform with",
            '# models [gpt-4o-mini] and team-research with [] (every model).',
            "# 200: gina runs as ml-platform, the first of her registered groups with the model",
            f"curl -s {w} {base}{chat} {auth('GROUP_TOKEN')} {ct} -d {body('gpt-4o-mini')}",
            "# 403: no team of gina's has claude-sonnet",
            f"curl -s {w} {base}{chat} {auth('GROUP_TOKEN')} {ct} -d {body('claude-sonnet')}",
            "# the team as the admin API shows it; change it with POST /team/update",
            f"curl -s {base}/team/info?team_id=ml-platform {auth('ADMIN_TOKEN')}",
            "# 401: no token (see the WWW-Authenticate header with -i)",
            f"curl -s {w} {base}{chat} {ct} -d {body('gpt-4o-mini')}",
            "",
            "# gRPC: the services (reflection), liveness and readiness",
            f"{grpcurl} -plaintext localhost:{p.extauthz_grpc} list",
            f'{grpcurl} -plaintext -d \'{{"service":""}}\' localhost:{p.extauthz_grpc} '
            "grpc.health.v1.Health/Check",
            f'{grpcurl} -plaintext -d \'{{"service":"readiness"}}\' '
            f"localhost:{p.extauthz_grpc} grpc.health.v1.Health/Check",
            "",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)


# The teams the printed examples use, registered before the sidecar starts (idempotent).
DEV_TEAMS = (
    TeamState("ml-platform", False, "make run", 0.0, "ML Platform", ("gpt-4o-mini",), None, True),
    TeamState("team-research", False, "make run", 0.0, "Research", (), None, True),
)


async def _register_teams(state_url: str) -> None:
    store = store_from_url(state_url)
    await store.open()
    try:
        for team in DEV_TEAMS:
            with contextlib.suppress(TeamConflict):  # registered by an earlier run
                await store.create_team(team)
    finally:
        await store.close()


def _extauthz_command() -> list[str]:
    try:
        return [find_binary("extauthz")]
    except FileNotFoundError:
        return [sys.executable, "-m", "extauthz.cli"]


def _shown(path: Path) -> str:
    """``path`` relative to the cwd when it lies below it (shorter lines to copy)."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 (loopback URL)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _serving_ports(log_path: Path) -> tuple[int, int] | None:
    """The ports from the sidecar's ``serving`` log line (for ``--ports auto``)."""
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict) and rec.get("msg") == "serving":
                return int(rec["grpc_port"]), int(rec["http_port"])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m extauthz.dev.stack",
        description="Envoy + extauthz + a demo upstream on localhost, with dev tokens",
    )
    parser.add_argument("--config", default="examples/policy.yaml", help="policy YAML")
    parser.add_argument("--envoy-config", default="envoy.yaml")
    parser.add_argument("--run-dir", default=".run", help="keys, tokens, rendered config, logs")
    parser.add_argument(
        "--ports",
        choices=["fixed", "auto"],
        default=os.environ.get("EXTAUTHZ_DEV_PORTS", "fixed"),
        help="fixed: the shipped ports (8080, 9901, 9191, 9192, 8081); auto: any free ports "
        "(env EXTAUTHZ_DEV_PORTS)",
    )
    args = parser.parse_args(argv)
    stack = Stack(
        policy=Path(args.config),
        envoy_config=Path(args.envoy_config),
        run_dir=Path(args.run_dir),
        auto_ports=args.ports == "auto",
    )

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stack.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        stack.start()
        print(stack.instructions(), flush=True)
        stack.wait()
    except StackError as exc:
        print(f"extauthz dev stack: {exc}", file=sys.stderr, flush=True)
        code = 1
    except (subprocess.CalledProcessError, OSError, TimeoutError, RuntimeError) as exc:
        print(f"extauthz dev stack: start-up failed: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stopped = stack.stop()
        print("stopped: " + ", ".join(stopped), file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

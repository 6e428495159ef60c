"""A real LiteLLM proxy behind Envoy and the sidecar (issue 12): the parts of the stack.

One file is both configs: LiteLLM runs from it as its ``config.yaml`` and the sidecar reads it as
its policy. LiteLLM 1.108.7 starts with ``enable_jwt_auth``, ``litellm_jwtauth``,
``role_permissions`` and our top-level ``extauthz:`` section in its config (JWT auth itself would be
enterprise-only, but it never sees a token here): the sidecar removes the caller's credential and
Envoy's route to LiteLLM adds the master key. LiteLLM therefore runs whatever reaches it with full
rights, so the sidecar is the only gate, and that gate is what the tests measure.

Which model ran is read from the reply: every deployment answers with ``mock_response``
``MARKER:<model_name>``, which LiteLLM honours on chat and text completions, embeddings (the
string becomes the embedding), the Responses API, Anthropic ``/v1/messages`` and Google
``generateContent``. Every deployment's ``api_base`` is a :class:`ProviderTrap` on loopback, so
what LiteLLM does not mock (file uploads, batches, its start-up model discovery) stays on this
machine and is recorded per deployment.

The IdP, the sidecar and the trap run on the integration harness's loop thread; LiteLLM and Envoy
are subprocesses.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import os
import re
import string
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.dev.envoyconf import (
    EnvoyPorts,
    EnvoyProcess,
    die_with_parent,
    find_binary,
    load_config,
    render_envoy_config,
    stop_process,
)
from extauthz.devtokens import sign_token
from extauthz.envoy.http_service import AuthzHttpServer, start_authz_http
from extauthz.runtime import Sidecar
from harness.procs import free_port
from tests.httpmode.client import ENVOY_HTTP_YAML
from tests.integration.harness import ENVOY_YAML, Idp, LoopThread, Reply, request, start_sidecar

MASTER_KEY = "sk-litellm-e2e-master-key"
MODES = ("grpc", "http")

# The LiteLLM config.yaml the proxy runs, which is also the sidecar's policy. ${trap}: the
# provider trap's URL; ${jwks}: the IdP's discovery URL; ${master_key}: MASTER_KEY.
CONFIG_TEMPLATE = """\
model_list:
  # The internal user's only model. A prompt longer than its window is the caller's own way to
  # make it fail, and a failed call is what request fallbacks act on.
  - model_name: anthropic-claude
    litellm_params:
      model: openai/anthropic-claude
      api_base: ${trap}/anthropic-claude/v1
      api_key: sk-provider-not-real
      mock_response: "MARKER:anthropic-claude"
    model_info: {max_input_tokens: 300}
  # Nobody but the admin may use it. Its provider model name and its deployment id both lie
  # inside the team's claude-* pattern.
  - model_name: openai-gpt-4o
    litellm_params:
      model: claude-gpt4o-backend
      custom_llm_provider: openai
      api_base: ${trap}/openai-gpt-4o/v1
      api_key: sk-provider-not-real
      mock_response: "MARKER:openai-gpt-4o"
    model_info: {id: claude-gpt4o-deployment}
  - model_name: claude-haiku
    litellm_params:
      model: openai/claude-haiku
      api_base: ${trap}/claude-haiku/v1
      api_key: sk-provider-not-real
      mock_response: "MARKER:claude-haiku"
    model_info: {max_input_tokens: 300}
  # Always fails; router_settings.fallbacks sends it on to openai-gpt-4o.
  - model_name: claude-flaky
    litellm_params:
      model: openai/claude-flaky
      api_base: ${trap}/claude-flaky/v1
      api_key: sk-provider-not-real
      mock_response: litellm.InternalServerError
  # Always fails with a content-policy error (what content_policy_fallbacks act on).
  - model_name: claude-filtered
    litellm_params:
      model: openai/claude-filtered
      api_base: ${trap}/claude-filtered/v1
      api_key: sk-provider-not-real
      mock_response: >-
        Exception: content_filter_policy invalid_request_error content_policy_violation

router_settings:
  num_retries: 0
  disable_cooldowns: true
  enable_pre_call_checks: true          # context windows are checked before a call
  model_group_alias: {claude-fast: openai-gpt-4o}
  fallbacks: [{claude-flaky: [openai-gpt-4o]}]

litellm_settings:
  model_alias_map: {claude-mapped: openai-gpt-4o}

general_settings:
  master_key: ${master_key}
  enable_jwt_auth: true
  litellm_jwtauth:
    user_id_jwt_field: sub
    team_id_jwt_field: client_id
    user_roles_jwt_field: roles
    user_allowed_roles: [basic_user]
  role_permissions:
    - {role: internal_user, models: [anthropic-claude]}
    - {role: team, models: ["claude-*"]}

extauthz:
  public_key_url: ${jwks}
  model_globs: true            # the team's "claude-*" is a pattern (LiteLLM: a literal name)
  missing_team_claim: as_user  # the user's token has no client_id (LiteLLM would refuse it)
"""


def policy_config(trap: str, jwks: str) -> dict[str, Any]:
    """CONFIG_TEMPLATE with the trap's and the IdP's URLs."""
    text = string.Template(CONFIG_TEMPLATE).substitute(trap=trap, jwks=jwks, master_key=MASTER_KEY)
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _role_models(role: str) -> tuple[str, ...]:
    config = policy_config("http://trap", "http://idp")
    for perm in config["general_settings"]["role_permissions"]:
        if perm["role"] == role:
            return tuple(perm["models"])
    raise AssertionError(f"no role_permissions entry for {role}")


@dataclass(frozen=True)
class Caller:
    """A token's claims and the models its role may use (read from the policy)."""

    name: str
    claims: Mapping[str, Any]
    models: tuple[str, ...]

    def may_use(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def __str__(self) -> str:
        return self.name


USER = Caller("user", {"sub": "alice", "roles": ["basic_user"]}, _role_models("internal_user"))
TEAM = Caller("team", {"sub": "svc-bot", "client_id": "team-claude"}, _role_models("team"))


# -- the provider trap --------------------------------------------------------------------------


class ProviderCall(NamedTuple):
    deployment: str  # the first path segment: each deployment's api_base is TRAP/<model_name>/v1
    method: str
    path: str


class ProviderTrap:
    """Every deployment's provider: records each call LiteLLM makes, per deployment.

    File uploads and batch creations get plausible OpenAI objects, so a files-then-batches flow
    proceeds as it would against OpenAI; anything else gets a 400 (LiteLLM does not retry a 4xx).
    """

    FILE_ID = "file-trap"

    def __init__(self) -> None:
        self.calls: list[ProviderCall] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, req: web.Request) -> web.Response:
        await req.read()
        deployment = req.path.lstrip("/").partition("/")[0]
        self.calls.append(ProviderCall(deployment, req.method, req.path))
        now = int(time.time())
        if req.method == "POST" and req.path.endswith("/files"):
            return web.json_response(
                {"id": self.FILE_ID, "object": "file", "bytes": 1, "created_at": now,
                 "filename": "input.jsonl", "purpose": "batch", "status": "processed"}
            )  # fmt: skip
        if req.method == "POST" and req.path.endswith("/batches"):
            return web.json_response(
                {"id": "batch_trap", "object": "batch", "endpoint": "/v1/chat/completions",
                 "input_file_id": self.FILE_ID, "completion_window": "24h",
                 "status": "validating", "created_at": now}
            )  # fmt: skip
        error = {"message": "provider trap: not a real provider", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=400)

    def called(self) -> frozenset[str]:
        """The deployments whose provider LiteLLM called since the last ``clear``."""
        return frozenset(c.deployment for c in self.calls)

    def clear(self) -> None:
        self.calls.clear()


def litellm_file_id(model: str, provider_file_id: str = ProviderTrap.FILE_ID) -> str:
    """A file id as LiteLLM returns it for an upload to ``model`` (the model is inside the id:
    ``file-`` + base64url of ``litellm:<provider id>;model,<model>``); /v1/batches and the file
    routes route by the model they decode from it."""
    raw = f"litellm:{provider_file_id};model,{model}".encode()
    return "file-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- the LiteLLM proxy --------------------------------------------------------------------------


def litellm_env(home: Path) -> dict[str, str]:
    """A clean environment for LiteLLM: none of ours (no provider keys, proxies, DATABASE_URL),
    and nothing that reaches the network. Without LITELLM_LOCAL_MODEL_COST_MAP LiteLLM fetches
    its model cost map from raw.githubusercontent.com at start (three tries, ~8 s offline).
    Usage telemetry is off unless LITELLM_TELEMETRY_DESTINATION is set; with no DATABASE_URL
    there is no database."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


LOG_FROM = pytest.StashKey[tuple["LiteLLMProxy", int]]()  # a test's proxy and its log offset


class LiteLLMProxy:
    """``litellm --config FILE --port P`` as a subprocess, its output in ``workdir/litellm.log``."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.log_path = workdir / "litellm.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None  # seconds from spawn to ready
        self._log: IO[bytes] | None = None
        self._spawned = 0.0

    def start(self) -> None:
        self.port = free_port()
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        cmd = [find_binary("litellm"), "--config", str(self.config)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        self._log = self.log_path.open("wb")
        self._spawned = time.monotonic()
        self.proc = subprocess.Popen(
            die_with_parent(cmd),
            cwd=home,
            env=litellm_env(home),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 240.0) -> None:
        """Until ``GET /health/readiness`` answers 200 (start-up takes ~10 s here)."""
        url = f"http://127.0.0.1:{self.port}/health/readiness"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"litellm exited with {code}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    self.started_in = time.monotonic() - self._spawned
                    return
            time.sleep(0.2)
        raise TimeoutError(f"litellm not ready after {timeout:g}s:\n{self.log_tail()}")

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_tail(self, lines: int = 60, since: int = 0) -> str:
        """The last ``lines`` lines written from byte ``since`` on."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def mark_log(self, item: pytest.Item) -> None:
        """Remember where the log stands as ``item`` starts (its report shows what follows)."""
        item.stash[LOG_FROM] = (self, self.log_size())

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


# -- the whole stack ----------------------------------------------------------------------------


@dataclass
class LiteLLMStack:
    """IdP + provider trap + LiteLLM + the sidecar (gRPC and HTTP-service checks), one policy."""

    loop: LoopThread
    workdir: Path
    key: rsa.RSAPrivateKey
    idp: Idp
    trap: ProviderTrap
    config: dict[str, Any]
    litellm: LiteLLMProxy
    sidecar: Sidecar | None = None
    authz_http: AuthzHttpServer | None = None

    def token(self, caller: Caller) -> str:
        return sign_token(self.key, dict(caller.claims))

    def authz_port(self, mode: str) -> int:
        """Where Envoy sends checks: the sidecar's gRPC port, or its HTTP-service port."""
        assert self.sidecar is not None and self.authz_http is not None
        port = self.sidecar.grpc_port if mode == "grpc" else self.authz_http.port
        assert port, f"no {mode} check port"
        return port

    def close(self) -> None:
        self.litellm.stop()
        if self.authz_http is not None:
            self.loop.run(self.authz_http.close(0.5))
        if self.sidecar is not None:
            self.loop.run(self.sidecar.stop(0.5))
        self.loop.run(self.trap.stop())
        self.loop.run(self.idp.stop())


def start_litellm_stack(loop: LoopThread, workdir: Path, key: rsa.RSAPrivateKey) -> LiteLLMStack:
    """Write the config, start LiteLLM first (the slow part) and the sidecar while it starts."""
    idp = Idp(key)
    loop.run(idp.start())
    trap = ProviderTrap()
    loop.run(trap.start())
    config = policy_config(trap.url, idp.discovery_url)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    stack = LiteLLMStack(loop, workdir, key, idp, trap, config, LiteLLMProxy(config_path, workdir))
    try:
        stack.litellm.start()
        stack.sidecar = loop.run(start_sidecar(config_path))
        stack.authz_http = loop.run(start_authz_http(stack.sidecar.authorizer, "127.0.0.1", 0))
        stack.litellm.wait_ready()
    except BaseException:
        stack.close()
        raise
    trap.clear()  # LiteLLM's start-up model discovery (GET /v1/models on each api_base's host)
    return stack


def render_front(mode: str, stack: LiteLLMStack) -> dict[str, Any]:
    """The shipped envoy.yaml (gRPC checks) or envoy-http.yaml (HTTP-service checks), with the
    upstream cluster at LiteLLM and LiteLLM's master key added on the route to it."""
    assert stack.sidecar is not None and stack.sidecar.http_port is not None
    shipped = ENVOY_YAML if mode == "grpc" else ENVOY_HTTP_YAML
    ports = EnvoyPorts(0, 0, stack.authz_port(mode), stack.sidecar.http_port, stack.litellm.port)
    config = render_envoy_config(load_config(shipped), ports)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    typed = hcm["typed_config"]
    if mode == "http":
        for f in typed["http_filters"]:
            if f["name"] == "envoy.filters.http.ext_authz":
                f["typed_config"]["http_service"]["server_uri"]["uri"] = (
                    f"http://127.0.0.1:{stack.authz_port(mode)}"
                )
    routes = [r for vh in typed["route_config"]["virtual_hosts"] for r in vh["routes"]]
    upstream = [r for r in routes if r.get("route", {}).get("cluster") == "upstream"]
    assert upstream, "no route to the upstream cluster"
    for r in upstream:
        r["request_headers_to_add"] = [
            {
                "header": {"key": "authorization", "value": f"Bearer {MASTER_KEY}"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
    return config


# -- requests and what they made LiteLLM run ----------------------------------------------------


class Body(NamedTuple):
    """A request body and its Content-Type; ``payload`` may be built on first use."""

    content_type: str | None
    payload: bytes | Callable[[], bytes]

    @property
    def data(self) -> bytes:
        return self.payload() if callable(self.payload) else self.payload


MARKER = re.compile(rb"MARKER:([A-Za-z0-9._-]+)")
SIDECAR_STATUSES = frozenset({400, 403, 413})


@dataclass(frozen=True)
class Outcome:
    """A reply through Envoy, and which models it shows LiteLLM ran."""

    reply: Reply
    answered: frozenset[str]  # models whose MARKER is in the reply
    called: frozenset[str]  # deployments whose provider LiteLLM called

    @property
    def from_litellm(self) -> bool:
        """Envoy's router stamps this on upstream replies only, never on ext_authz denials."""
        return "x-envoy-upstream-service-time" in self.reply.headers

    @property
    def refused(self) -> bool:
        """Denied by the sidecar: a 400/403/413 with its reason header, not from upstream."""
        return (
            self.reply.status in SIDECAR_STATUSES
            and self.reply.reason is not None
            and not self.from_litellm
        )

    @property
    def ran(self) -> frozenset[str]:
        return self.answered | self.called

    def forbidden_for(self, caller: Caller) -> frozenset[str]:
        return frozenset(m for m in self.ran if not caller.may_use(m))

    def __str__(self) -> str:
        r = self.reply
        if self.refused:
            return f"refused by the sidecar: HTTP {r.status} {r.reason}"
        source = "LiteLLM" if self.from_litellm else "Envoy (not LiteLLM, not a sidecar deny)"
        shown = ", ".join(f"MARKER:{m}" for m in sorted(self.answered)) or "no marker"
        text = f"HTTP {r.status} from {source}, {shown} in reply"
        if self.called:
            text += f", provider called for {', '.join(sorted(self.called))}"
        if not self.answered and r.status != 200:
            text += f" (body: {r.body[:160]!r})"
        return text


@dataclass
class Front:
    """One Envoy in front of the stack, in one check mode."""

    mode: str
    stack: LiteLLMStack
    envoy: EnvoyProcess

    def send(
        self,
        credential: str | None,
        path: str,
        body: Body | None,
        headers: Iterable[tuple[str, str]] = (),
        method: str = "POST",
    ) -> Outcome:
        pairs: list[tuple[str, str]] = []
        if credential is not None:
            pairs.append(("Authorization", f"Bearer {credential}"))
        if body is not None and body.content_type is not None:
            pairs.append(("Content-Type", body.content_type))
        pairs.extend(headers)
        trap = self.stack.trap
        trap.clear()
        reply = request(
            self.envoy.listener_port,
            method,
            path,
            pairs,
            body.data if body is not None else None,
            timeout=60,
        )
        answered = frozenset(m.decode() for m in MARKER.findall(reply.body))
        return Outcome(reply, answered, trap.called())


def start_front(mode: str, stack: LiteLLMStack, workdir: Path) -> Front:
    envoy = EnvoyProcess(render_front(mode, stack), workdir, name=f"envoy-{mode}")
    envoy.start()
    try:
        envoy.wait_ready()
    except BaseException:
        envoy.stop()
        raise
    return Front(mode, stack, envoy)

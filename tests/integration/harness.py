"""The parts of an integration stack: an IdP serving JWKS over HTTP, the sidecar, the demo
upstream and a real Envoy rendered from the shipped ``envoy.yaml``.

The IdP, the sidecar (in-process, ports 0) and the upstream share one asyncio loop running in a
background thread, so tests stay synchronous and talk to Envoy with plain ``http.client``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.config.loader import load_policy_file
from extauthz.dev import upstream
from extauthz.dev.envoyconf import EnvoyPorts, EnvoyProcess, load_config, render_envoy_config
from extauthz.devtokens import jwks_of, public_jwk, sign_token
from extauthz.grpcserver import GRPCIO
from extauthz.runtime import ServeOptions, Sidecar

REPO = Path(__file__).resolve().parents[2]
ENVOY_YAML = REPO / "envoy.yaml"
EXAMPLE_POLICY = REPO / "examples" / "policy.yaml"
IDENTITY_HEADERS = (
    "x-auth-user-id",
    "x-auth-team-id",
    "x-auth-org-id",
    "x-auth-end-user-id",
    "x-auth-user-role",
    "x-auth-user-email",
)

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_rest() -> None:  # e.g. a key refetch still retrying a dead IdP
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Idp:
    """A tiny identity provider: OpenID discovery and a JWKS the test can change or take down."""

    def __init__(self, *keys: rsa.RSAPrivateKey) -> None:
        self.jwks = jwks_of(*keys)
        self.fetches = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def discovery_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/openid-configuration"

    def publish(self, *keys: rsa.RSAPrivateKey) -> None:
        """Serve these keys from now on (a rotation)."""
        self.jwks = jwks_of(*keys)

    async def start(self) -> None:
        """Listen (again on the same port after ``stop``, so the sidecar's URL stays valid)."""

        async def discovery(_r: web.Request) -> web.Response:
            base = f"http://127.0.0.1:{self.port}"
            return web.json_response({"issuer": base, "jwks_uri": f"{base}/jwks.json"})

        async def jwks(_r: web.Request) -> web.Response:
            self.fetches += 1
            return web.json_response(self.jwks)

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks.json", jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = _bound_port(site)

    async def stop(self) -> None:
        """Take the IdP down (connections refused from now on)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _bound_port(site: web.TCPSite) -> int:
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1])


async def start_upstream() -> tuple[web.AppRunner, int]:
    """The demo echo upstream on a free port."""
    runner = web.AppRunner(upstream.build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, _bound_port(site)


async def start_sidecar(
    policy_path: Path, ready_within: float = 10.0, grpc_server: str = GRPCIO
) -> Sidecar:
    """``extauthz serve`` in-process on free ports; returns once ready (keys fetched)."""
    options = ServeOptions(
        config=str(policy_path),
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        grpc_server=grpc_server,
    )
    sidecar = Sidecar(options, load_policy_file(str(policy_path), os.environ))
    await sidecar.start()
    deadline = time.monotonic() + ready_within
    # Ready, and the gRPC readiness service says so (it follows within one 0.2 s poll).
    while not (sidecar.readiness()[0] and sidecar._ready):
        if time.monotonic() > deadline:
            await sidecar.stop(0)
            raise TimeoutError(f"sidecar not ready: {sidecar.readiness()[1]}")
        await asyncio.sleep(0.02)
    return sidecar


# -- policy files -------------------------------------------------------------------------------


def example_policy(public_key_url: str) -> dict[str, Any]:
    """examples/policy.yaml, with the signing keys at ``public_key_url``."""
    data = yaml.safe_load(EXAMPLE_POLICY.read_text())
    data.setdefault("extauthz", {})["public_key_url"] = public_key_url
    return dict(data)


def set_role_models(policy: Mapping[str, Any], role: str, models: list[str]) -> dict[str, Any]:
    """A copy of ``policy`` whose ``role_permissions`` entry for ``role`` allows ``models``."""
    out = json.loads(json.dumps(policy))
    for perm in out["general_settings"]["role_permissions"]:
        if perm["role"] == role:
            perm["models"] = models
    return dict(out)


class ConfigMapDir:
    """A policy file laid out like a mounted Kubernetes ConfigMap and updated the same way:

    ``policy.yaml -> ..data/policy.yaml``, ``..data -> ..<version>/``; an update writes a new
    version directory and swaps ``..data`` with one atomic rename.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = root / "policy.yaml"
        self._version = 0

    def write_text(self, text: str) -> None:
        self._version += 1
        version = self.root / f"..v{self._version}"
        version.mkdir()
        (version / "policy.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/policy.yaml")

    def write(self, policy: Mapping[str, Any]) -> None:
        self.write_text(yaml.safe_dump(dict(policy), sort_keys=False))


# -- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Reply:
    """An HTTP response: status, headers (lower-case names, repeats joined) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        """extauthz's deny reason header."""
        return self.headers.get("x-extauthz-reason")

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.headers} {self.body[:300]!r}"


def request(
    port: int,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    body: bytes | None = None,
    timeout: float = 15.0,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    """One HTTP/1.1 request; headers may repeat (a list of pairs).

    On a fresh connection, or on ``conn`` (kept open: the caller closes it) to reuse one.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in pairs:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        out: dict[str, str] = {}
        for name, value in resp.getheaders():
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return Reply(resp.status, out, resp.read())
    finally:
        if own:
            conn.close()


def chat_body(model: str, content: str = "hi") -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}]}).encode()


def wait_until(
    probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, every: float = 0.1
) -> tuple[T, float]:
    """Call ``probe`` until ``ok(result)``; returns the last result and the seconds it took."""
    start = time.monotonic()
    while True:
        result = probe()
        elapsed = time.monotonic() - start
        if ok(result) or elapsed > timeout:
            return result, elapsed
        time.sleep(every)


# -- the whole stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    """IdP + sidecar + upstream + Envoy, all on free loopback ports."""

    loop: LoopThread
    workdir: Path
    key: rsa.RSAPrivateKey
    idp: Idp
    policy: ConfigMapDir
    policy_data: dict[str, Any]
    sidecar: Sidecar
    upstream_runner: web.AppRunner
    upstream_port: int
    envoy: EnvoyProcess | None = None
    access_log: Path | None = None
    _closed: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.envoy is not None
        return self.envoy.listener_port

    @property
    def grpc_port(self) -> int:
        assert self.sidecar.grpc_port is not None
        return self.sidecar.grpc_port

    @property
    def http_port(self) -> int:
        assert self.sidecar.http_port is not None
        return self.sidecar.http_port

    def token(
        self, claims: Mapping[str, Any], key: rsa.RSAPrivateKey | None = None, **kw: Any
    ) -> str:
        return sign_token(key or self.key, dict(claims), **kw)

    def call(
        self,
        path: str = "/v1/chat/completions",
        *,
        token: str | None = None,
        model: str | None = None,
        method: str = "POST",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> Reply:
        """A request through Envoy."""
        pairs: list[tuple[str, str]] = []
        if token is not None:
            pairs.append(("Authorization", f"Bearer {token}"))
        if content_type is not None:
            pairs.append(("Content-Type", content_type))
        pairs.extend(headers)
        if body is None and model is not None:
            body = chat_body(model)
        return request(self.port, method, path, pairs, body)

    def readyz(self) -> Reply:
        return request(self.http_port, "GET", "/readyz")

    def stop_sidecar(self) -> None:
        if "sidecar" not in self._closed:
            self._closed.append("sidecar")
            self.loop.run(self.sidecar.stop(0.5))

    def close(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        self.stop_sidecar()
        self.loop.run(self.upstream_runner.cleanup())
        self.loop.run(self.idp.stop())


def start_stack(
    loop: LoopThread,
    workdir: Path,
    key: rsa.RSAPrivateKey,
    *,
    policy: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    envoy: bool = True,
    max_request_bytes: int | None = None,
    access_log: bool = False,
    grpc_server: str = GRPCIO,
) -> Stack:
    """Start an IdP publishing ``key``, the sidecar with examples/policy.yaml (changed by
    ``policy``), the upstream and, if ``envoy``, an Envoy rendered from the shipped envoy.yaml."""
    idp = Idp(key)
    loop.run(idp.start())
    data = example_policy(idp.discovery_url)
    if policy is not None:
        data = policy(data)
    cm = ConfigMapDir(workdir / "policy")
    cm.write(data)
    sidecar = loop.run(start_sidecar(cm.path, grpc_server=grpc_server))
    runner, upstream_port = loop.run(start_upstream())
    stack = Stack(loop, workdir, key, idp, cm, data, sidecar, runner, upstream_port)
    if not envoy:
        return stack
    try:
        ports = EnvoyPorts(0, 0, stack.grpc_port, stack.http_port, upstream_port)
        log_path = workdir / "access.jsonl" if access_log else None
        config = render_envoy_config(
            load_config(ENVOY_YAML),
            ports,
            max_request_bytes=max_request_bytes,
            access_log_path=str(log_path) if log_path else None,
        )
        stack.access_log = log_path
        stack.envoy = EnvoyProcess(config, workdir, extra_args=["--file-flush-interval-msec", "50"])
        stack.envoy.start()
        stack.envoy.wait_ready()
    except BaseException:
        stack.close()
        raise
    return stack


def kid_of(key: rsa.RSAPrivateKey) -> str:
    return public_jwk(key)["kid"]

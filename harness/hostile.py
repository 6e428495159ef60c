"""`python -m bench.hostile`: hostile input through a real Envoy to a real `extauthz serve`.

Generated requests (mutated and forged tokens, spoofed and odd headers, hostile paths, methods,
bodies and encodings; some malformed on purpose) are sent over raw sockets to an Envoy rendered
from the shipped envoy.yaml, which asks the sidecar running as a subprocess (so a crash shows as
a dead process). Envoy may answer some requests itself (400, 413, 431, ...): that is fine.

Checks (one PASS/FAIL line each, exit code 0 when all pass):
  alive        the sidecar process is still running after the run
  no-5xx       no 5xx from the sidecar, and no 5xx from Envoy while the sidecar is alive
  statuses     every sidecar answer is 200 (allowed), 400, 401, 403 or 413
  fail-closed  no request without a valid credential was allowed
  no-spoof     no client-sent x-auth-* identity value reached the upstream
  no-cred-up   no token or key that was sent reached the demo upstream (it echoes headers)
  rss          sidecar RSS after the run is within +20 % of RSS after a warm-up
  no-secrets   no token or key that was sent appears in the sidecar's log
  no-traceback the sidecar's log has no Python traceback

This module also holds the rig (IdP, subprocess sidecar, upstream, Envoy) that bench.faults and
bench.soak reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gzip
import hashlib
import hmac
import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from extauthz.dev.envoyconf import (
    EnvoyPorts,
    EnvoyProcess,
    die_with_parent,
    load_config,
    render_envoy_config,
    stop_process,
)
from extauthz.devtokens import new_private_key, public_jwk, sign_token
from harness.procs import free_port, rss_mb
from tests.integration.harness import (
    ENVOY_YAML,
    ConfigMapDir,
    Idp,
    LoopThread,
    example_policy,
    start_upstream,
)

BIN = Path(sys.executable).parent
SIDECAR_STATUSES = frozenset({200, 400, 401, 403, 413})
MASTER_KEY = "sk-dev-master-key-change-me"  # examples/policy.yaml's
ALICE = {"sub": "alice", "email": "alice@example.com", "roles": ["basic_user"]}
TEAM = {"sub": "svc", "client_id": "team-a"}
ADMIN = {"sub": "root", "scope": "litellm_proxy_admin"}
IDENTITY = ("user-id", "team-id", "org-id", "end-user-id", "user-role", "user-email")


# -- the rig ------------------------------------------------------------------------------------


class SlowIdp(Idp):
    """harness.Idp, plus a delay before every answer (a slow IdP)."""

    delay = 0.0

    async def start(self) -> None:
        """harness.Idp.start, with ``delay`` seconds before each answer."""

        async def discovery(_r: web.Request) -> web.Response:
            await asyncio.sleep(self.delay)
            base = f"http://127.0.0.1:{self.port}"
            return web.json_response({"issuer": base, "jwks_uri": f"{base}/jwks.json"})

        async def jwks(_r: web.Request) -> web.Response:
            await asyncio.sleep(self.delay)
            self.fetches += 1
            return web.json_response(self.jwks)

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks.json", jwks)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        sockets = getattr(getattr(site, "_server", None), "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])


@dataclass
class Rig:
    """IdP (in a loop thread) + `extauthz serve` subprocess + demo upstream + real Envoy."""

    workdir: Path
    loop: LoopThread
    key: rsa.RSAPrivateKey
    idp: SlowIdp
    policy: ConfigMapDir
    policy_data: dict[str, Any]
    grpc_port: int
    http_port: int
    upstream_runner: web.AppRunner
    envoy: EnvoyProcess
    log_path: Path
    sidecar: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return self.envoy.listener_port

    def token(self, claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None, **kw: Any) -> str:
        return sign_token(key or self.key, dict(claims), **kw)

    def start_sidecar(self, wait: float = 20.0) -> None:
        if self._log is None:
            self._log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "EXTAUTHZ_"))}
        self.sidecar = subprocess.Popen(
            die_with_parent([
                str(BIN / "extauthz"),
                "serve",
                "--config",
                str(self.policy.path),
                "--grpc-address",
                f"127.0.0.1:{self.grpc_port}",
                "--http-address",
                f"127.0.0.1:{self.http_port}",
                "--state",
                "memory://",
                "--log-level",
                "info",
            ]),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        self.wait_ready(wait)

    def wait_ready(self, wait: float = 20.0) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"sidecar exited:\n{self.log_tail()}")
            status, _ = http_get(self.http_port, "/readyz")
            if status == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"sidecar not ready after {wait}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.sidecar is not None and self.sidecar.poll() is None

    def kill_sidecar(self) -> None:
        if self.sidecar is not None and self.sidecar.poll() is None:
            self.sidecar.kill()
            self.sidecar.wait(10)

    def stop_sidecar(self) -> None:
        if self.sidecar is not None:
            stop_process(self.sidecar)

    def rss_mb(self) -> float:
        assert self.sidecar is not None
        return rss_mb(self.sidecar.pid)

    def log_text(self) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = http_get(self.http_port, "/readyz")
        try:
            return status, dict(json.loads(body))
        except ValueError:
            return status, {}

    def metric(self, name: str) -> float | None:
        _, body = http_get(self.http_port, "/metrics")
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def close(self) -> None:
        self.envoy.stop()
        self.stop_sidecar()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.loop.run(self.upstream_runner.cleanup())
        self.loop.run(self.idp.stop())


@contextlib.contextmanager
def rig(
    workdir: Path | None = None,
    *,
    max_request_bytes: int | None = None,
    policy: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> Iterator[Rig]:
    """Start everything on free loopback ports; stop it all on exit."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="robust-")))
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the upstream's 400s
        loop = LoopThread()
        stack.callback(loop.close)
        key = key or new_private_key()
        idp = SlowIdp(key)
        loop.run(idp.start())
        data = example_policy(idp.discovery_url)
        data["extauthz"]["jwks_refetch_interval_seconds"] = 0.5
        if policy is not None:
            data = policy(data)
        cm = ConfigMapDir(workdir / "policy")
        cm.write(data)
        runner, upstream_port = loop.run(start_upstream())
        grpc_port, http_port = free_port(), free_port()
        config = render_envoy_config(
            load_config(ENVOY_YAML),
            EnvoyPorts(0, 0, grpc_port, http_port, upstream_port),
            max_request_bytes=max_request_bytes,
        )
        envoy = EnvoyProcess(config, workdir, die_with_parent=True)
        r = Rig(
            workdir, loop, key, idp, cm, data, grpc_port, http_port, runner, envoy,
            workdir / "sidecar.log",
        )  # fmt: skip
        stack.callback(r.close)
        r.start_sidecar()
        envoy.start()
        envoy.wait_ready()
        yield r


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET on loopback; (0, b'') when nothing answers."""
    raw = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    resp = send_raw(port, raw, timeout)
    return (resp.status, resp.body) if resp is not None else (0, b"")


# -- raw HTTP -----------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def reason(self) -> str | None:
        return self.headers.get("x-extauthz-reason")

    @property
    def routed(self) -> bool:
        """Envoy forwarded the request (the sidecar allowed it)."""
        return "x-envoy-upstream-service-time" in self.headers


def send_raw(port: int, raw: bytes, timeout: float = 5.0) -> Response | None:
    """Send bytes, read until the server closes; None when no HTTP answer came."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            with contextlib.suppress(OSError):  # Envoy may answer and close before all is sent
                s.sendall(raw)
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
                if _complete(data):
                    break
    except OSError:
        return None
    return parse_response(data)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    if m:
        return len(body) >= int(m.group(1))
    if re.search(rb"\r\ntransfer-encoding:\s*chunked", head, re.IGNORECASE):
        return body.endswith(b"0\r\n\r\n")
    return head.startswith(b"HTTP/1.1 1") is False and b" 304 " in head[:16]


def parse_response(data: bytes) -> Response | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Response(status, headers, body)


# -- hostile cases ------------------------------------------------------------------------------


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


B64CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass
class Case:
    kind: str
    raw: bytes
    must_deny: bool  # no valid credential in it: an allow would be a hole
    secrets: list[str] = field(default_factory=list)


class Tokens:
    """Valid tokens for the rig's key, and the ingredients of forged ones."""

    def __init__(self, r: Rig, per_role: int = 30) -> None:
        self.valid: list[str] = []
        for i in range(per_role):
            for claims in (ALICE, TEAM, ADMIN):
                self.valid.append(r.token({**claims, "jti": f"h{i}"}))
        self.expired = r.token({**ALICE, "jti": "old"}, ttl=-600)
        self.rogue_key = new_private_key()
        self.rogue = r.token(ALICE, key=self.rogue_key)
        self.rogue_same_kid = r.token(ALICE, key=self.rogue_key, kid=public_jwk(r.key)["kid"])
        self.key = r.key
        self.kid = public_jwk(r.key)["kid"]
        self.pub_pem = r.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def forged(self, rng: random.Random) -> tuple[str, str, bool]:
        """(kind, token, must_deny)."""
        now = int(time.time())
        claims = b64(json.dumps({**ALICE, "iat": now, "exp": now + 3600}).encode())
        choice = rng.randrange(10)
        if choice == 0:
            header = {"alg": rng.choice(["none", "None", "NONE", "nOnE"]), "typ": "JWT"}
            sig = rng.choice(["", "AAAA", b64(rng.randbytes(256))])
            return "alg-none", f"{b64(json.dumps(header).encode())}.{claims}.{sig}", True
        if choice == 1:  # HS256 keyed with the public key (algorithm confusion)
            h = b64(json.dumps({"alg": "HS256", "kid": self.kid}).encode())
            mac = hmac.new(self.pub_pem, f"{h}.{claims}".encode(), hashlib.sha256).digest()
            return "alg-hs256-confusion", f"{h}.{claims}.{b64(mac)}", True
        if choice == 2:  # a real RS256 signature under a header claiming another algorithm
            alg = rng.choice(["ES256", "PS256", "RS384", "EdDSA", "", "rs256", "RS256 "])
            h = b64(json.dumps({"alg": alg, "kid": self.kid}).encode())
            return "alg-mismatch", self._rs(h, claims), True
        if choice == 3:  # no kid / kid pointing elsewhere
            kid = rng.choice([None, "", "../../etc/passwd", "x" * 2000, 12, ["a"], {"a": 1}])
            hdr: dict[str, Any] = {"alg": "RS256"}
            if kid is not None:
                hdr["kid"] = kid
            h = b64(json.dumps(hdr).encode())
            return "kid-odd", self._rs(h, claims, self.rogue_key), True
        if choice == 4:  # embedded key / key URL headers, signed by the rogue key
            rogue = public_jwk(self.rogue_key)
            url = "http://127.0.0.1:1/jwks.json"
            hdr = {"alg": "RS256", "kid": rogue["kid"], "jwk": rogue, "jku": url, "x5u": url}
            h = b64(json.dumps(hdr).encode())
            return "embedded-jwk", self._rs(h, claims, self.rogue_key), True
        if choice == 5:  # the header or claims are not JSON objects
            junk = rng.choice([b"[]", b"null", b'"x"', b"{", rng.randbytes(40), b"{}" * 3])
            parts = [b64(junk), claims] if rng.random() < 0.5 else [self._hdr(), b64(junk)]
            return "bad-json-segment", ".".join([*parts, b64(rng.randbytes(256))]), True
        if choice == 6:  # claims with hostile types, validly signed by the IdP's key
            odd = rng.choice([
                {"sub": "x", "exp": "tomorrow"}, {"sub": "x", "exp": 1e400},
                {"sub": ["a"], "roles": "basic_user", "exp": now + 60},
                {"sub": "x", "roles": [None, 1, {"a": 1}], "exp": now + 60},
                {"sub": "x" * 5000, "roles": ["basic_user"], "exp": now + 60},
                {"sub": "x", "roles": ["basic_user"], "exp": now + 60, "nbf": now + 3600},
                {"sub": "x", "email": "a@b@c", "client_id": {"id": 1}, "exp": now + 60},
                {"sub": "x", "scope": ["litellm_proxy_admin"], "exp": 2**70},
            ])  # fmt: skip
            body = b64(json.dumps(odd).encode())
            return "odd-claims", self._rs(self._hdr(), body), False
        if choice == 7:
            return "expired", self.expired, True
        if choice == 8:
            return "rogue-key", rng.choice([self.rogue, self.rogue_same_kid]), True
        # RS512 with the IdP's key: may be accepted (validly signed), must never crash
        h512 = b64(json.dumps({"alg": "RS512", "kid": self.kid}).encode())
        sig512 = self.key.sign(f"{h512}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA512())
        return "alg-rs512", f"{h512}.{claims}.{b64(sig512)}", False

    def _hdr(self) -> str:
        return b64(json.dumps({"alg": "RS256", "kid": self.kid}).encode())

    def _rs(self, h: str, c: str, key: rsa.RSAPrivateKey | None = None) -> str:
        sig = (key or self.key).sign(f"{h}.{c}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{h}.{c}.{b64(sig)}"


def mutate(rng: random.Random, token: str) -> tuple[str, str, bool]:
    """A valid token, damaged. (kind, token, must_deny)."""
    choice = rng.randrange(7)
    if choice == 0:  # flip one character, never a segment's last (its spare bits may not count)
        positions = [i for i in range(len(token) - 1) if "." not in token[i : i + 2]]
        i = rng.choice(positions)
        c = rng.choice([ch for ch in B64CHARS if ch != token[i]])
        return "flip-char", token[:i] + c + token[i + 1 :], True
    if choice == 1:  # a non-base64 byte in the middle
        i = rng.randrange(len(token))
        c = rng.choice(["+", "/", "=", "%", " ", "\t", "é", "\u202e", "\x00", "\x7f", '"'])
        return "flip-odd-char", token[:i] + c + token[i + 1 :], True
    if choice == 2:
        return "truncated", token[: rng.randrange(len(token) - 1)], True
    if choice == 3:
        return "huge", token + rng.choice(["", "."]) + "A" * rng.choice([9000, 70000]), True
    if choice == 4:
        parts = token.split(".")
        parts.insert(rng.randrange(4), rng.choice(["", "e30", parts[0]]))
        return "extra-segment", ".".join(parts), True
    if choice == 5:
        h, c, s = token.split(".")
        return "padded", f"{h}==.{c}.{s}=", False  # padding may be tolerated; no crash
    h, c, s = token.split(".")
    return "sig-swapped", f"{h}.{c}.{b64(rng.randbytes(256))}", True


def garbage_token(rng: random.Random) -> str:
    n = rng.choice([1, 3, 5])
    return ".".join(b64(rng.randbytes(rng.randrange(0, 400))) for _ in range(n))


MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet", "", "*", "../gpt-4o", "gpt-4o-mini\x00"]
PATHS = [
    "/v1/chat/completions", "/chat/completions", "/v1/completions", "/v1/embeddings",
    "/v1/models", "/models", "/v1/responses", "/openai/deployments/gpt-4o/chat/completions",
    "/v1/messages", "/v1beta/models/gpt-4o:generateContent", "/team/block", "/team/list",
    "/user/info", "/customer/block", "/health", "/", "/key/generate", "/v1/audio/transcriptions",
    "/v1/images/generations", "/mcp/tools/list", "/spend/logs",
]  # fmt: skip


def hostile_path(rng: random.Random) -> str:
    base = rng.choice(PATHS)
    choice = rng.randrange(13)
    if choice < 3:
        return base
    if choice == 3:
        seg = rng.choice(["/..", "/.", "/%2e%2e", "/%2E", "/.%2e", "/..;", "/..%00"])
        i = rng.randrange(1, max(2, base.count("/") + 1))
        parts = base.split("/")
        return "/".join(parts[:i]) + seg + "/" + "/".join(parts[i:])
    if choice == 4:
        return base.replace("/", rng.choice(["%2F", "%2f", "%5C", "\\", "//", "/./"]), 2)
    if choice == 5:
        return "/" + base
    if choice == 6:
        return base + "/" + "a" * rng.choice([1000, 8000, 70000])
    if choice == 7:
        return base + "/" + "".join(f"%{b:02X}" for b in rng.randbytes(rng.randrange(1, 200)))
    if choice == 8:
        q = rng.choice([
            "model=gpt-4o", "model=gpt-4o&model=gpt-4o-mini", "model=%00", "a=" + "b" * 5000,
            "model[]=x", "&&&==", "model=" + "".join(f"%{b:02X}" for b in rng.randbytes(30)),
        ])  # fmt: skip
        return f"{base}?{q}"
    if choice == 9:
        return base + "#frag" + rng.choice(["", "/../team/block"])
    if choice == 10:
        return rng.choice(["*", "http://127.0.0.1/v1/chat/completions", "v1/chat", "", "?"])
    if choice == 11:  # a letter percent-escaped: the same route to the policy, not to Envoy
        letters = [i for i, c in enumerate(base) if c.isalpha()]
        if letters:
            i = rng.choice(letters)
            return f"{base[:i]}%{ord(base[i]):02X}{base[i + 1 :]}"
    return base.upper() if rng.random() < 0.5 else base + rng.choice([";x=1", "%20", "~", "/"])


def hostile_body(rng: random.Random, big_ok: bool, max_request_bytes: int) -> tuple[bytes, str]:
    """(body, content-type)."""
    choice = rng.randrange(14)
    model = rng.choice(MODELS)
    if choice < 3:
        msg = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        return json.dumps(msg).encode(), "application/json"
    if choice == 3:
        return rng.randbytes(rng.randrange(0, 5000)), rng.choice(
            ["application/json", "application/octet-stream", "text/plain", ""]
        )
    if choice == 4:
        depth = rng.choice([100, 1000, 10000, 100000])
        inner = "[" * depth + "]" * depth
        return f'{{"model": "gpt-4o-mini", "x": {inner}}}'.encode(), "application/json"
    if choice == 5:
        num = "9" * rng.choice([400, 5000, 100000])
        body = rng.choice([f'{{"model": {num}}}', f'{{"model": "gpt-4o-mini", "n": {num}}}',
                           f'{{"model": "gpt-4o-mini", "t": 1e{num[:6]}}}'])  # fmt: skip
        return body.encode(), "application/json"
    if choice == 6:
        a, b = rng.sample(MODELS[:3], 2)
        return f'{{"model": "{a}", "messages": [], "model": "{b}"}}'.encode(), "application/json"
    if choice == 7:
        msg = {"model": model, "messages": []}
        return json.dumps(msg).encode(), rng.choice([
            "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
            "application/json; charset=utf-16", "application/json\x00", "image/png",
            "application/json, text/plain", "application/ld+json", "APPLICATION/JSON",
        ])  # fmt: skip
    if choice == 8:
        boundary = rng.choice(["b", "", "a" * 300, "--", '"quoted"', "x y", "é", "\\"])
        parts = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode() + rng.randbytes(rng.randrange(0, 2000))
        if rng.random() < 0.7:
            parts += f"\r\n--{boundary}--\r\n".encode()
        return parts, f'multipart/form-data; boundary="{boundary}"'
    if choice == 9:
        form = rng.choice([f"model={model}", f"model={model}&model=gpt-4o", "model=", "=&=&",
                           "model=%FF%FE", "prompt=x&model=claude-sonnet"])  # fmt: skip
        return form.encode(), "application/x-www-form-urlencoded"
    if choice == 10:
        return b"", rng.choice(["application/json", ""])
    if choice == 11:
        raw = json.dumps({"model": model, "messages": []}).encode()
        return raw.decode().encode(rng.choice(["utf-16", "utf-32", "utf-8-sig"])), (
            "application/json"
        )
    if choice == 12 and big_ok:
        size = rng.choice([max_request_bytes - 10, max_request_bytes + 1, max_request_bytes + 4096])
        head = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        return head + b"x" * max(0, size - len(head) - 4) + b'"}]}', "application/json"
    pad = "x" * rng.randrange(0, 60000)
    return json.dumps({"messages": [{"content": pad}], "model": model}).encode(), "application/json"


def make_case(rng: random.Random, tokens: Tokens, max_request_bytes: int, big_ok: bool) -> Case:
    """One generated request (raw bytes) and what it may and may not get."""
    headers: list[tuple[str, str]] = []
    secrets: list[str] = []
    kinds: list[str] = []
    must_deny = True
    # credentials
    cred = rng.randrange(10)
    valid = rng.choice(tokens.valid)
    if cred <= 2:
        kinds.append("valid")
        headers.append(("Authorization", f"Bearer {valid}"))
        secrets.append(valid)
        must_deny = False
    elif cred == 3:
        kind, tok, deny = mutate(rng, valid)
        kinds.append(kind)
        headers.append(("Authorization", f"Bearer {tok}"))
        secrets.append(tok)
        must_deny = deny
    elif cred == 4:
        kind, tok, deny = tokens.forged(rng)
        kinds.append(kind)
        headers.append(("Authorization", f"Bearer {tok}"))
        secrets.append(tok)
        must_deny = deny
    elif cred == 5:
        kinds.append("garbage-b64")
        tok = garbage_token(rng)
        headers.append(("Authorization", rng.choice(["Bearer ", "bearer ", "BEARER  ", ""]) + tok))
        secrets.append(tok)
    elif cred == 6:  # several credential headers
        kinds.append("several-creds")
        names = ["Authorization", "x-litellm-api-key", "api-key", "x-api-key", "x-goog-api-key",
                 "ocp-apim-subscription-key"]  # fmt: skip
        junk = "sk-" + b64(rng.randbytes(24))
        secrets.append(junk)
        for _ in range(rng.randrange(2, 5)):
            name = rng.choice(names)
            value = rng.choice([valid, junk, garbage_token(rng)])
            if value == valid:
                must_deny = False
                secrets.append(valid)
            headers.append((name, f"Bearer {value}" if name == "Authorization" else value))
    elif cred == 7:
        kinds.append("api-key")
        key = rng.choice([MASTER_KEY, "sk-" + b64(rng.randbytes(24)), MASTER_KEY + "x"])
        must_deny = key != MASTER_KEY
        secrets.append(key)
        name = rng.choice(["Authorization", "x-litellm-api-key", "api-key"])
        headers.append((name, f"Bearer {key}" if name == "Authorization" else key))
    elif cred == 8:
        kinds.append("odd-scheme")
        headers.append(("Authorization", rng.choice([
            "Basic " + b64(b"alice:pw"), "Bearer", "Bearer\t" + valid[:20], "Token x",
            "Bearer " + valid + " " + valid, "Bearer " + valid + "," + "Bearer x",
            "Negotiate " + b64(rng.randbytes(64)),
        ])))  # fmt: skip
        secrets.append(valid)
    else:
        kinds.append("no-cred")
    # The odd schemes above that carry the whole valid token may be read leniently.
    if cred == 8 and any(valid in v for _, v in headers):
        must_deny = False
    # headers
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        h = rng.randrange(7)
        if h == 0:
            kinds.append("spoof")
            name = (
                "X-Auth-" + rng.choice(IDENTITY).title()
                if rng.random() < 0.5
                else ("x-auth-" + rng.choice(IDENTITY))
            )
            headers.append((name, "SPOOF-" + rng.choice(["admin", "team-x", "proxy_admin"])))
        elif h == 1:
            headers.append(("x_auth_team_id", "SPOOF-underscore"))
        elif h == 2:
            headers.append(("X-Long", "v" * rng.choice([1000, 20000, 70000])))
        elif h == 3:
            headers.append(("X-Odd", rng.choice(["é", "\u2603", "\x01\x02", "a\tb", "\x80\xff"])))
        elif h == 4:
            for i in range(rng.choice([50, 50, 50, 120])):
                headers.append((f"x-many-{i}", "1"))
        elif h == 5:
            headers.append(("x-envoy-auth-partial-body", rng.choice(["true", "false"])))
        else:
            headers.append(("x-request-id", rng.choice(["", "a" * 500, "../x", "é"])))
    method = rng.choice(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD",
                                         "post", "FOO", "TRACE", "PROPFIND"])  # fmt: skip
    path = hostile_path(rng)
    body, ctype = hostile_body(rng, big_ok, max_request_bytes)
    if ctype:
        headers.append(("Content-Type", ctype))
    if rng.random() < 0.05:
        headers.append(("Content-Type", rng.choice(["text/plain", "application/json"])))
    # encodings
    enc = rng.randrange(12)
    if enc == 0 and body:
        kinds.append("chunked")
        pieces, i = [], 0
        while i < len(body):
            n = rng.randrange(1, 5000)
            pieces.append(f"{n if i + n <= len(body) else len(body) - i:x}\r\n".encode()
                          + body[i : i + n] + b"\r\n")  # fmt: skip
            i += n
        wire = b"".join(pieces) + b"0\r\n\r\n"
        headers.append(("Transfer-Encoding", "chunked"))
        if rng.random() < 0.2:
            headers.append(("Content-Length", str(len(body))))  # CL + TE: Envoy refuses
    elif enc == 1:
        kinds.append("gzip")
        wire = gzip.compress(body) if rng.random() < 0.7 else rng.randbytes(100)
        headers.append(("Content-Encoding", rng.choice(["gzip", "br", "deflate, gzip", "x"])))
        headers.append(("Content-Length", str(len(wire))))
    else:
        wire = body
        if body or method in ("POST", "PUT", "PATCH") or rng.random() < 0.5:
            headers.append(("Content-Length", str(len(body))))
    host = rng.choice(["127.0.0.1"] * 17 + ["x", "é", ""])
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{n}: {v}" for n, v in headers]
    lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return Case("+".join(kinds) or "plain", head + wire, must_deny, secrets)


# -- run and judge ------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    response: Response | None
    source: str  # "sidecar", "upstream", "envoy", "none"


def classify(case: Case, resp: Response | None) -> Outcome:
    if resp is None:
        return Outcome(case, None, "none")
    if resp.routed:
        return Outcome(case, resp, "upstream")
    if resp.reason is not None:
        return Outcome(case, resp, "sidecar")
    return Outcome(case, resp, "envoy")


ADMIN_PREFIXES = (b"/team/", b"/user/", b"/customer/")  # routed to the sidecar's HTTP side


def demo_upstream(o: Outcome) -> bool:
    """An answer of the demo echo upstream (not of the sidecar's admin API)."""
    path = o.case.raw.split(b" ", 2)[1] if o.case.raw.count(b" ") >= 2 else b""
    return o.source == "upstream" and not path.startswith(ADMIN_PREFIXES)


@dataclass
class Report:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    @property
    def failures(self) -> list[str]:
        return [f"{n}: {d}" for n, ok, d in self.checks if not ok]

    def print(self) -> None:
        for line in self.summary:
            print(line)
        for name, ok, detail in self.checks:
            print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))
        print("PASS hostile: all checks" if self.ok else "FAIL hostile: see FAIL lines above")


def run_batch(
    r: Rig,
    tokens: Tokens,
    seed: int,
    count: int,
    workers: int,
    max_request_bytes: int,
    deadline: float,
    big_every: int,
) -> list[Outcome]:
    def one(i: int) -> Outcome | None:
        if time.monotonic() > deadline:
            return None
        rng = random.Random(seed * 1_000_003 + i)
        case = make_case(rng, tokens, max_request_bytes, big_ok=i % big_every == 0)
        return classify(case, send_raw(r.port, case.raw))

    with ThreadPoolExecutor(workers) as pool:
        return [o for o in pool.map(one, range(count)) if o is not None]


def secret_fragments(secrets: set[str]) -> set[str]:
    """16-character pieces that would show a credential in a log: the start of each run of
    base64url characters in a signature segment (or in the whole value if it is not a JWT)."""
    out: set[str] = set()
    for s in secrets:
        parts = s.split(".")
        target = parts[2] if len(parts) >= 3 else s
        m = re.search(r"[A-Za-z0-9_\-]{16,}", target)
        if m:
            out.add(m.group(0)[:16])
    return out


def leaked(log: str, fragments: set[str]) -> list[str]:
    found = []
    for word in set(re.findall(r"[A-Za-z0-9_\-]{16,}", log)):
        for i in range(len(word) - 15):
            if word[i : i + 16] in fragments:
                found.append(word[i : i + 16])
                break
    return found


def run_hostile(
    count: int = 20_000,
    seed: int = 6,
    workers: int = 8,
    warmup: int = 1000,
    max_seconds: float = 900.0,
    max_request_bytes: int | None = None,
    big_every: int = 500,
    workdir: Path | None = None,
) -> Report:
    report = Report()
    limit = max_request_bytes or 8 * 1024 * 1024
    with rig(workdir, max_request_bytes=max_request_bytes) as r:
        tokens = Tokens(r)
        deadline = time.monotonic() + max_seconds
        warm = run_batch(r, tokens, seed + 7919, warmup, workers, limit, deadline, big_every)
        time.sleep(0.5)
        rss_before = r.rss_mb()
        start = time.monotonic()
        outcomes = run_batch(r, tokens, seed, count, workers, limit, deadline, big_every)
        elapsed = time.monotonic() - start
        time.sleep(0.5)
        alive = r.alive()
        rss_after = r.rss_mb() if alive else float("nan")
        log = r.log_text()
    every = warm + outcomes
    per_status = Counter(f"{o.source}:{o.response.status if o.response else '-'}" for o in outcomes)
    per_reason = Counter(o.response.reason for o in outcomes if o.response and o.response.reason)
    report.summary += [
        f"hostile: {len(outcomes)} requests (+{len(warm)} warm-up) in {elapsed:.1f} s "
        f"= {len(outcomes) / max(elapsed, 1e-9):.0f} rps, seed {seed}, {workers} workers, "
        f"{os.cpu_count()} cores",
        "by source:status: " + ", ".join(f"{k}={v}" for k, v in sorted(per_status.items())),
        "sidecar reasons: " + ", ".join(f"{k}={v}" for k, v in per_reason.most_common()),
        f"sidecar RSS: {rss_before:.1f} MB after warm-up, {rss_after:.1f} MB after the run",
    ]
    if len(outcomes) < count:
        report.summary.append(f"note: stopped at the {max_seconds:.0f} s bound")

    def examples(bad: list[Outcome]) -> str:
        return "; ".join(
            f"{o.case.kind} -> {o.response.status if o.response else None} "
            f"{o.response.reason if o.response else ''} {o.case.raw[:120]!r}"
            for o in bad[:3]
        )

    report.check("alive: sidecar process still running", alive, "" if alive else log[-2000:])
    five = [o for o in every if o.response and o.response.status >= 500 and not demo_upstream(o)]
    demo5 = sum(1 for o in every if o.response and o.response.status >= 500 and demo_upstream(o))
    if demo5:
        report.summary.append(f"note: {demo5} 5xx from the demo echo upstream (not checked)")
    report.check("no-5xx: none from the sidecar, none from Envoy", not five,
                 f"{len(five)}: {examples(five)}" if five else "")  # fmt: skip
    odd = [o for o in every if o.source == "sidecar" and o.response
           and o.response.status not in SIDECAR_STATUSES]  # fmt: skip
    report.check("statuses: sidecar answers are 200/400/401/403/413", not odd,
                 f"{len(odd)}: {examples(odd)}" if odd else "")  # fmt: skip
    holes = [o for o in every if o.source == "upstream" and o.case.must_deny]
    report.check("fail-closed: nothing without a valid credential allowed", not holes,
                 f"{len(holes)}: {examples(holes)}" if holes else "")  # fmt: skip
    spoofed = [o for o in every if o.source == "upstream" and o.response
               and b"SPOOF" in o.response.body]  # fmt: skip
    report.check("no-spoof: no client x-auth-* value reached the upstream", not spoofed,
                 f"{len(spoofed)}: {examples(spoofed)}" if spoofed else "")  # fmt: skip
    carried = [
        o for o in every if demo_upstream(o) and o.response
        and leaked(o.response.body.decode(errors="replace"), secret_fragments(set(o.case.secrets)))
    ]  # fmt: skip
    report.check("no-cred-up: no sent token or key reached the demo upstream", not carried,
                 f"{len(carried)}: {examples(carried)}" if carried else "")  # fmt: skip
    growth = (rss_after - rss_before) / rss_before
    report.check("rss: within +20 % of the post-warm-up value", growth <= 0.20,
                 f"{rss_before:.1f} -> {rss_after:.1f} MB, {growth:+.1%}")  # fmt: skip
    frags = secret_fragments({s for o in every for s in o.case.secrets})
    leaks = leaked(log, frags)
    report.check("no-secrets: no sent token or key in the sidecar log", not leaks,
                 f"{len(frags)} credentials checked, {len(log)} log bytes"
                 + (f"; leaked e.g. {leaks[:3]}" if leaks else ""))  # fmt: skip
    tb = log.count("Traceback (most recent call last)")
    report.check("no-traceback: none in the sidecar log", tb == 0,
                 f"{tb} tracebacks" if tb else "")  # fmt: skip
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--keep", type=Path, help="keep logs in this directory")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    report = run_hostile(
        args.count, args.seed, args.workers, args.warmup, args.max_seconds, workdir=args.keep
    )
    report.print()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

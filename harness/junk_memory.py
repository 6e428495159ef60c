"""`python -m bench.junk_memory`: does junk from callers without a valid credential cost memory?

`extauthz serve` runs as a subprocess (examples/policy.yaml, signing keys from a file:// JWKS,
state in memory) and is sent gRPC `Authorization/Check` requests directly, no Envoy: each has a
path no earlier request had (58 KB, refused as too long; 8,000 and 2,000 characters, accepted
by the path check; or a short path with a long query string) and either no credential, a random
API key, or a JWT-shaped forgery (the IdP's kid with a garbage signature, or an unknown kid).
Every answer must be a 400 or 401 deny. The sidecar's resident memory (VmRSS) is read after a
warm-up (the same shapes on a few repeated paths) and after the run, and its peak (VmHWM).

Checks (one PASS/FAIL line each, exit code 0 when all pass):
  alive    the sidecar process is still running after the run
  denied   every answer was a 400 or 401 deny (no allow, no 5xx, no RPC error)
  rss      peak RSS during the run is less than --max-growth-mb (20 MB) above the RSS after
           the warm-up
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from envoy.service.auth.v3 import external_auth_pb2 as ext_authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_authz_grpc

from extauthz.dev.envoyconf import die_with_parent, stop_process
from extauthz.devtokens import jwks_of, new_private_key, public_jwk
from harness.hostile import b64, http_get
from harness.procs import free_port, rss_mb
from tests.integration.harness import example_policy
from tests.state.helpers import check_request

BIN = Path(sys.executable).parent
LONG = 58 * 1024  # the reported request: longer than any path the sidecar accepts
PATH_LENGTHS = (LONG, 8000, 2000)
DENY_STATUSES = frozenset({400, 401})


@dataclass
class Sidecar:
    """`extauthz serve` as a subprocess, on free loopback ports."""

    workdir: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    kid: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 20.0) -> None:
        key = new_private_key()
        self.kid = public_jwk(key)["kid"]
        jwks = self.workdir / "jwks.json"
        jwks.write_text(json.dumps(jwks_of(key)))
        policy = self.workdir / "policy.yaml"
        policy.write_text(yaml.safe_dump(example_policy(jwks.as_uri()), sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "EXTAUTHZ_"))}
        log = (self.workdir / "sidecar.log").open("ab")
        self.proc = subprocess.Popen(
            die_with_parent([
                str(BIN / "extauthz"), "serve", "--config", str(policy),
                "--grpc-address", f"127.0.0.1:{self.grpc_port}",
                "--http-address", f"127.0.0.1:{self.http_port}",
                "--state", "memory://", "--log-level", "warning",
            ]),
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"sidecar exited:\n{self.log()[-3000:]}")
            if http_get(self.http_port, "/readyz")[0] == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"sidecar not ready after {wait}s:\n{self.log()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        assert self.proc is not None
        return rss_mb(self.proc.pid)

    def peak_mb(self) -> float:
        """The highest RSS the process ever had (VmHWM): what a memory limit would meet."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def log(self) -> str:
        return (self.workdir / "sidecar.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def junk(rng: random.Random, kid: str, serial: int) -> ext_authz.CheckRequest:
    """Request ``serial``: a path of its own, and no credential or a worthless one."""
    shape = serial % (len(PATH_LENGTHS) + 1)
    stem = f"/v1/junk-{serial:09d}-"
    if shape < len(PATH_LENGTHS):
        path = stem + "a" * (PATH_LENGTHS[shape] - len(stem))
    else:  # a short path whose query string is what differs
        path = f"/v1/chat/completions?junk={serial:09d}-" + "q" * 4000
    token = None
    kind = serial % 4
    if kind == 1:
        token = f"sk-{b64(rng.randbytes(24))}"
    elif kind == 2:  # the IdP's kid, a garbage signature: a signature check that fails
        header = b64(json.dumps({"alg": "RS256", "kid": kid}).encode())
        claims = b64(json.dumps({"sub": f"junk-{serial}", "exp": 2**31}).encode())
        token = f"{header}.{claims}.{b64(rng.randbytes(256))}"
    elif kind == 3:  # a kid nobody publishes (a refetch, rate-limited by the sidecar)
        header = b64(json.dumps({"alg": "RS256", "kid": b64(rng.randbytes(12))}).encode())
        token = f"{header}.e30.{b64(rng.randbytes(64))}"
    return check_request(token, path, "gpt-4o-mini")


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)

    def add(self, serial: int, outcome: str) -> None:
        self.statuses[outcome] += 1
        if outcome.isdigit() and int(outcome) in DENY_STATUSES:
            return
        if len(self.bad) < 5:
            self.bad.append(f"request {serial}: {outcome}")

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def outcome(future: grpc.Future) -> str:
    try:
        response: ext_authz.CheckResponse = future.result()
    except grpc.RpcError as exc:
        return f"rpc-{exc.code().name}"
    if response.HasField("ok_response"):
        return "allowed"
    return str(response.denied_response.status.code)


def send(
    stub: ext_authz_grpc.AuthorizationStub,
    requests: Iterator[tuple[int, ext_authz.CheckRequest]],
    in_flight: int,
    tally: Tally,
) -> None:
    """Send every request, ``in_flight`` at a time, and count the answers."""
    pending: deque[tuple[int, grpc.Future]] = deque()
    for serial, request in requests:
        if len(pending) >= in_flight:
            done, future = pending.popleft()
            tally.add(done, outcome(future))
        pending.append((serial, stub.Check.future(request, timeout=30)))
    while pending:
        done, future = pending.popleft()
        tally.add(done, outcome(future))


@dataclass
class Result:
    """What one run saw; ``ok(max_growth_mb)`` is the verdict."""

    started_mb: float
    before_mb: float
    after_mb: float
    peak_mb: float
    alive: bool
    tally: Tally
    warm: Tally
    elapsed: float

    @property
    def growth_mb(self) -> float:
        """From after the warm-up to the highest point of the run (a memo that is emptied
        when full is back to small at the end; its peak is what a memory limit meets)."""
        return max(self.after_mb, self.peak_mb) - self.before_mb

    def checks(self, max_growth_mb: float) -> list[tuple[str, bool, str]]:
        bad = self.warm.bad + self.tally.bad
        return [
            ("alive: sidecar process still running", self.alive, ""),
            ("denied: every answer a 400 or 401 deny", not bad, "; ".join(bad)),
            (
                f"rss: grew less than {max_growth_mb:g} MB",
                self.alive and self.growth_mb < max_growth_mb,
                f"{self.before_mb:.1f} -> peak {self.peak_mb:.1f} MB, {self.growth_mb:+.1f} MB",
            ),
        ]

    def summary(self, in_flight: int, seed: int) -> list[str]:
        total = self.tally.total
        answers = ", ".join(f"{k}={v}" for k, v in sorted(self.tally.statuses.items()))
        return [
            f"junk: {total:,} requests in {self.elapsed:.1f} s "
            f"({total / max(self.elapsed, 1e-9):,.0f} rps), {in_flight} in flight, seed {seed}, "
            f"{os.cpu_count()} cores",
            f"answers: {answers}",
            f"sidecar RSS: {self.started_mb:.1f} MB at start, {self.before_mb:.1f} MB after "
            f"{self.warm.total:,} warm-up requests, peak {self.peak_mb:.1f} MB during the run, "
            f"{self.after_mb:.1f} MB after it",
        ]


def run_junk(
    count: int = 100_000, warmup: int = 2_000, in_flight: int = 32, seed: int = 13,
    workdir: Path | None = None,
) -> Result:  # fmt: skip
    """Start a sidecar, send the warm-up and ``count`` junk requests, measure, stop it."""
    rng = random.Random(seed)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="junk-")))
        sidecar = Sidecar(workdir)
        stack.callback(sidecar.stop)
        sidecar.start()
        started_mb = sidecar.rss_mb()
        channel = grpc.insecure_channel(
            f"127.0.0.1:{sidecar.grpc_port}",
            options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
        )
        stack.callback(channel.close)
        stub = ext_authz_grpc.AuthorizationStub(channel)
        # Warm-up: the same shapes on 16 paths used over and over (gRPC's buffers, the caches).
        warm = Tally()
        send(stub, ((i, junk(rng, sidecar.kid, i % 16)) for i in range(warmup)), in_flight, warm)
        time.sleep(1.0)
        before_mb = sidecar.rss_mb()
        tally = Tally()
        start = time.monotonic()
        requests = ((i, junk(rng, sidecar.kid, i)) for i in range(16, 16 + count))
        send(stub, requests, in_flight, tally)
        elapsed = time.monotonic() - start
        time.sleep(1.0)
        alive = sidecar.alive()
        after_mb = sidecar.rss_mb() if alive else float("nan")
        peak_mb = sidecar.peak_mb() if alive else float("nan")
    return Result(started_mb, before_mb, after_mb, peak_mb, alive, tally, warm, elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    parser.add_argument("--keep", type=Path, help="keep the sidecar's log in this directory")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    result = run_junk(args.count, args.warmup, args.in_flight, args.seed, args.keep)
    print("\n".join(result.summary(args.in_flight, args.seed)))
    checks = result.checks(args.max_growth_mb)
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))
    ok = all(c[1] for c in checks)
    print("PASS junk_memory: all checks" if ok else "FAIL junk_memory: see FAIL lines above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

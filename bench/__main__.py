"""`python -m bench`: Envoy + wrk on this machine, the scenarios of DESIGN.md's performance section.

Scenarios (one Envoy worker, wrk -t1 -c32, POST /v1/chat/completions with a ~1 KB body, Envoy
answers itself behind a buffer filter so no upstream is measured):
  envoy-alone     no auth (the limit)
  jwt_authn       Envoy's C++ jwt_authn with 1,000 rotating RS256 tokens (the C++ anchor)
  floor           ext_authz to a trivial Python grpc.aio server that allows everything unread
  sidecar-warm    ext_authz to `extauthz serve`, full policy, 1,000 users' tokens in rotation
  sidecar-cold    the same with 50,000 distinct tokens (a signature verified on each request)
The floor runs twice (first and last) and ratios use their mean: run-to-run noise is ~±10 %.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from extauthz.devtokens import load_private_key, public_jwk, write_dev_key

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "results"
BIN = Path(sys.executable).parent
EXT = "type.googleapis.com/envoy.extensions."
HCM = f"{EXT}filters.network.http_connection_manager.v3.HttpConnectionManager"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_tokens(path: Path, count: int, prefix: str) -> None:
    """RS256 tokens for distinct users (cached on disk; valid for a day)."""
    fresh = path.exists() and time.time() - path.stat().st_mtime < 20 * 3600
    if fresh and sum(1 for _ in path.open()) == count:
        return
    key = load_private_key(WORK / "bench-key.pem")
    kid = public_jwk(key)["kid"]
    header = _b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode())
    now = int(time.time())
    lines = []
    for i in range(count):
        claims = {
            "sub": f"{prefix}-{i}",
            "email": f"{prefix}-{i}@example.com",
            "roles": ["basic_user"],
            "org_id": "org-1",
            "customer_id": f"c-{i % 97}",
            "iat": now,
            "exp": now + 24 * 3600,
        }
        signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        lines.append(f"{signing_input}.{_b64(sig)}")
    path.write_text("\n".join(lines) + "\n")


def envoy_config(port: int, admin: int, auth: str, authz_port: int | None = None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": f"{EXT}filters.http.buffer.v3.Buffer",
                "max_request_bytes": 1048576,
            },
        }
    ]
    clusters: list[dict[str, Any]] = []
    if auth == "jwt_authn":
        jwks = json.loads((WORK / "bench-jwks.json").read_text())
        filters.insert(
            0,
            {
                "name": "envoy.filters.http.jwt_authn",
                "typed_config": {
                    "@type": f"{EXT}filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": {
                        "bench": {
                            "local_jwks": {"inline_string": json.dumps(jwks)},
                            "forward": False,
                        }
                    },
                    "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
                },
            },
        )
    elif auth == "ext_authz":
        filters.insert(
            0,
            {
                "name": "envoy.filters.http.ext_authz",
                "typed_config": {
                    "@type": f"{EXT}filters.http.ext_authz.v3.ExtAuthz",
                    "transport_api_version": "V3",
                    "grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "2s"},
                    "failure_mode_allow": False,
                    "status_on_error": {"code": "ServiceUnavailable"},
                    "with_request_body": {
                        "max_request_bytes": 65536,
                        "allow_partial_message": True,
                        "pack_as_bytes": True,
                    },
                },
            },
        )
        clusters.append(
            {
                "name": "authz",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": f"{EXT}upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    }
                },
                "load_assignment": {
                    "cluster_name": "authz",
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {
                                                "address": "127.0.0.1",
                                                "port_value": authz_port,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": f"{EXT}filters.http.router.v3.Router"},
        }
    )
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": HCM,
                                        "stat_prefix": "bench",
                                        "http_filters": filters,
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {
                                                                "status": 200,
                                                                "body": {"inline_string": "ok"},
                                                            },
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


@contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


@contextmanager
def envoy(auth: str, authz_port: int | None = None) -> Iterator[int]:
    port, admin = free_port(), free_port()
    cfg = WORK / f"envoy-{auth}.yaml"
    cfg.write_text(yaml.safe_dump(envoy_config(port, admin, auth, authz_port)))
    with process(
        [
            str(BIN / "envoy"),
            "-c",
            str(cfg),
            "--concurrency",
            "1",
            "--use-dynamic-base-id",
            "--log-level",
            "error",
        ],
        log=WORK / f"envoy-{auth}.log",
    ):
        wait_port(port)
        yield port


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    note: str = ""


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(
    name: str, port: int, tokens: Path, seconds: int, connections: int, note: str = ""
) -> Result:
    args = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(ROOT / "wrk.lua"),
        f"http://127.0.0.1:{port}",
        "--",
        str(tokens),
        str(WORK / "body.json"),
    ]
    subprocess.run([*args[:3], "-d2s", *args[4:]], capture_output=True, check=True)  # warm-up
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    (WORK / f"wrk-{name}.txt").write_text(out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    return Result(name, rps, p50, p99, errors, note)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-tokens", type=int, default=50_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    WORK.mkdir(exist_ok=True)
    write_dev_key(WORK / "bench-key.pem", WORK / "bench-jwks.json")
    body = {
        "model": "claude-haiku",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise: " + "lorem ipsum " * 75},
        ],
    }
    (WORK / "body.json").write_text(json.dumps(body))
    warm, cold = WORK / "tokens-warm.txt", WORK / "tokens-cold.txt"
    make_tokens(warm, 1000, "warm")
    make_tokens(cold, args.cold_tokens, "cold")
    none = WORK / "tokens-none.txt"
    none.write_text("-\n")
    sec, conns = args.seconds, args.connections
    results: list[Result] = []
    memory = ""

    def floor_run(label: str) -> None:
        authz = free_port()
        with process(
            [sys.executable, "-m", "bench.floor", f"127.0.0.1:{authz}"], log=WORK / "floor.log"
        ):
            wait_port(authz)
            with envoy("ext_authz", authz) as port:
                results.append(run_wrk(label, port, warm, sec, conns))

    with envoy("none") as port:
        results.append(run_wrk("envoy-alone", port, none, sec, conns))
    with envoy("jwt_authn") as port:
        results.append(run_wrk("jwt_authn", port, warm, sec, conns, "1,000 tokens"))
    floor_run("floor")
    env = {
        **os.environ,
        "JWT_PUBLIC_KEY_URL": f"file://{WORK / 'bench-jwks.json'}",
        "EXTAUTHZ_LOG_LEVEL": "warning",
    }
    for label, tokens, note in (
        ("sidecar-warm", warm, "1,000 tokens"),
        ("sidecar-cold", cold, f"{args.cold_tokens:,} tokens"),
    ):
        grpc_port, http_port = free_port(), free_port()
        with process(
            [
                str(BIN / "extauthz"),
                "serve",
                "--config",
                str(ROOT / "policy.yaml"),
                "--grpc-address",
                f"127.0.0.1:{grpc_port}",
                "--http-address",
                f"127.0.0.1:{http_port}",
                "--state",  # the default store, kept out of the working directory
                f"sqlite:///{WORK / 'bench-state.db'}",
            ],
            env=env,
            log=WORK / f"{label}.log",
        ) as sidecar:
            wait_port(http_port)
            time.sleep(0.5)
            with envoy("ext_authz", grpc_port) as port:
                results.append(run_wrk(label, port, tokens, sec, conns, note))
            if label == "sidecar-cold":
                memory = f"{rss_mb(sidecar.pid):.0f} MB"
    from bench.http_mode import http_rows  # HTTP-service mode: its floor and the sidecar

    results.extend(
        http_rows(sec, conns, args.cold_tokens,
                  only=("http-floor", "http-sidecar-warm", "http-sidecar-cold"))
    )  # fmt: skip
    floor_run("floor-again")

    floors = [r for r in results if r.name.startswith("floor")]
    floor_rps = sum(r.rps for r in floors) / len(floors)
    floor_p99 = sum(r.p99_ms for r in floors) / len(floors)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"Envoy --concurrency 1, wrk -t1 -c{conns} -d{sec}s, 1 KB chat body.",
        "",
        "| scenario | rps | p50 ms | p99 ms | errors | x floor rps | x jwt_authn rps "
        "| x floor p99 | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    jwt_rps = next(r.rps for r in results if r.name == "jwt_authn")
    for r in results:
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} "
            f"| {r.rps / floor_rps:.2f} | {r.rps / jwt_rps:.2f} | {r.p99_ms / floor_p99:.2f} "
            f"| {r.note} |"
        )
    lines += ["", f"Sidecar resident memory after the cold run: {memory}."]
    table = "\n".join(lines)
    (WORK / "latest.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

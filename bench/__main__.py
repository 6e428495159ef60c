"""`python -m bench`: Envoy + wrk on this machine, the scenarios of DESIGN.md's performance section.

Scenarios (one Envoy worker, wrk -t1 -c32, POST /v1/chat/completions with a ~1 KB body, Envoy
answers itself behind a buffer filter so no upstream is measured):
  envoy-alone        no auth (the limit)
  jwt_authn          Envoy's C++ jwt_authn with 1,000 rotating RS256 tokens (the C++ anchor)
  floor-sync         ext_authz to a trivial Python grpcio sync server (ThreadPoolExecutor) that
                     allows everything unread
  floor-aio          the same on grpc.aio
  floor-native       the same on pygrpc-native's server
  sidecar-warm       ext_authz to `extauthz serve --grpc-server pygrpc-native` (opt-in; the
                     sidecar-*, workers-* rows all run on it), full policy, 1,000 users' tokens
  sidecar-warm-grpcio  the same on grpcio's server (serve's default)
  sidecar-cold       the same with 50,000 distinct tokens (a signature verified on each request)
  workers-1          sidecar-warm, but Envoy opens a new connection to the authorizer for every
                     4 checks in flight (``max_concurrent_streams: 4``), so SO_REUSEPORT can spread
                     them; the baseline for ...
  workers-2          ... the same with `extauthz serve --workers 2` (two processes, one port)
  http-*             the same three in Envoy's HTTP-service ext_authz mode (bench/http_mode.py)

Envoy, wrk and the authorizer share the machine's cores, so run-to-run noise is large (±10-20 %
here). Every scenario but envoy-alone therefore runs once per round, in a rotating order, and
the table gives medians: each ratio is the median over rounds of that round's pair (a sidecar
row against the faster of the two grpcio floors run in the same round, and against floor-native),
with its lowest and highest value. The authorizer's CPU per request counts all its processes
(workers, the body reader).
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from extauthz.dev.envoyconf import stop_process
from extauthz.devtokens import load_private_key, public_jwk
from harness.procs import free_port, rss_mb, tree_cpu_seconds, wait_port
from harness.table import Result, summarize

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "results"
BIN = Path(sys.executable).parent
EXT = "type.googleapis.com/envoy.extensions."
FLOORS = ("floor-sync", "floor-aio")  # x floor: against the faster grpcio floor (issue 18's)
NATIVE_FLOOR = ("floor-native",)  # x floor-native: the sidecar's own server, deciding nothing
WORKER_STREAMS = 4  # workers-N rows: ~8 connections from Envoy for SO_REUSEPORT to spread
HCM = f"{EXT}filters.network.http_connection_manager.v3.HttpConnectionManager"


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


def envoy_config(
    port: int, admin: int, auth: str, authz_port: int | None = None, streams: int | None = None
) -> dict[str, Any]:
    """``streams``: most checks in flight on one connection to the authorizer (Envoy opens more
    connections beyond it); None: Envoy's default, so one connection carries them all."""
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
                        "explicit_http_config": {
                            "http2_protocol_options": (
                                {"max_concurrent_streams": streams} if streams else {}
                            )
                        },
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
        stop_process(proc)
        if log:
            out.close()  # type: ignore[union-attr]


@contextmanager
def envoy(auth: str, authz_port: int | None = None, streams: int | None = None) -> Iterator[int]:
    port, admin = free_port(), free_port()
    cfg = WORK / f"envoy-{auth}.yaml"
    cfg.write_text(yaml.safe_dump(envoy_config(port, admin, auth, authz_port, streams)))
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


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(
    name: str,
    port: int,
    tokens: Path,
    seconds: int,
    connections: int,
    note: str = "",
    authz_pid: int | None = None,
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
    cpu_before = tree_cpu_seconds(authz_pid) if authz_pid else 0.0
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_seconds(authz_pid) - cpu_before if authz_pid else float("nan")
    (WORK / f"wrk-{name}.txt").write_text(out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    done = re.search(r"(\d+) requests in", out)
    cpu_us = cpu / int(done.group(1)) * 1e6 if done and int(done.group(1)) else float("nan")
    return Result(name, rps, p50, p99, errors, note, cpu_us)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-tokens", type=int, default=50_000)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP-mode rows")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios to run (e.g. floor-sync,floor-aio,sidecar-warm)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    from bench.http_mode import http_rows, prepare  # HTTP-service mode: its floor and sidecar

    warm, cold = prepare(args.cold_tokens)
    none = WORK / "tokens-none.txt"
    none.write_text("-\n")
    sec, conns = args.seconds, args.connections
    memory: list[float] = []
    env = {
        **os.environ,
        "JWT_PUBLIC_KEY_URL": f"file://{WORK / 'bench-jwks.json'}",
        "EXTAUTHZ_LOG_LEVEL": "warning",
    }

    def floor(server: str) -> Result:
        authz, name = free_port(), f"floor-{server}"
        with process(
            [sys.executable, "-m", "bench.floor", "--server", server, f"127.0.0.1:{authz}"],
            log=WORK / f"{name}.log",
        ) as proc:
            wait_port(authz)
            with envoy("ext_authz", authz) as port:
                return run_wrk(name, port, warm, sec, conns, authz_pid=proc.pid)

    def jwt_authn() -> Result:
        with envoy("jwt_authn") as port:
            return run_wrk("jwt_authn", port, warm, sec, conns, "1,000 tokens")

    def sidecar(label: str) -> Result:
        tokens, note = (
            (cold, f"{args.cold_tokens:,} tokens")
            if label == "sidecar-cold"
            else (warm, "1,000 tokens")
        )
        workers = 2 if label == "workers-2" else 1
        server = "grpcio" if label.endswith("-grpcio") else "pygrpc-native"
        streams = WORKER_STREAMS if label.startswith("workers-") else None
        if streams:
            note += f", --workers {workers}, {streams} checks per Envoy connection"
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
                "--workers",
                str(workers),
                "--grpc-server",
                server,
            ],
            env=env,
            log=WORK / f"{label}.log",
        ) as proc:
            wait_port(http_port)
            time.sleep(0.5)
            with envoy("ext_authz", grpc_port, streams) as port:
                result = run_wrk(label, port, tokens, sec, conns, note, authz_pid=proc.pid)
            if label == "sidecar-cold":
                memory.append(rss_mb(proc.pid))
            return result

    def http(label: str) -> Result:
        return http_rows(sec, conns, args.cold_tokens, only=(label,), tokens=(warm, cold))[0]

    runners = {
        "floor-sync": functools.partial(floor, "sync"),
        "floor-aio": functools.partial(floor, "aio"),
        "floor-native": functools.partial(floor, "native"),
        "sidecar-warm": lambda: sidecar("sidecar-warm"),
        "sidecar-warm-grpcio": lambda: sidecar("sidecar-warm-grpcio"),
        "sidecar-cold": lambda: sidecar("sidecar-cold"),
        "workers-1": lambda: sidecar("workers-1"),
        "workers-2": lambda: sidecar("workers-2"),
        "jwt_authn": jwt_authn,
    }
    if not args.no_http:
        for label in ("http-floor", "http-sidecar-warm", "http-sidecar-cold"):
            runners[label] = functools.partial(http, label)
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(runners))
    if unknown:
        print(
            f"unknown scenarios: {', '.join(unknown)}; known: {', '.join(runners)}", file=sys.stderr
        )
        return 2
    order = only or list(runners)
    with envoy("none") as port:
        alone = run_wrk("envoy-alone", port, none, sec, conns)
    rounds: list[dict[str, Result]] = []
    for n in range(args.rounds):
        turn = order[n % len(order) :] + order[: n % len(order)]  # each scenario leads once
        results: dict[str, Result] = {}
        for name in turn:
            results[name] = runners[name]()
            r = results[name]
            print(
                f"round {n + 1}/{args.rounds} {name}: {r.rps:,.0f} rps", file=sys.stderr, flush=True
            )
        rounds.append(results)
        (WORK / f"round-{n + 1}.json").write_text(
            json.dumps({k: v.__dict__ for k, v in results.items()}, indent=1)
        )
    rows = [(alone, "", "", ""), *summarize(rounds, order, FLOORS)]
    x_native = {r.name: x for r, x, _, _ in summarize(rounds, order, NATIVE_FLOOR)}
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"Envoy --concurrency 1, wrk -t1 -c{conns} -d{sec}s, 1 KB chat body, "
        f"{args.rounds} rounds (medians; ratios: median of same-round pairs, low-high; "
        "x floor: against the faster of floor-sync and floor-aio in the same round; "
        "x floor-native: against floor-native).",
        "",
        "| scenario | rps | p50 ms | p99 ms | errors | x floor rps | x floor-native rps "
        "| x jwt_authn rps | x floor p99 | authz CPU µs/req | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r, x_floor, x_jwt, x_p99 in rows:
        cpu = "" if math.isnan(r.cpu_us) else f"{r.cpu_us:,.0f}"
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} "
            f"| {x_floor} | {x_native.get(r.name, '')} | {x_jwt} | {x_p99} | {cpu} | {r.note} |"
        )
    if memory:
        lines += [
            "",
            f"Sidecar resident memory after a cold run ({args.cold_tokens:,} tokens): "
            f"{max(memory):.0f} MB (highest of {len(memory)} runs).",
        ]
    table = "\n".join(lines)
    (WORK / "latest.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

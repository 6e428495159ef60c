"""Benchmark rows for Envoy's HTTP-service ext_authz mode, beside the gRPC ones (wrk, real Envoy).

    python -m bench.http_mode [--seconds 10] [--cold-tokens 50000] [--only a,b]

Reuses ``bench`` (same Envoy listener, buffer filter, wrk script, tokens, 1 KB body and table
columns); only the ext_authz filter and its cluster differ, taken from the shipped
``envoy-http.yaml`` with bench's body settings. Scenarios, run in this order so the pairs to
compare run side by side: ``grpc-floor`` and ``http-floor`` (trivial servers that allow
everything unread), ``http-floor-llhttp`` (the same framed by httptools, the sidecar's parser),
``jwt_authn`` (the C++ anchor), ``http-sidecar-warm`` (1,000 tokens in rotation),
``http-sidecar-cold`` (a new token each request), ``grpc-sidecar-warm``, ``grpc-floor-again``.

For ``bench/__main__.py``: ``http_rows(seconds, connections, cold_tokens, sidecar_http)`` returns
``Result`` rows; ``sidecar_http(port)`` is the command that serves HTTP mode on ``port``
(default: this package's runner; once wired, ``extauthz serve --authz-http-address``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

import bench.__main__ as bench
from extauthz.devtokens import write_dev_key
from harness.procs import free_port, wait_port
from harness.table import Result

REPO = Path(__file__).resolve().parents[1]
ENVOY_HTTP_YAML = REPO / "envoy-http.yaml"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
SCENARIOS = (
    "grpc-floor",
    "http-floor",
    "http-floor-llhttp",
    "jwt_authn",
    "http-sidecar-warm",
    "http-sidecar-cold",
    "grpc-sidecar-warm",
    "grpc-floor-again",
)


def _shipped_http_filter() -> tuple[dict[str, Any], dict[str, Any]]:
    """envoy-http.yaml's ext_authz filter config and its cluster."""
    data = yaml.safe_load(ENVOY_HTTP_YAML.read_text())
    hcm = data["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filt = next(f for f in hcm["typed_config"]["http_filters"] if f["name"] == EXT_AUTHZ)
    cluster = next(c for c in data["static_resources"]["clusters"] if c["name"] == "extauthz")
    return filt["typed_config"], cluster


def http_envoy_config(port: int, admin: int, authz_port: int) -> dict[str, Any]:
    """bench's ext_authz config with the filter and cluster switched to HTTP-service mode."""
    config = bench.envoy_config(port, admin, "ext_authz", authz_port)
    shipped, cluster = _shipped_http_filter()
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    for f in hcm["typed_config"]["http_filters"]:
        if f["name"] == EXT_AUTHZ:
            typed = copy.deepcopy(shipped)
            body = dict(f["typed_config"]["with_request_body"])
            body.pop("pack_as_bytes", None)  # gRPC only
            typed["with_request_body"] = body
            typed["http_service"]["server_uri"]["uri"] = f"http://127.0.0.1:{authz_port}"
            typed["http_service"]["server_uri"]["timeout"] = "2s"
            typed["http_service"]["server_uri"]["cluster"] = "authz"
            f["typed_config"] = typed
    cluster = copy.deepcopy(cluster)
    cluster["name"] = "authz"
    cluster["load_assignment"]["cluster_name"] = "authz"
    sock = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    sock["socket_address"]["port_value"] = authz_port
    config["static_resources"]["clusters"] = [cluster]
    return config


@contextmanager
def http_envoy(authz_port: int) -> Iterator[int]:
    """An Envoy (one worker) checking every request with the HTTP service on ``authz_port``."""
    port, admin = free_port(), free_port()
    cfg = bench.WORK / "envoy-ext_authz_http.yaml"
    cfg.write_text(yaml.safe_dump(http_envoy_config(port, admin, authz_port)))
    args = [str(bench.BIN / "envoy"), "-c", str(cfg), "--concurrency", "1"]
    args += ["--use-dynamic-base-id", "--log-level", "error"]
    with bench.process(args, log=bench.WORK / "envoy-ext_authz_http.log"):
        wait_port(port)
        yield port


def default_sidecar_http(config: Path) -> Callable[[int], list[str]]:
    """``extauthz serve`` with HTTP mode on ``port`` (gRPC and admin on free ports)."""

    def cmd(port: int) -> list[str]:
        return [str(bench.BIN / "extauthz"), "serve", "--config", str(config),
                "--grpc-address", f"127.0.0.1:{free_port()}",
                "--http-address", f"127.0.0.1:{free_port()}",
                "--state", f"sqlite:///{bench.WORK / 'bench-state.db'}",  # as the gRPC rows
                "--authz-http-address", f"127.0.0.1:{port}"]  # fmt: skip

    return cmd


def prepare(cold_tokens: int) -> tuple[Path, Path]:
    """Key, JWKS, body and token files in bench.WORK, as ``python -m bench`` makes them."""
    bench.WORK.mkdir(parents=True, exist_ok=True)
    key = bench.WORK / "bench-key.pem"
    if not key.exists():
        write_dev_key(key, bench.WORK / "bench-jwks.json")
    body = {
        "model": "claude-haiku",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise: " + "lorem ipsum " * 75},
        ],
    }
    (bench.WORK / "body.json").write_text(json.dumps(body))
    warm, cold = bench.WORK / "tokens-warm.txt", bench.WORK / "tokens-cold.txt"
    bench.make_tokens(warm, 1000, "warm")
    bench.make_tokens(cold, cold_tokens, "cold")
    return warm, cold


def http_rows(
    seconds: int = 10,
    connections: int = 32,
    cold_tokens: int = 50_000,
    sidecar_http: Callable[[int], list[str]] | None = None,
    only: tuple[str, ...] = SCENARIOS,
    tokens: tuple[Path, Path] | None = None,
) -> list[Result]:
    """Run the HTTP-mode scenarios (and their gRPC partners) and return their rows.

    ``tokens``: the (warm, cold) files from ``prepare`` when the caller made them already
    (re-reading 50,000 cached tokens per scenario is wasted I/O).
    """
    warm, cold = tokens or prepare(cold_tokens)
    policy = bench.ROOT / "policy.yaml"
    sidecar_http = sidecar_http or default_sidecar_http(policy)
    env = {
        **os.environ,
        "JWT_PUBLIC_KEY_URL": f"file://{bench.WORK / 'bench-jwks.json'}",
        "EXTAUTHZ_LOG_LEVEL": "warning",
    }
    rows: list[Result] = []
    sec, conns = seconds, connections

    def wrk(name: str, port: int, tokens: Path, note: str = "", pid: int | None = None) -> None:
        rows.append(bench.run_wrk(name, port, tokens, sec, conns, note, authz_pid=pid))
        print(f"{name}: {rows[-1].rps:,.0f} rps", file=sys.stderr, flush=True)

    for name in only:
        port = free_port()
        if name.startswith("grpc-floor"):
            cmd = [sys.executable, "-m", "bench.floor", f"127.0.0.1:{port}"]
            with bench.process(cmd, log=bench.WORK / "floor.log"):
                wait_port(port)
                with bench.envoy("ext_authz", port) as envoy_port:
                    wrk(name, envoy_port, warm)
        elif name.startswith("http-floor"):
            parser = "httptools" if name.endswith("llhttp") else "hand"
            cmd = [sys.executable, "-m", "bench.http_floor", f"127.0.0.1:{port}",
                   "--parser", parser]  # fmt: skip
            with bench.process(cmd, log=bench.WORK / "http-floor.log") as proc:
                wait_port(port)
                with http_envoy(port) as envoy_port:
                    wrk(name, envoy_port, warm, pid=proc.pid)
        elif name == "jwt_authn":
            with bench.envoy("jwt_authn") as envoy_port:
                wrk(name, envoy_port, warm, "1,000 tokens")
        elif name.startswith("http-sidecar"):
            token_file, note = (warm, "1,000 tokens") if name.endswith("warm") else (
                cold, f"{cold_tokens:,} tokens")  # fmt: skip
            with bench.process(sidecar_http(port), env=env, log=bench.WORK / f"{name}.log") as proc:
                wait_port(port)
                time.sleep(0.5)  # keys fetched
                with http_envoy(port) as envoy_port:
                    wrk(name, envoy_port, token_file, note, pid=proc.pid)
        elif name == "grpc-sidecar-warm":
            admin = free_port()
            cmd = [str(bench.BIN / "extauthz"), "serve", "--config", str(policy),
                   "--grpc-address", f"127.0.0.1:{port}",
                   "--http-address", f"127.0.0.1:{admin}",
                   "--state", f"sqlite:///{bench.WORK / 'bench-state.db'}"]  # fmt: skip
            with bench.process(cmd, env=env, log=bench.WORK / f"{name}.log"):
                wait_port(admin)
                time.sleep(0.5)
                with bench.envoy("ext_authz", port) as envoy_port:
                    wrk(name, envoy_port, warm, "1,000 tokens")
        else:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return rows


def table(rows: list[Result]) -> str:
    """Markdown rows with ratios to the gRPC floor (mean of its runs) and to jwt_authn."""
    floors = [r.rps for r in rows if r.name.startswith("grpc-floor")]
    anchor = [r.rps for r in rows if r.name == "jwt_authn"]
    floor = sum(floors) / len(floors) if floors else float("nan")
    jwt = anchor[0] if anchor else float("nan")
    lines = [
        f"{os.cpu_count()} cores; Envoy --concurrency 1; wrk -t1; 1 KB chat body.",
        "",
        "| scenario | rps | p50 ms | p99 ms | errors | x gRPC floor | x jwt_authn | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} "
            f"| {r.rps / floor:.2f} | {r.rps / jwt:.2f} | {r.note} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--cold-tokens", type=int, default=50_000)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--out", default=str(bench.ROOT / "results" / "httpmode"))
    args = ap.parse_args()
    bench.WORK = Path(args.out)  # every bench helper reads and writes there
    rows = http_rows(args.seconds, args.connections, args.cold_tokens,
                     only=tuple(s for s in args.only.split(",") if s))  # fmt: skip
    text = table(rows)
    (bench.WORK / "latest.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

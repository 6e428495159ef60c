"""`python -m bench.bystanders`: bystanders' latency through a real Envoy, with and without one
caller sending hostile 8 MiB bodies (issue 12: bounded cost per request). A benchmark, not a test.

Per Envoy mode (gRPC: the shipped envoy.yaml; HTTP service: envoy-http.yaml, both rendered onto
free loopback ports by bench.hostile's rig: IdP, `extauthz serve` subprocess, demo upstream):

  quiet   wrk -t1 -c16 (bystanders): POST /v1/chat/completions, a 1 KB body naming gpt-4o-mini,
          1,000 valid tokens of a restricted role (basic_user -> internal_user, whose
          role_permissions entry has a `models` list, so every body is read for its models)
  loud    the same wrk run while one caller (a separate process, a few connections) sends, with
          a valid token of the same role, 8 MiB bodies (just under Envoy's max_request_bytes, so
          the sidecar gets each one whole) in rotating shapes (SHAPES), as fast as answers come
  loud-401  the same caller and bodies at the rate the loud run reached, with a malformed token
          (401 before any body is read): what carrying the bodies costs, without the body work

They run back to back in each round (quiet first, then last, ...; --no-control skips loud-401).
The table gives, per mode and run: the bystanders' rps, p50, p99, non-2xx and socket errors (wrk,
measured window), their 5xx (Envoy's access log, the whole wrk run with its 2 s warm-up), p99
over the same round's quiet p99 (target: loud within 2x, no bystander 5xx), the hostile rate, and
the CPU of the sidecar, of Envoy and of the whole machine while wrk ran. Then the hostile
caller's answers per shape, and what one request of each shape costs the sidecar and Envoy
(sent alone, one after another, after the rounds). Logs, wrk output and the table are kept in
bench/results/bystanders/ (git-ignored with the rest of bench/results/).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import bench.__main__ as bench
from extauthz.dev.envoyconf import (
    EnvoyPorts,
    EnvoyProcess,
    die_with_parent,
    load_config,
    render_envoy_config,
)
from extauthz.devtokens import load_private_key, write_dev_key
from extauthz.policy import models as body_limits
from harness.hostile import Rig, rig, send_raw
from harness.procs import cpu_seconds, free_port, rss_mb
from tests.integration.harness import ENVOY_YAML

REPO = Path(__file__).resolve().parents[1]
ENVOY_HTTP_YAML = REPO / "envoy-http.yaml"
OUT = bench.ROOT / "results" / "bystanders"


def shipped_max_request_bytes() -> int:
    """envoy.yaml's ext_authz with_request_body.max_request_bytes (8 MiB)."""
    hcm = load_config(ENVOY_YAML)["static_resources"]["listeners"][0]["filter_chains"][0]
    filters = hcm["filters"][0]["typed_config"]["http_filters"]
    authz = next(f for f in filters if f["name"] == "envoy.filters.http.ext_authz")
    return int(authz["typed_config"]["with_request_body"]["max_request_bytes"])


MAX_REQUEST_BYTES = shipped_max_request_bytes()
HOSTILE_SIZE = MAX_REQUEST_BYTES - 1024  # just under it: the sidecar gets the body whole
HOSTILE_PATH = "/chat/completions"  # bystanders use /v1/chat/completions (bench/wrk.lua)
BYSTANDER_PATH = "/v1/chat/completions"
TOKENS = 1000
# The sidecar's body bounds (extauthz/policy/models.py), read so the "edge" shapes stay just
# under whatever bounds the code being measured has.
CONTAINERS = int(getattr(body_limits, "MAX_JSON_CONTAINERS", 20_000))
ITEMS = int(getattr(body_limits, "MAX_JSON_ITEMS", 250_000))


# -- hostile bodies -----------------------------------------------------------------------------


def _fill(body: bytes, size: int) -> bytes:
    """``body`` padded with trailing whitespace (valid JSON) to exactly ``size`` bytes."""
    if len(body) > size:
        raise ValueError(f"body of {len(body)} bytes over {size}")
    return body + b" " * (size - len(body))


def tiny_objects(size: int) -> bytes:
    """``[{},{},...]``: millions of empty objects."""
    n = (size - 4) // 3
    return _fill(b"[" + b"{}," * n + b"{}]", size)


def ints(size: int) -> bytes:
    """``{"model":"m","input":[1,1,...]}``: millions of integers."""
    head, tail = b'{"model":"m","input":[', b"1]}"
    return _fill(head + b"1," * ((size - len(head) - len(tail)) // 2) + tail, size)


def small_arrays(size: int) -> bytes:
    """``{"model":"m","x":[[1,1,1,1],...]}``: many small arrays."""
    head, tail, item = b'{"model":"m","x":[', b"[1]]}", b"[1,1,1,1],"
    return _fill(head + item * ((size - len(head) - len(tail)) // len(item)) + tail, size)


def nested_model(size: int) -> bytes:
    """``{"model":"a","x":[{"model":"b"},...]}``: "model" repeated in many nested objects."""
    head, tail, item = b'{"model":"a","x":[', b'{"model":"b"}]}', b'{"model":"b"},'
    return _fill(head + item * ((size - len(head) - len(tail)) // len(item)) + tail, size)


def big_string(size: int) -> bytes:
    """One 8 MiB string as a message's content, the model after it."""
    head, tail = b'{"messages":[{"role":"user","content":"', b'"}],"model":"m"}'
    return _fill(head + b"x" * (size - len(head) - len(tail)) + tail, size)


def edge_bigints(size: int) -> bytes:
    """Just under the container and item bounds: 95 % of the allowed arrays, holding 95 % of the
    allowed values, each an integer too long for 64 bits (orjson refuses those: the stdlib
    parser then reads the whole body)."""
    arrays = max(1, int(CONTAINERS * 0.95) - 1)
    per = max(1, (int(ITEMS * 0.95) - arrays) // arrays)  # values per array
    head, tail = b'{"model":"m","x":[', b"]}"
    # each array: "[" + per numbers of `digits` bytes, comma-separated + "]" + ","
    digits = max(20, (size - len(head) - len(tail) - 2 * arrays) // (per * arrays) - 1)
    row = b"[" + b",".join([b"9" * digits] * per) + b"]"
    return _fill(head + b",".join([row] * arrays) + tail, size)


def edge_models(size: int) -> bytes:
    """Just under the container bound: 95 % of the allowed objects, each naming "model" (a
    repeated key makes the parse strict), padded with text to 8 MiB."""
    objects = max(1, int(CONTAINERS * 0.95) - 2)
    head, tail = b'{"model":"a","x":[', b"]}"
    pad = max(1, (size - len(head) - len(tail)) // objects - len(b'{"model":"b","p":""},'))
    item = b'{"model":"b","p":"' + b"x" * pad + b'"}'
    return _fill(head + b",".join([item] * objects) + tail, size)


def edge_escapes(size: int) -> bytes:
    """Just under the item bound: 95 % of the allowed values, each a short string of ``\\u``
    escapes (a ``\\u`` anywhere makes the sidecar parse the body a second time, for a top-level
    "model" spelled with escapes)."""
    values = int(ITEMS * 0.95)
    head, tail = b'{"model":"m","x":[', b"]}"
    per = max(1, ((size - len(head) - len(tail)) // values - 3) // 6)
    item = b'"' + b"\\u00e9" * per + b'"'
    return _fill(head + b",".join([item] * values) + tail, size)


SHAPES: dict[str, Callable[[int], bytes]] = {
    "tiny-objects": tiny_objects,
    "ints": ints,
    "small-arrays": small_arrays,
    "nested-model": nested_model,
    "8MiB-string": big_string,
    "edge-bigints": edge_bigints,
    "edge-models": edge_models,
    "edge-escapes": edge_escapes,
}


def hostile_requests(token: str, size: int = HOSTILE_SIZE) -> dict[str, bytes]:
    """Each shape as a whole HTTP/1.1 request (one connection each, closed after the answer)."""
    out = {}
    for name, make in SHAPES.items():
        body = make(size)
        head = (
            f"POST {HOSTILE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        out[name] = head.encode() + body
    return out


# -- the hostile caller (its own process: it must not share the GIL with the rig's upstream) ----


class Sent(NamedTuple):
    """One hostile request and its answer."""

    shape: str
    status: int  # 0: no HTTP answer
    reason: str  # x-extauthz-reason
    seconds: float  # sending the request to the end of the answer
    at: float  # when it was sent (time.time())


def hostile_loop(
    port: int,
    token: str,
    connections: int,
    rate: float,
    max_seconds: float,
    ready: Any,
    stop: Any,
    results: Any,
) -> None:
    """Send the shapes in rotation on ``connections`` threads until ``stop`` (or max_seconds),
    each as soon as the last answer came, or (``rate`` > 0) at most ``rate`` a second in all;
    put the list of ``Sent`` on ``results``."""
    raws = hostile_requests(token)
    names = list(raws)
    turn = itertools.count()
    done: list[Sent] = []
    lock = threading.Lock()
    ready.set()
    begin = time.monotonic()
    deadline = begin + max_seconds

    def worker() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            n = next(turn)
            if rate > 0:
                stop.wait(max(0.0, begin + n / rate - time.monotonic()))
                if stop.is_set():
                    break
            name = names[n % len(names)]
            at, start = time.time(), time.monotonic()
            resp = send_raw(port, raws[name], timeout=30.0)
            took = time.monotonic() - start
            status, reason = (resp.status, resp.reason or "") if resp else (0, "no answer")
            with lock:
                done.append(Sent(name, status, reason, took, at))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 60)
    results.put(done)


@contextlib.contextmanager
def hostile_caller(
    port: int, token: str, connections: int, rate: float, max_seconds: float
) -> Iterator[list[Sent]]:
    """Run ``hostile_loop`` in a spawned process while the block runs; what it sent lands in the
    yielded list when the block ends."""
    ctx = multiprocessing.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=hostile_loop,
        args=(port, token, connections, rate, max_seconds, ready, stop, results),
        daemon=True,
    )
    proc.start()
    out: list[Sent] = []
    try:
        if not ready.wait(60):
            raise RuntimeError("the hostile caller did not start")
        yield out
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            out.extend(results.get(timeout=90))
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


# -- the rig in either Envoy mode ---------------------------------------------------------------


def to_http_mode(r: Rig, log: Any) -> None:
    """Switch a gRPC-mode rig to Envoy's HTTP-service mode: the same sidecar command plus
    ``--authz-http-address``, and an Envoy rendered from envoy-http.yaml with the same ports."""
    assert r.sidecar is not None
    args = [str(a) for a in r.sidecar.args]  # type: ignore[union-attr]  # the rig's command
    r.stop_sidecar()
    authz_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "EXTAUTHZ_"))}
    r.sidecar = subprocess.Popen(
        die_with_parent([*args, "--authz-http-address", f"127.0.0.1:{authz_port}"]),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    r.wait_ready()
    assert r.envoy.config is not None
    upstream = next(
        c for c in r.envoy.config["static_resources"]["clusters"] if c["name"] == "upstream"
    )
    sock = upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    upstream_port = int(sock["address"]["socket_address"]["port_value"])
    config = render_envoy_config(
        load_config(ENVOY_HTTP_YAML), EnvoyPorts(0, 0, authz_port, r.http_port, upstream_port)
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    for f in hcm["typed_config"]["http_filters"]:
        if f["name"] == "envoy.filters.http.ext_authz":
            uri = f"http://127.0.0.1:{authz_port}"
            f["typed_config"]["http_service"]["server_uri"]["uri"] = uri
    r.envoy.stop()
    r.envoy = EnvoyProcess(config, r.workdir, name="envoy-http", die_with_parent=True)
    r.envoy.start()
    r.envoy.wait_ready()


@contextlib.contextmanager
def mode_rig(mode: str, workdir: Path) -> Iterator[Rig]:
    """bench.hostile's rig (gRPC mode), switched to HTTP-service mode for ``mode == "http"``."""
    key = load_private_key(bench.WORK / "bench-key.pem")  # the key bench's tokens are signed by
    with rig(workdir, key=key) as r, r.log_path.open("ab") as log:
        if mode == "http":
            to_http_mode(r, log)
        yield r


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    kind: str  # one of KINDS
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    window: tuple[float, float]  # wall-clock span of the wrk run (its warm-up included)
    authz_cpu: float  # the sidecar's CPU, % of one core, over the window
    envoy_cpu: float
    authz_rss_mb: float  # the sidecar's resident memory right after the run
    busy: float  # the whole machine's CPU (every process, every core) busy, % over the window
    statuses: Counter[int] = field(default_factory=Counter)  # bystanders, from the access log
    hostile: list[Sent] = field(default_factory=list)

    @property
    def hostile_rate(self) -> float:
        """Hostile requests sent per second while wrk ran."""
        t0, t1 = self.window
        return sum(1 for h in self.hostile if t0 <= h.at <= t1) / (t1 - t0)

    @property
    def five_xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)


def wrk_counts(name: str) -> tuple[int, int]:
    """(non-2xx/3xx answers, socket errors) from the output run_wrk kept."""
    out = (bench.WORK / f"wrk-{name}.txt").read_text()
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return int(bad.group(1)) if bad else 0, sum(map(int, errs.groups())) if errs else 0


KINDS = ("quiet", "loud", "loud-401")
KIND_NOTES = {
    "quiet": "bystanders alone",
    "loud": "bystanders + the hostile caller (valid token: every body parsed)",
    "loud-401": "bystanders + the same caller and bodies, paced to the loud run's rate, with a "
    "malformed token: 401 before any body is read (carrying 8 MiB bodies without the body work)",
}
MALFORMED = "not-a-jwt"


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of every core so far (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def measure(
    r: Rig,
    mode: str,
    kind: str,
    round_: int,
    tokens: Path,
    args: argparse.Namespace,
    hostile_token: str,
    pace: float = 0.0,
) -> Run:
    """One wrk run of the bystanders (run_wrk: 2 s warm-up, then ``args.seconds``), with the
    hostile caller going during all of it for the loud kinds."""
    assert r.sidecar is not None and r.envoy.proc is not None
    pids = r.sidecar.pid, r.envoy.proc.pid
    hostile: list[Sent] = []
    with contextlib.ExitStack() as stack:
        if kind != "quiet":
            budget = args.seconds + 2 + 60  # wrk's warm-up and run, and slack; then it stops
            token = hostile_token if kind == "loud" else MALFORMED
            hostile = stack.enter_context(
                hostile_caller(r.port, token, args.hostile_connections, pace, budget)
            )
        cpu0 = [cpu_seconds(p) for p in pids]
        busy0 = machine_busy()
        t0, m0 = time.time(), time.monotonic()
        label = f"{mode}-{kind}-{round_}"
        res = bench.run_wrk(label, r.port, tokens, args.seconds, args.connections)
        took = time.monotonic() - m0
        cpu = [(cpu_seconds(p) - c) / took * 100 for p, c in zip(pids, cpu0, strict=True)]
        t1 = time.time()
        busy1 = machine_busy()
        busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * 100
        rss = rss_mb(pids[0])
    non_2xx, socket_errors = wrk_counts(label)
    return Run(mode, kind, round_, res.rps, res.p50_ms, res.p99_ms, non_2xx, socket_errors,
               (t0, t1), cpu[0], cpu[1], rss, busy, hostile=hostile)  # fmt: skip


ACCESS = re.compile(r'^\[(\S+)\] "(\S+) (\S+)" (\d+) ')


def access_statuses(log: Path, runs: list[Run]) -> None:
    """Fill each run's bystander status counts from Envoy's access log (read after Envoy stopped,
    so every line is flushed), by the wall-clock window each wrk run had."""
    for line in log.read_text(errors="replace").splitlines():
        m = ACCESS.match(line)
        if not m or m.group(3) != BYSTANDER_PATH:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        ts = at.timestamp()
        for run in runs:
            if run.window[0] - 0.5 <= ts <= run.window[1]:
                run.statuses[int(m.group(4))] += 1
                break


@dataclass
class ShapeCost:
    mode: str
    shape: str
    answer: str
    client_ms: float
    authz_cpu_ms: float
    envoy_cpu_ms: float


def shape_costs(r: Rig, mode: str, token: str, repeat: int) -> list[ShapeCost]:
    """Each shape sent alone, ``repeat`` times one after another: the median time to the answer
    and the mean CPU per request (/proc counts in clock ticks, 10 ms: a mean over several
    requests is finer than any one reading)."""
    assert r.sidecar is not None and r.envoy.proc is not None
    pids = r.sidecar.pid, r.envoy.proc.pid
    out = []
    sends = list(hostile_requests(token).items())
    sends.append(("tiny-objects, bad token", hostile_requests(MALFORMED)["tiny-objects"]))
    for name, raw in sends:
        wall, answers = [], Counter[str]()
        time.sleep(0.2)
        c0 = [cpu_seconds(p) for p in pids]
        for _ in range(repeat):
            start = time.monotonic()
            resp = send_raw(r.port, raw, timeout=30.0)
            wall.append((time.monotonic() - start) * 1000)
            answers[f"{resp.status} {resp.reason or ''}".strip() if resp else "no answer"] += 1
        time.sleep(0.2)  # both processes done with the last one
        cpu = [(cpu_seconds(p) - c) * 1000 / repeat for p, c in zip(pids, c0, strict=True)]
        text = ", ".join(f"{k} x{v}" for k, v in answers.most_common())
        out.append(ShapeCost(mode, name, text, statistics.median(wall), cpu[0], cpu[1]))
    return out


# -- setup and report ---------------------------------------------------------------------------


def prepare() -> Path:
    """Key, JWKS, the 1 KB body (a model the restricted role may use) and bystanders' tokens
    (bench's token maker: basic_user, the examples policy's internal_user with a model list)."""
    bench.WORK = OUT  # every bench helper reads and writes there
    OUT.mkdir(parents=True, exist_ok=True)
    if not (OUT / "bench-key.pem").exists():
        write_dev_key(OUT / "bench-key.pem", OUT / "bench-jwks.json")
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise: " + "lorem ipsum " * 75},
        ],
    }
    (OUT / "body.json").write_text(json.dumps(body))
    tokens = OUT / "tokens-bystanders.txt"
    bench.make_tokens(tokens, TOKENS, "bystander")
    return tokens


def envoy_version() -> str:
    out = subprocess.run([str(bench.BIN / "envoy"), "--version"], capture_output=True, text=True)
    m = re.search(r"/(\d+\.\d+\.\d+)/", out.stdout)
    return m.group(1) if m else "?"


def med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(med(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(
    runs: list[Run], costs: list[ShapeCost], args: argparse.Namespace, load: str, elapsed: float
) -> str:
    modes = list(dict.fromkeys(r.mode for r in runs))
    kinds = [k for k in KINDS if any(r.kind == k for r in runs)]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"Envoy {envoy_version()} --concurrency 1; bystanders wrk -t1 -c{args.connections} "
        f"-d{args.seconds}s (1 KB chat body, {TOKENS:,} tokens of a role with a model list); "
        f"hostile caller {args.hostile_connections} connections, {HOSTILE_SIZE:,}-byte bodies; "
        f"{args.rounds} round(s) (medians; ratios: median of same-round pairs, low-high); "
        f"load average before: {load}; {elapsed:.0f} s in all.",
        "",
        "| mode | run | rps | p50 ms | p99 ms | non-2xx | 5xx | socket errors | p99 / quiet p99 "
        "| hostile sent (/s) | authz CPU % | Envoy CPU % | machine busy % | authz RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in modes:
        quiet = {r.round: r for r in runs if r.mode == mode and r.kind == "quiet"}
        for kind in kinds:
            rs = [r for r in runs if r.mode == mode and r.kind == kind]
            ratio = hostile = ""
            if kind != "quiet":
                pairs = [r.p99_ms / quiet[r.round].p99_ms for r in rs if r.round in quiet]
                if pairs:
                    ratio = spread(pairs) + ("" if max(pairs) <= 2 else " **over 2x**")
                sent = sum(len(r.hostile) for r in rs)
                hostile = f"{sent} ({med([r.hostile_rate for r in rs]):.1f})"
            lines.append(
                f"| {mode} | {kind} | {med([r.rps for r in rs]):,.0f} "
                f"| {med([r.p50_ms for r in rs]):.2f} | {med([r.p99_ms for r in rs]):.2f} "
                f"| {sum(r.non_2xx for r in rs)} | {sum(r.five_xx for r in rs)} "
                f"| {sum(r.socket_errors for r in rs)} | {ratio} | {hostile} "
                f"| {med([r.authz_cpu for r in rs]):.0f} | {med([r.envoy_cpu for r in rs]):.0f} "
                f"| {med([r.busy for r in rs]):.0f} | {max(r.authz_rss_mb for r in rs):.0f} |"
            )
    lines += ["", *(f"- {k}: {KIND_NOTES[k]}" for k in kinds)]
    lines += [
        "",
        "The hostile caller's answers (status and x-extauthz-reason; median time to the answer, "
        "sending 8 MiB included):",
        "",
        "| mode | run | shape | sent | answers | median ms |",
        "|---|---|---|---:|---|---:|",
    ]
    for mode in modes:
        for kind in kinds[1:]:
            done = [h for r in runs if r.mode == mode and r.kind == kind for h in r.hostile]
            groups = [(shape, [h for h in done if h.shape == shape]) for shape in SHAPES]
            if kind != "loud":
                groups = [("all shapes", done)]
            for shape, mine in groups:
                answers = Counter(f"{h.status} {h.reason}".strip() for h in mine)
                text = ", ".join(f"{k} x{v}" for k, v in answers.most_common())
                took = med([h.seconds * 1000 for h in mine])
                lines.append(f"| {mode} | {kind} | {shape} | {len(mine)} | {text} | {took:,.0f} |")
    if costs:
        lines += [
            "",
            f"Each shape alone, {args.shape_repeat} requests one after another, no bystanders "
            "(client ms: median time to the answer; CPU: mean per request, all threads):",
            "",
            "| mode | shape | answers | client ms | authz CPU ms | Envoy CPU ms |",
            "|---|---|---|---:|---:|---:|",
        ]
        for c in costs:
            lines.append(
                f"| {c.mode} | {c.shape} | {c.answer} | {c.client_ms:,.0f} "
                f"| {c.authz_cpu_ms:,.0f} | {c.envoy_cpu_ms:,.0f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (after 2 s warm-up)")
    parser.add_argument("--mode", choices=["grpc", "http", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=1, help="quiet+loud pairs per mode")
    parser.add_argument("--connections", type=int, default=16, help="bystanders' connections")
    parser.add_argument("--hostile-connections", type=int, default=3)
    parser.add_argument(
        "--no-control", action="store_true", help="skip the loud-401 run (bodies carried, unread)"
    )
    parser.add_argument("--shape-repeat", type=int, default=5, help="0: skip the per-shape pass")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    started = time.monotonic()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    tokens = prepare()
    modes = ["grpc", "http"] if args.mode == "both" else [args.mode]
    kinds = [k for k in KINDS if not (args.no_control and k == "loud-401")]
    runs: list[Run] = []
    costs: list[ShapeCost] = []
    for mode in modes:
        workdir = OUT / mode
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        mine: list[Run] = []
        with mode_rig(mode, workdir) as r:
            hostile_token = r.token({"sub": "hostile", "roles": ["basic_user"]})
            for n in range(args.rounds):
                # quiet first, then last, ...; loud-401 follows loud (it is paced to its rate)
                order = kinds if n % 2 == 0 else [*kinds[1:], kinds[0]]
                pace = 0.0
                for kind in order:
                    run = measure(r, mode, kind, n + 1, tokens, args, hostile_token, pace)
                    if kind == "loud":
                        pace = run.hostile_rate
                    mine.append(run)
                    print(
                        f"{mode} round {n + 1}/{args.rounds} {kind}: {run.rps:,.0f} rps, "
                        f"p99 {run.p99_ms:.2f} ms, hostile sent {len(run.hostile)}",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(1)  # the sidecar finishes what the hostile caller left
            if args.shape_repeat:
                costs += shape_costs(r, mode, hostile_token, args.shape_repeat)
            if not r.alive():
                print(f"{mode}: the sidecar died:\n{r.log_tail()}", file=sys.stderr)
            log_path = r.envoy.log_path
        access_statuses(log_path, mine)
        runs += mine
    table = report(runs, costs, args, load, time.monotonic() - started)
    (OUT / "latest.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.server_instructions`: instructions per gRPC Check of the whole server process.

``bench.instructions`` counts our handler only; the choice of gRPC server (grpcio's threaded one
or grpc.aio) changes what grpcio itself does per call, which it cannot see. This runs a server
under callgrind (grpcio's C core, the Python interpreter and our code, every thread), sends it
checks one at a time from a client outside valgrind, and counts the whole process: once with
``PRIME`` calls and once with ``PRIME + --calls``, so start-up and shutdown cancel out and the
difference is the cost of the extra calls. Like ``bench.instructions``, the count does not move
with the machine's load, so it compares two builds (``--pythonpath`` another checkout) or two
servers exactly where throughput on a shared machine cannot. Calls are sequential: what batching
under load saves is not in it. Needs valgrind; several minutes.

    servers: floor-sync, floor-aio, floor-native (bench/floor.py), sidecar (extauthz serve, warm
    tokens), sidecar-native (the same with --grpc-server pygrpc-native), sidecar-null and
    sidecar-null-native (the same processes answering a constant: bench/null_sidecar.py);
    HTTP-service mode: http-floor (bench/http_floor.py), http-sidecar (serve
    --authz-http-address), sent the request Envoy forwards, on one kept-alive connection
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from harness.procs import free_port

ROOT = Path(__file__).resolve().parent
PRIME = 1200  # every warm token verified once, the allow answers cached


def requests(tokens: list[str], body: bytes) -> list[external_auth_pb2.CheckRequest]:
    """The CheckRequests Envoy sends for the bench's chat request (as bench.instructions)."""
    out = []
    for token in tokens:
        r = external_auth_pb2.CheckRequest()
        h = r.attributes.request.http
        h.method, h.path, h.host, h.scheme, h.protocol = (
            "POST", "/v1/chat/completions", "h", "http", "HTTP/1.1"
        )  # fmt: skip
        h.id = "12345678901234567890"
        headers = {
            ":authority": "h", ":path": h.path, ":method": "POST", ":scheme": "http",
            "authorization": "Bearer " + token, "content-type": "application/json",
            "content-length": str(len(body)),
            "x-request-id": "6f1c9b7e-1d3a-4a7e-9a55-5f7f6a1b2c3d",
        }  # fmt: skip
        for k, v in headers.items():
            h.headers[k] = v
        h.raw_body = body
        out.append(r)
    return out


def server_command(server: str, port: int, tmp: Path) -> list[str]:
    """The server's command line; a sidecar's state store lives in ``tmp`` (each build its own
    schema)."""
    if server.startswith("floor-"):
        return [sys.executable, "-m", "bench.floor", "--server", server[6:], f"127.0.0.1:{port}"]
    if server == "http-floor":
        return [sys.executable, "-m", "bench.http_floor", f"127.0.0.1:{port}"]
    grpc_port = free_port() if server == "http-sidecar" else port
    module = "bench.null_sidecar" if server.startswith("sidecar-null") else "extauthz.cli"
    command = [
        sys.executable, "-m", module, "serve", "--config", str(ROOT / "policy.yaml"),
        "--grpc-address", f"127.0.0.1:{grpc_port}", "--http-address", "",
        "--state", f"sqlite:///{tmp / 'state.db'}", "--drain-delay", "0",
        "--log-level", "warning",
    ]  # fmt: skip
    if server == "http-sidecar":
        command += ["--authz-http-address", f"127.0.0.1:{port}"]
    if server.endswith("-native"):
        command += ["--grpc-server", "pygrpc-native"]
    return command


def grpc_checks(
    server: str, port: int, calls: int, reqs: list[external_auth_pb2.CheckRequest]
) -> None:
    """``calls`` gRPC checks, one at a time."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=600)
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for i in range(calls):
            answer = stub.Check(reqs[i % len(reqs)], timeout=120)
            if answer.status.code != 0:
                raise RuntimeError(f"{server}: check {i} was denied: {answer}")


def http_checks(port: int, calls: int, tokens: list[str], body: bytes) -> None:
    """``calls`` checks as Envoy's HTTP-service mode forwards the chat request, one at a time."""
    deadline = time.monotonic() + 600
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connection.connect()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        for i in range(calls):
            headers = {
                "authorization": "Bearer " + tokens[i % len(tokens)],
                "content-type": "application/json",
                "x-request-id": "6f1c9b7e-1d3a-4a7e-9a55-5f7f6a1b2c3d",
            }
            connection.request("POST", "/extauthz/v1/chat/completions", body, headers)
            answer = connection.getresponse()
            answer.read()
            while i == 0 and answer.status == 503 and time.monotonic() < deadline:
                time.sleep(0.5)  # keys not fetched yet (valgrind starts slowly): ask again
                connection.request("POST", "/extauthz/v1/chat/completions", body, headers)
                answer = connection.getresponse()
                answer.read()
            if answer.status != 200:
                raise RuntimeError(f"HTTP check {i} answered {answer.status}")
    finally:
        connection.close()


def total(
    server: str,
    calls: int,
    reqs: list[external_auth_pb2.CheckRequest],
    env: dict[str, str],
    http_load: tuple[list[str], bytes],
) -> int:
    """Instructions of the whole server process, start to exit, having answered ``calls``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               *server_command(server, port, Path(tmp))]  # fmt: skip
        # cwd outside any checkout: `python -m` puts the working directory first on sys.path,
        # which would shadow --pythonpath when run from a checkout's root
        proc = subprocess.Popen(
            cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            if server.startswith("http-"):
                http_checks(port, calls, *http_load)
            else:
                grpc_checks(server, port, calls, reqs)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=600)
        totals = re.search(rb"^(?:summary|totals):\s+(\d+)", out.read_bytes(), re.M)
        if totals is None:
            raise RuntimeError(f"callgrind wrote no totals:\n{err[-2000:].decode()}")
        return int(totals.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--servers", default="floor-sync,floor-aio,sidecar")
    parser.add_argument(
        "--pythonpath", default="", help="run the servers from this checkout (e.g. an old build)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    from bench.http_mode import prepare

    warm, _ = prepare(cold_tokens=50_000)
    work = warm.parent
    tokens = warm.read_text().split()
    reqs = requests(tokens, (work / "body.json").read_bytes())
    env = {
        **os.environ,
        "JWT_PUBLIC_KEY_URL": f"file://{work / 'bench-jwks.json'}",
        "PYTHONPATH": args.pythonpath or str(ROOT.parent),
    }
    print(f"| server ({args.pythonpath or 'this checkout'}) | instructions per Check |")
    print("|---|---:|")
    for server in args.servers.split(","):
        started = time.monotonic()
        body = (work / "body.json").read_bytes()
        base = total(server, PRIME, reqs, env, (tokens, body))
        more = total(server, PRIME + args.calls, reqs, env, (tokens, body))
        print(f"| {server} | {(more - base) / args.calls:,.0f} |", flush=True)
        print(f"  ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

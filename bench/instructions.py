"""`python -m bench.instructions`: CPU instructions per gRPC Check, counted by valgrind.

Throughput on this shared two-core machine moves ±10-20 % between runs; instruction counts do
not (callgrind counts the same total for the same code and input whatever else is running).
So this is the figure to compare before and after a change to the request path:

    warm     a cached token (1,000 in rotation): path, credential, cache, decision, model
             read, the reused allow answer, metrics
    cold     a new token each call: the same plus an RS256 signature check and a new answer
    floor    what the trivial floor server does per call (parse the request, answer a constant)

Each figure covers what the gRPC handler does per call, from the request bytes to the response
bytes: ``CheckRequest.FromString`` + ``AuthorizationService.Check`` (the sync server's handler,
called on the counting thread; it answers the CheckResponse's bytes, so there is no
``SerializeToString`` after it as there is for the floor).
grpcio's own per-call work (the same for the floor and the sidecar) is not included.
Needs valgrind (Debian's package); takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent

SETUP = """
import itertools, json, os
os.environ["JWT_PUBLIC_KEY_URL"] = "file://{jwks}"
from envoy.service.auth.v3 import external_auth_pb2 as ea
from extauthz.config.loader import load_policy_file
from extauthz.identity.jwks import JwksSource
from extauthz.identity.keyring import KeyRing
from extauthz.identity.verifier import TokenVerifier
from extauthz.authorizer import Authorizer
from extauthz.envoy.grpc_service import AuthorizationService

body = open("{body}", "rb").read()

def request(token):
    r = ea.CheckRequest()
    h = r.attributes.request.http
    h.method, h.path, h.host = "POST", "/v1/chat/completions", "h"
    h.scheme, h.protocol = "http", "HTTP/1.1"
    h.id = "12345678901234567890"
    for k, v in {{":authority": "h", ":path": h.path, ":method": "POST", ":scheme": "http",
                 "authorization": "Bearer " + token, "content-type": "application/json",
                 "content-length": str(len(body)), "x-forwarded-proto": "http",
                 "x-request-id": "6f1c9b7e-1d3a-4a7e-9a55-5f7f6a1b2c3d"}}.items():
        h.headers[k] = v
    h.raw_body = body
    return r.SerializeToString()

loaded = load_policy_file("{policy}", os.environ)
policy, key_settings = loaded.policy, loaded.settings.keys
keys = JwksSource(key_settings.urls, fetch=None)
keys.ring = KeyRing.from_jwks([json.load(open("{jwks}"))])
verifier = TokenVerifier(keys, policy.token_rules, cache_size=key_settings.token_cache_size)
service = AuthorizationService(Authorizer(policy, verifier, on_identity=lambda *_: None))
tokens = open("{tokens}").read().split()[:{count}]
requests = itertools.cycle([request(t) for t in tokens])

def check(raw):  # no event loop: a check that had to wait would be refused (a 500), not allowed
    response = service.Check(ea.CheckRequest.FromString(raw), None)  # the wire bytes
    assert response.startswith(b"\\n\\x00"), response  # status first, code 0 (an allow)
    return response

OK = ea.CheckResponse()
OK.status.code = 0
def floor(raw):
    ea.CheckRequest.FromString(raw)
    return OK.SerializeToString()
{prime}
"""

PROGRAM = """
import functools
{setup}
def one(acc, _):
    {stmt}
    return acc
functools.reduce(one, range({calls}), 0)
"""


def count(setup: str, stmt: str, calls: int) -> float:
    """Instructions per execution of ``stmt``: only code under ``functools.reduce`` is counted."""
    program = PROGRAM.format(setup=setup, stmt=stmt, calls=calls)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--collect-atstart=no",
             "--toggle-collect=functools_reduce", f"--callgrind-out-file={out}",
             sys.executable, "-c", program],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        if run.returncode != 0 or not out.exists():
            raise RuntimeError(f"callgrind failed:\n{run.stderr[-2000:]}")
        totals = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
    if totals is None:
        raise RuntimeError("callgrind wrote no totals")
    return int(totals.group(1)) / calls


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    from bench.http_mode import prepare  # key, JWKS, body and token files in bench/results

    warm, cold = prepare(cold_tokens=50_000)  # the files `python -m bench` uses
    work = warm.parent
    common = {
        "jwks": work / "bench-jwks.json",
        "body": work / "body.json",
        "policy": ROOT / "policy.yaml",
    }
    # warm: every token verified once before counting; cold: none is.
    prime = "for _ in range({n}):\n    check(next(requests))"
    warm_setup = SETUP.format(tokens=warm, count=1000, prime=prime.format(n=1000), **common)
    cold_setup = SETUP.format(
        tokens=cold, count=args.calls + 100, prime=prime.format(n=50), **common
    )
    floor_setup = SETUP.format(tokens=warm, count=10, prime="", **common)
    scenarios = {
        "warm": (warm_setup, "check"),
        "cold": (cold_setup, "check"),
        "floor": (floor_setup, "floor"),
    }
    print("| per call | instructions |")
    print("|---|---:|")
    for name, (setup, fn) in scenarios.items():
        n = count(setup, f"{fn}(next(requests))", args.calls)
        print(f"| {name} | {n:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("EXTAUTHZ_LOG_LEVEL", "warning")
    sys.exit(main())

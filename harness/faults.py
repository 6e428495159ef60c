"""`python -m bench.faults`: fault runs against a real Envoy and a subprocess `extauthz serve`.

  idp-down     the IdP goes away: cached keys keep working, an unknown kid is a 401 within the
               ext_authz deadline; the IdP comes back with a new key: the new key works
  slow-idp     the IdP answers after 5 s: every check still answers within ~1 s (Envoy's
               ext_authz timeout), 401 for an unknown kid, never a 200 for an unverified token
  sidecar-kill the sidecar is SIGKILLed under load: Envoy answers 503 (fail closed), never a 200
               without a valid token; a restarted sidecar is SERVING (gRPC readiness) and allows
               valid tokens again (valid tokens also get 503 while it is down: correct)
  bad-policy   the policy file is replaced by garbage (broken YAML, binary, empty, a schema
               error): the old policy keeps deciding, /readyz shows the error,
               extauthz_policy_last_reload_ok is 0; restoring the file sets it back to 1
  store-down   covered by tests/state/test_store_down.py (PostgreSQL cut by a TCP proxy)

Each check prints one PASS/FAIL line; exit code 0 when all pass. `--only NAME` runs one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz.devtokens import new_private_key
from harness.hostile import ALICE, Rig, rig
from tests.integration.harness import Reply, chat_body, request, wait_until

ENVOY_TIMEOUT = 1.0  # envoy.yaml: ext_authz grpc_service timeout
SLACK = 0.35  # scheduling slack on a busy 2-core machine
Check = tuple[str, bool, str]


def call(r: Rig, token: str | None, model: str = "gpt-4o-mini", timeout: float = 10.0) -> Reply:
    headers = [("Content-Type", "application/json")]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    try:
        return request(r.port, "POST", "/v1/chat/completions", headers, chat_body(model), timeout)
    except OSError as exc:  # connection refused/reset: report as status 0
        return Reply(0, {"error": str(exc)}, b"")


def timed(r: Rig, token: str | None, model: str = "gpt-4o-mini") -> tuple[Reply, float]:
    start = time.monotonic()
    reply = call(r, token, model)
    return reply, time.monotonic() - start


def fresh(r: Rig, key: Any = None) -> str:
    """A token never seen before (not in the sidecar's token cache)."""
    return r.token({**ALICE, "jti": f"f{random.random()}"}, key=key)


# -- (a) IdP down and back ----------------------------------------------------------------------


def idp_down_and_back(r: Rig) -> list[Check]:
    out: list[Check] = []
    cached = fresh(r)
    out.append(
        ("idp-down: valid token before the outage is 200", call(r, cached).status == 200, "")
    )
    r.loop.run(r.idp.stop())
    replies = [call(r, fresh(r)) for _ in range(5)] + [call(r, cached)]
    codes = [x.status for x in replies]
    out.append(
        (
            "idp-down: cached keys keep verifying (new and cached tokens 200)",
            all(c == 200 for c in codes),
            f"statuses {codes}",
        )
    )
    new_key = new_private_key()
    time.sleep(0.6)  # past jwks_refetch_interval_seconds (0.5): the unknown kid refetches
    unknown = [timed(r, fresh(r, new_key)) for _ in range(3)]
    ok = all(x.status == 401 and x.reason == "unknown_key" for x, _ in unknown)
    worst = max(t for _, t in unknown)
    out.append(
        (
            "idp-down: unknown kid is 401 unknown_key within the deadline",
            ok and worst <= ENVOY_TIMEOUT + SLACK,
            f"{[(x.status, x.reason) for x, _ in unknown]}, worst {worst * 1000:.0f} ms",
        )
    )
    r.idp.publish(r.key, new_key)
    r.loop.run(r.idp.start())
    reply, took = wait_until(lambda: call(r, fresh(r, new_key)), lambda x: x.status == 200, 10)
    out.append(
        (
            "idp-back: a token signed with the new key is allowed",
            reply.status == 200,
            f"after {took:.1f} s, {reply.status} {reply.reason}",
        )
    )
    out.append(("idp-back: old key still allowed", call(r, fresh(r)).status == 200, ""))
    return out


# -- (b) slow IdP -------------------------------------------------------------------------------


def slow_idp(r: Rig) -> list[Check]:
    out: list[Check] = []
    r.idp.delay = 5.0
    try:
        time.sleep(0.6)  # past the refetch interval
        results: list[tuple[Reply, float]] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            for _ in range(n):
                got = timed(r, fresh(r, new_private_key()))
                with lock:
                    results.append(got)

        threads = [threading.Thread(target=worker, args=(3,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted({(x.status, x.reason) for x, _ in results}, key=str)
        worst = max(t for _, t in results)
        out.append(
            (
                "slow-idp: unknown kid answered 401 (never 200, never 503)",
                all(x.status == 401 for x, _ in results),
                f"{len(results)} requests: {statuses}",
            )
        )
        out.append(
            (
                "slow-idp: every answer within Envoy's 1 s deadline (+slack)",
                worst <= ENVOY_TIMEOUT + SLACK,
                f"worst {worst * 1000:.0f} ms",
            )
        )
        known = [timed(r, fresh(r)) for _ in range(3)]
        out.append(
            (
                "slow-idp: known-key tokens still 200 and fast",
                all(x.status == 200 and t < ENVOY_TIMEOUT for x, t in known),
                f"{[(x.status, round(t * 1000)) for x, t in known]} ms",
            )
        )
    finally:
        r.idp.delay = 0.0
    return out


# -- (c) sidecar killed under load --------------------------------------------------------------


@dataclass
class Load:
    """Background requests (valid and tokenless), bounded in count and time."""

    r: Rig
    max_requests: int = 20_000
    max_seconds: float = 60.0
    results: list[tuple[float, bool, int, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, workers: int = 4) -> None:
        valid = [self.r.token({**ALICE, "jti": f"load{i}"}) for i in range(20)]
        deadline = time.monotonic() + self.max_seconds

        def run(w: int) -> None:
            i = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                if len(self.results) >= self.max_requests:
                    return
                good = i % 2 == 0
                tok = valid[(i + w) % len(valid)] if good else None
                reply = call(self.r, tok, timeout=5)
                self.results.append((time.monotonic(), good, reply.status, reply.reason))
                i += 1

        self._threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def readiness(r: Rig) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{r.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service="readiness"), timeout=3)
        return int(resp.status)


def sidecar_killed(r: Rig, down_seconds: float = 2.0) -> list[Check]:
    out: list[Check] = []
    load = Load(r)
    load.start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    r.kill_sidecar()
    time.sleep(down_seconds)
    restart_at = time.monotonic()
    r.start_sidecar()
    ready_at = time.monotonic()
    # /readyz is computed on request; the gRPC readiness status follows within 0.2 s.
    serving_code, lag = wait_until(
        lambda: readiness(r), lambda c: c == health_pb2.HealthCheckResponse.SERVING, 3
    )
    serving = serving_code == health_pb2.HealthCheckResponse.SERVING
    time.sleep(1.0)
    load.stop()
    res = load.results
    holes = [x for x in res if not x[1] and x[2] == 200]
    out.append(
        (
            "kill: never a 200 without a token",
            not holes,
            f"{len(res)} requests, {len(holes)} tokenless 200s",
        )
    )
    down = [x for x in res if killed_at + 0.3 < x[0] < restart_at]
    down_codes = sorted({(x[2], x[3]) for x in down}, key=str)
    out.append(
        (
            "kill: while down, Envoy answers 503 (fail closed)",
            bool(down) and all(x[2] == 503 and x[3] is None for x in down),
            f"{len(down)} requests while down: {down_codes}",
        )
    )
    odd = [x for x in res if x[2] not in (200, 401, 503)]
    out.append(
        (
            "kill: no other statuses (200/401, 503 while down)",
            not odd,
            f"{sorted({(x[2], x[3]) for x in odd}, key=str)}" if odd else "",
        )
    )
    out.append(
        (
            "kill: restarted sidecar's gRPC readiness is SERVING",
            serving,
            f"/readyz 200 {ready_at - restart_at:.1f} s after the restart, gRPC {lag:.2f} s later",
        )
    )
    after = [x for x in res if x[0] > ready_at + 0.2 and x[1]]
    out.append(
        (
            "kill: after the restart valid tokens are 200 again",
            bool(after) and all(x[2] == 200 for x in after),
            f"{len(after)} valid requests after: {sorted({x[2] for x in after})}",
        )
    )
    return out


# -- (d) policy replaced by garbage -------------------------------------------------------------

GARBAGE = {
    "broken-yaml": b"general_settings: [this is not: a policy\n",
    "binary": bytes(random.Random(4).randbytes(512)),
    "schema-error": b"general_settings:\n  enable_jwt_auth: maybe\n  litellm_jwtauth: 12\n",
    "empty": b"",
}


def bad_policy(r: Rig, variants: tuple[str, ...] = tuple(GARBAGE)) -> list[Check]:
    out: list[Check] = []
    token = fresh(r)
    for name in variants:
        r.policy.write_text(GARBAGE[name].decode("latin-1"))
        (status, body), took = wait_until(
            r.readyz, lambda x: bool(x[1].get("policy", {}).get("reload_error")), 5
        )
        error = body.get("policy", {}).get("reload_error")
        gauge = r.metric("extauthz_policy_last_reload_ok")
        decisions = (call(r, token).status, call(r, token, "gpt-4o").status, call(r, None).status)
        out.append(
            (
                f"bad-policy[{name}]: refused, shown in /readyz, gauge 0, old policy decides",
                bool(error) and status == 200 and gauge == 0 and decisions == (200, 403, 401),
                f"readyz {status} error={str(error)[:80]!r} gauge={gauge} "
                f"decisions(mini,4o,none)={decisions}",
            )
        )
        r.policy.write(r.policy_data)  # fixed again (the policy in force)
        (status, body), took = wait_until(
            r.readyz, lambda x: x[1].get("policy", {}).get("reload_error", "") is None, 5
        )
        gauge = r.metric("extauthz_policy_last_reload_ok")
        again, took2 = wait_until(lambda: call(r, fresh(r)), lambda x: x.status == 200, 3)
        out.append(
            (
                f"bad-policy[{name}]: fixed again, error cleared, gauge 1, valid token 200",
                body.get("policy", {}).get("reload_error", "") is None
                and gauge == 1
                and again.status == 200,
                f"after {took:.1f} s, gauge={gauge}, valid token {again.status} {again.reason}"
                f" after {took2:.1f} s",
            )
        )
    return out


RUNS: dict[str, Callable[[Rig], list[Check]]] = {
    "idp-down": idp_down_and_back,
    "slow-idp": slow_idp,
    "sidecar-kill": sidecar_killed,
    "bad-policy": bad_policy,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(RUNS), action="append")
    args = parser.parse_args()
    checks: list[Check] = []
    for name in args.only or list(RUNS):
        start = time.monotonic()
        with rig() as r:  # a fresh stack per run: runs do not disturb each other
            got = RUNS[name](r)
            alive = r.alive()
        got.append((f"{name}: sidecar process alive at the end", alive, ""))
        for check, ok, detail in got:
            print(f"{'PASS' if ok else 'FAIL'} {check}" + (f" ({detail})" if detail else ""))
        print(f"   ({name} took {time.monotonic() - start:.1f} s)")
        checks += got
    print("PASS store-down: covered by tests/state/test_store_down.py (not run here)")
    ok = all(c[1] for c in checks)
    print("PASS faults: all checks" if ok else "FAIL faults: see FAIL lines above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.soak`: a long run at half of the measured saturation, watching memory.

Real Envoy (from envoy.yaml) -> subprocess `extauthz serve` -> demo upstream. First wrk measures
saturation for 5 s (-t1 -c32, 1,000 rotating valid tokens, POST /v1/chat/completions). wrk has no
rate option, so the soak uses wrk's Lua `delay()` hook: each of C connections waits a fixed delay
after each answer, calibrated once so that rps is about half the saturation. The sidecar's RSS is
sampled every 10 s.

Checks: zero errors (non-2xx answers and socket errors), RSS growth < 10 % from the first sample
after the warm-up to the last. Default 5 minutes; not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.hostile import ALICE, Rig, rig
from tests.integration.harness import chat_body

LUA = """
local reqs = {}
local i = 0
local pause = 0
init = function(args)
  local bf = assert(io.open(args[2], "r"))
  local body = bf:read("*a")
  bf:close()
  pause = tonumber(args[3] or "0")
  for line in io.lines(args[1]) do
    local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. line}
    reqs[#reqs + 1] = wrk.format("POST", "/v1/chat/completions", headers, body)
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
delay = function()
  return pause
end
"""


def wrk_args(r: Rig, work: Path, seconds: float, conns: int, delay_ms: int) -> list[str]:
    return [
        "wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "5s",
        "-s", str(work / "soak.lua"), f"http://127.0.0.1:{r.port}", "--",
        str(work / "tokens.txt"), str(work / "body.json"), str(delay_ms),
    ]  # fmt: skip


def parse(out: str) -> tuple[float, int, int]:
    """(rps, requests, errors)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    return (
        float(rps.group(1)) if rps else 0.0,
        int(total.group(1)) if total else 0,
        errors,
    )


def wrk(r: Rig, work: Path, seconds: float, conns: int, delay_ms: int) -> tuple[float, int, int]:
    args = wrk_args(r, work, seconds, conns, delay_ms)
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse(done.stdout)


def soak(seconds: float, conns: int, warmup: float, every: float) -> bool:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, rig(Path(tmp)) as r:
        work = Path(tmp)
        (work / "soak.lua").write_text(LUA)
        (work / "body.json").write_bytes(chat_body("gpt-4o-mini", "lorem ipsum " * 80))
        tokens = [r.token({**ALICE, "sub": f"soak-{i}", "jti": str(i)}) for i in range(1000)]
        (work / "tokens.txt").write_text("\n".join(tokens) + "\n")
        sat, _, sat_err = wrk(r, work, 5, 32, 0)
        target = sat / 2
        delay = max(0, round(conns * 1000 / target))
        got, _, _ = wrk(r, work, 3, conns, delay)  # calibrate once: rps = C / (latency + delay)
        latency_ms = max(0.0, conns * 1000 / max(got, 1e-9) - delay)
        delay = max(0, round(conns * 1000 / target - latency_ms))
        print(
            f"saturation {sat:,.0f} rps ({sat_err} errors); target {target:,.0f} rps: "
            f"{conns} connections, {delay} ms pause after each answer"
        )
        proc = subprocess.Popen(
            wrk_args(r, work, seconds, conns, delay), stdout=subprocess.PIPE, text=True
        )
        start = time.monotonic()
        samples: list[tuple[float, float]] = []
        try:
            while proc.poll() is None and time.monotonic() - start < seconds + 30:
                if r.alive():
                    samples.append((time.monotonic() - start, r.rss_mb()))
                    print(f"  t={samples[-1][0]:5.0f} s  RSS {samples[-1][1]:6.1f} MB", flush=True)
                time.sleep(every)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        alive = r.alive()
        if alive:
            samples.append((time.monotonic() - start, r.rss_mb()))
            print(f"  t={samples[-1][0]:5.0f} s  RSS {samples[-1][1]:6.1f} MB (end)")
    rps, total, errors = parse(out)
    base = next((mb for t, mb in samples if t >= warmup), samples[0][1] if samples else 0.0)
    end = samples[-1][1] if samples else 0.0
    growth = (end - base) / base if base else float("inf")
    print(
        f"soak: {total:,} requests in {seconds:.0f} s = {rps:,.0f} rps "
        f"({rps / sat:.0%} of saturation), {os.cpu_count()} cores"
    )
    checks = [
        ("alive: sidecar process still running", alive, ""),
        ("errors: zero non-2xx and socket errors", errors == 0 and total > 0, f"{errors} errors"),
        (
            "rss: growth < 10 % from the first sample after warm-up to the end",
            growth < 0.10,
            f"{base:.1f} -> {end:.1f} MB, {growth:+.1%}",
        ),
    ]
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))
    ok = all(c[1] for c in checks)
    print("PASS soak: all checks" if ok else "FAIL soak: see FAIL lines above")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=20, help="seconds before the RSS baseline")
    parser.add_argument("--every", type=float, default=10, help="RSS sampling interval (s)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("FAIL soak: wrk is not installed (apt-get install wrk)")
        return 1
    return 0 if soak(args.seconds, args.connections, args.warmup, args.every) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The short hostile-input run (harness/hostile.py, a few hundred requests, fixed seed): a real
Envoy from envoy.yaml, `extauthz serve` as a subprocess. `python -m bench.hostile` is the long
one."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.hostile import run_hostile

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


def test_hostile_requests_never_break_the_sidecar(tmp_path: Path) -> None:
    """Alive, no 5xx, only 200/400/401/403/413 from the sidecar, fail closed, no spoofed
    identity upstream, RSS steady, no credential in its log, no traceback."""
    report = run_hostile(
        count=300,
        seed=1234,
        workers=4,
        warmup=60,
        max_seconds=60,
        max_request_bytes=16384,  # cut bodies (beyond the limit) stay cheap
        big_every=15,
        workdir=tmp_path,
    )
    print("\n" + "\n".join(report.summary))
    assert report.ok, "\n".join(report.failures)

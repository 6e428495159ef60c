"""The short junk-memory run (harness/junk_memory.py): a real `extauthz serve` subprocess sent
6,000 gRPC checks with distinct long paths and no valid credential. `python -m bench.junk_memory`
is the long one (100,000 requests, limit 20 MB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.junk_memory import run_junk

pytestmark = pytest.mark.slow


def test_junk_requests_cost_the_sidecar_no_memory(tmp_path: Path) -> None:
    """Issue 13: each junk path was remembered, ~110 MB for this run; the limit has a wide
    margin both ways (the fixed sidecar grows by a few MB, RSS noise included)."""
    result = run_junk(count=6000, warmup=300, in_flight=16, seed=5, workdir=tmp_path)
    print("\n" + "\n".join(result.summary(16, 5)))
    failed = [f"{name}: {detail}" for name, ok, detail in result.checks(30.0) if not ok]
    assert not failed, "\n".join(failed)

"""The quick fault runs of harness/faults.py (one Envoy + subprocess sidecar for the module).

Store down and back is covered by tests/state/test_store_down.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Check, bad_policy, idp_down_and_back, sidecar_killed, slow_idp
from harness.hostile import Rig, rig

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(tmp_path_factory.mktemp("faults")) as r:
        yield r


def judge(checks: list[Check]) -> None:
    print()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'} {name} ({detail})")
    failed = [f"{name}: {detail}" for name, ok, detail in checks if not ok]
    assert not failed, "\n".join(failed)


def test_garbage_policy_keeps_the_old_one(stack: Rig) -> None:
    """Broken YAML, binary bytes, a schema error: refused, shown in /readyz, gauge 0; fixed → 1."""
    judge(bad_policy(stack, ("broken-yaml", "binary", "schema-error")))


def test_empty_policy_file_keeps_the_old_one(tmp_path: Path) -> None:
    """An empty policy file (a truncated write, a mis-mounted ConfigMap) is garbage too.

    Fails today (product bug): extauthz/config/yamlfile.py turns an empty document into {}
    (`if data is None: data = {}`), which loads as a valid policy with JWT auth off, so the
    reload REPLACES the good policy: every request gets 401, /readyz stays 200 with no
    reload_error and extauthz_policy_last_reload_ok stays 1. It should be refused like any
    other broken edit (last good policy kept, error shown, gauge 0).
    """
    with rig(tmp_path) as own:  # its own stack: today the empty file breaks the keys too
        judge(bad_policy(own, ("empty",)))


def test_idp_down_and_back(stack: Rig) -> None:
    judge(idp_down_and_back(stack))


def test_slow_idp_never_stalls_a_check(stack: Rig) -> None:
    judge(slow_idp(stack))


def test_sidecar_killed_under_load(stack: Rig) -> None:
    judge(sidecar_killed(stack, down_seconds=1.0))
    assert stack.alive()

"""Policy hot reload end to end: a ConfigMap-style file swap changes decisions through Envoy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.harness import (
    LoopThread,
    Reply,
    Stack,
    set_role_models,
    start_stack,
    wait_until,
)

pytestmark = pytest.mark.envoy

ALICE = {"sub": "alice", "roles": ["basic_user"]}
RELOAD_DEADLINE = 3.0  # the watcher polls every second (extauthz.reload_interval_seconds)


@pytest.fixture(scope="module")
def stack(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(loop_thread, tmp_path_factory.mktemp("reload"), key)
    yield s
    s.close()


def ask(stack: Stack, model: str) -> Reply:
    return stack.call(token=stack.token(ALICE), model=model)


def test_policy_edit_applies_within_seconds(stack: Stack) -> None:
    """Swapping in a policy that denies a model denies it on the next requests (~1 s)."""
    assert ask(stack, "gpt-4o-mini").status == 200
    stack.policy.write(set_role_models(stack.policy_data, "internal_user", ["claude-sonnet"]))
    reply, elapsed = wait_until(lambda: ask(stack, "gpt-4o-mini"), lambda r: r.status != 200, 5)
    assert reply.status == 403, str(reply)
    assert reply.reason == "model_not_allowed"
    assert elapsed < RELOAD_DEADLINE
    print(f"\npolicy reload picked up after {elapsed:.2f} s")
    assert ask(stack, "claude-sonnet").status == 200


def test_broken_policy_keeps_last_good_one(stack: Stack) -> None:
    """A broken edit is refused: the last good policy keeps deciding; /readyz shows the error."""
    good = set_role_models(stack.policy_data, "internal_user", ["gpt-4o"])
    apply(stack, good, "gpt-4o")
    stack.policy.write_text("general_settings: [this is not: a policy\n")
    ready, _ = wait_until(stack.readyz, lambda r: r.json()["policy"]["reload_error"] is not None, 5)
    assert ready.status == 200, str(ready)  # still serving, with the last good policy
    assert "not valid YAML" in ready.json()["policy"]["reload_error"]
    assert ask(stack, "gpt-4o").status == 200
    assert ask(stack, "gpt-4o-mini").status == 403

    fixed = set_role_models(stack.policy_data, "internal_user", ["gpt-4o", "gpt-4o-mini"])
    apply(stack, fixed, "gpt-4o-mini")  # a new good edit applies and clears the error
    assert stack.readyz().json()["policy"]["reload_error"] is None


def test_reverting_a_broken_edit_clears_the_reload_error(stack: Stack) -> None:
    """Reverting a broken edit to the policy in force clears /readyz's reload_error.

    Fails today (watcher bug): the reverted file has the digest of the applied policy, so
    PolicyWatcher.check_once treats it as "no change" and keeps the stale error (and the
    extauthz_policy_last_reload_ok gauge at 0) until some other edit.
    """
    good = set_role_models(stack.policy_data, "internal_user", ["claude-sonnet"])
    apply(stack, good, "claude-sonnet")
    stack.policy.write_text("general_settings: [this is not: a policy\n")
    wait_until(stack.readyz, lambda r: r.json()["policy"]["reload_error"] is not None, 5)
    stack.policy.write(good)  # `kubectl apply` of the previous ConfigMap
    ready, _ = wait_until(stack.readyz, lambda r: r.json()["policy"]["reload_error"] is None, 3)
    assert ready.json()["policy"]["reload_error"] is None, str(ready)


def apply(stack: Stack, policy: dict[str, Any], model: str) -> None:
    """Write ``policy`` and wait until ``model``, which it allows alice, is allowed."""
    stack.policy.write(policy)
    reply, _ = wait_until(lambda: ask(stack, model), lambda r: r.status == 200, 5)
    assert reply.status == 200, str(reply)

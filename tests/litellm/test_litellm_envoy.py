"""Issue 12: a real LiteLLM proxy behind Envoy, with the sidecar deciding, in both check modes.

LiteLLM 1.108.7 runs from the same config.yaml the sidecar reads as its policy (harness.py). Its
deployments answer with ``MARKER:<model_name>``, so each reply shows which model ran; the attack
table (cases.py) sends every request that can make LiteLLM run ``openai-gpt-4o`` for a caller
who may not use it, and the controls show the setup can tell: the granted model answers through
the same stack, and the master key makes each live attack run a forbidden model.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.harness import LoopThread
from tests.litellm.cases import (
    CASES,
    FORBIDDEN,
    GRANTED,
    Case,
    batch,
    batch_lines,
    chat,
    upload,
)
from tests.litellm.harness import (
    MASTER_KEY,
    MODES,
    TEAM,
    USER,
    Body,
    Caller,
    Front,
    LiteLLMStack,
    Outcome,
    start_front,
    start_litellm_stack,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiteLLMStack]:
    """One LiteLLM (slow to start), IdP, provider trap and sidecar for the module."""
    s = start_litellm_stack(loop_thread, tmp_path_factory.mktemp("litellm"), key)
    yield s
    s.close()


@pytest.fixture(scope="module", params=MODES)
def front(request: pytest.FixtureRequest, stack: LiteLLMStack) -> Iterator[Front]:
    """Envoy from envoy.yaml (gRPC checks) or envoy-http.yaml (HTTP-service checks)."""
    f = start_front(request.param, stack, stack.workdir)
    yield f
    f.envoy.stop()


@pytest.fixture(autouse=True)
def _litellm_log_in_failures(request: pytest.FixtureRequest, stack: LiteLLMStack) -> None:
    stack.litellm.mark_log(request.node)


def assert_safe(outcome: Outcome, caller: Caller) -> None:
    """Refused by the sidecar, or answered by LiteLLM without running or calling a model the
    caller may not use."""
    if outcome.refused:
        return
    assert outcome.from_litellm, f"neither refused by the sidecar nor from LiteLLM: {outcome}"
    bad = outcome.forbidden_for(caller)
    assert not bad, f"allowed, and LiteLLM ran {', '.join(sorted(bad))} for the {caller}: {outcome}"


# -- controls -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "path", "body", "model"),
    GRANTED,
    ids=[f"{c}-{p.strip('/').replace('/', '-')}" for c, p, _, _ in GRANTED],
)
def test_granted_model_answers(
    front: Front, stack: LiteLLMStack, caller: Caller, path: str, body: Body, model: str
) -> None:
    outcome = front.send(stack.token(caller), path, body)
    assert outcome.reply.status == 200 and outcome.from_litellm, str(outcome)
    assert outcome.answered == {model}, str(outcome)
    assert not outcome.called, str(outcome)


@pytest.mark.parametrize("caller", [USER, TEAM], ids=str)
def test_forbidden_body_model_is_refused(front: Front, stack: LiteLLMStack, caller: Caller) -> None:
    outcome = front.send(stack.token(caller), "/v1/chat/completions", chat(FORBIDDEN))
    assert outcome.refused, str(outcome)
    assert (outcome.reply.status, outcome.reply.reason) == (403, "model_not_allowed")


def test_master_key_runs_the_forbidden_model(front: Front) -> None:
    """Unrestricted, the forbidden model answers: its marker is what the attacks look for."""
    outcome = front.send(MASTER_KEY, "/v1/chat/completions", chat(FORBIDDEN))
    assert outcome.reply.status == 200 and outcome.answered == {FORBIDDEN}, str(outcome)


# -- the attacks --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_attack_runs_no_forbidden_model(front: Front, stack: LiteLLMStack, case: Case) -> None:
    outcome = front.send(stack.token(case.caller), case.path, case.body, case.headers)
    assert_safe(outcome, case.caller)


LIVE = [c for c in CASES if c.live]


@pytest.mark.parametrize("case", LIVE, ids=[c.id for c in LIVE])
def test_attack_is_live(front: Front, case: Case) -> None:
    """With the master key (no model list) the same request runs a model the caller may not use."""
    outcome = front.send(MASTER_KEY, case.path, case.body, case.headers)
    assert outcome.forbidden_for(case.caller), f"the attack did nothing unrestricted: {outcome}"


@pytest.mark.parametrize(
    ("caller", "granted"), [(USER, "anthropic-claude"), (TEAM, "claude-haiku")], ids=str
)
def test_batch_from_an_input_file_naming_other_models(
    front: Front, stack: LiteLLMStack, caller: Caller, granted: str
) -> None:
    """(5) Upload a batch input file for a granted model whose lines name other models, then
    create a batch from it. LiteLLM sends both to the granted deployment's provider, which would
    run the lines; LiteLLM runs batch lines itself only for providers without a Files API, and
    that needs its database, so offline this checks that no other deployment was called."""
    token = stack.token(caller)
    uploaded = front.send(
        token,
        "/v1/files",
        upload(content=batch_lines(FORBIDDEN, "claude-fast", granted)),
        [("x-litellm-model", granted)],
    )
    assert_safe(uploaded, caller)
    if uploaded.refused:
        return
    assert uploaded.reply.status == 200 and uploaded.called == {granted}, str(uploaded)
    created = front.send(token, "/v1/batches", batch(uploaded.reply.json()["id"]))
    assert_safe(created, caller)
    if not created.refused:
        assert created.reply.status == 200 and created.called == {granted}, str(created)

"""Every model a request can make LiteLLM run is checked (issue: a restricted caller could reach
models it was not granted through the query, commas, fallbacks, aliases, batches, cut bodies)."""

from __future__ import annotations

import json

import pytest

from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.model import Allow, Deny, Identity, Reason, RequestView
from extauthz.policy.catalog import ModelCatalog, merge_fallbacks
from extauthz.policy.decide import decide
from extauthz.policy.models import MAX_JSON_CONTAINERS, ModelRead, read_models
from extauthz.state.protocol import StateSnapshot

ENV = {"JWT_PUBLIC_KEY_URL": "file:///dev/null"}

# The attack review's shape: a user granted one model, a team granted a glob; the gateway's
# LiteLLM config has aliases and fallbacks that lead out of the grants.
CONFIG = """
general_settings:
  enable_jwt_auth: True
  litellm_jwtauth:
    user_id_jwt_field: sub
    user_roles_jwt_field: roles
    user_allowed_roles: [basic_user]
    admin_allowed_routes: [openai_routes]
  role_permissions:
    - role: internal_user
      models: [anthropic-claude]
    - role: team
      models: ["claude-*"]
model_list:
  - model_name: anthropic-claude
    litellm_params: {model: anthropic/claude-3-5-haiku}
  - model_name: claude-haiku
    litellm_params: {model: anthropic/claude-haiku}
  - model_name: claude-sonnet
    litellm_params: {model: anthropic/claude-sonnet}
  - model_name: claude-flaky
    litellm_params: {model: anthropic/claude-flaky}
  - model_name: openai-gpt-4o
    litellm_params: {model: claude-lookalike}
    model_info: {id: claude-deployment-id}
litellm_settings:
  model_alias_map: {claude-mapped: openai-gpt-4o}
router_settings:
  model_group_alias:
    claude-fast: openai-gpt-4o
    claude-hidden: {model: openai-gpt-4o, hidden: true}
  fallbacks: [{claude-flaky: [openai-gpt-4o]}]
extauthz:
  model_globs: true   # "claude-*" is a wildcard (LiteLLM: a literal name)
"""
POLICY = compile_policy(parse_yaml(CONFIG), ENV).policy
USER = Identity(kind="jwt", user_id="alice", roles=frozenset({"basic_user"}))
TEAM = Identity(kind="jwt", team_id="team-a")
ADMIN = Identity(kind="jwt", user_id="root", scopes=frozenset({"litellm_proxy_admin"}))


def ask(
    identity: Identity,
    body: object = None,
    *,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    content_type: str = "application/json",
    raw: bytes | None = None,
    cut: bool = False,
    headers: dict[str, str] | None = None,
) -> Allow | Deny:
    target, _, query = path.partition("?")
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    request = RequestView(
        method, path, {"content-type": content_type, **(headers or {})}, data, cut
    )
    return decide(request, target, query, identity, POLICY, StateSnapshot())


GRANTED = {"model": "anthropic-claude", "messages": []}

# (id, identity, ask() kwargs): each must be refused (not Allow) for the restricted caller.
ATTACKS: list[tuple[str, Identity, dict[str, object]]] = [
    (
        "query-model-chat",
        USER,
        {"body": GRANTED, "path": "/v1/chat/completions?model=openai-gpt-4o"},
    ),
    (
        "query-model-completions",
        USER,
        {"body": GRANTED, "path": "/v1/completions?model=openai-gpt-4o"},
    ),
    (
        "query-model-embeddings",
        USER,
        {"body": GRANTED, "path": "/v1/embeddings?model=openai-gpt-4o"},
    ),
    (
        "query-model-encoded",
        USER,
        {"body": GRANTED, "path": "/v1/chat/completions?%6dodel=openai-gpt-4o"},
    ),
    (
        "blanks-text-plain-cut",
        USER,
        {"raw": b" " * 4096, "content_type": "text/plain", "cut": True},
    ),
    (
        "blanks-octet-cut",
        USER,
        {"raw": b"\n" * 4096, "content_type": "application/octet-stream", "cut": True},
    ),
    ("comma-across-glob", TEAM, {"body": {"model": "claude-haiku,openai-gpt-4o"}}),
    ("fallbacks-strings", USER, {"body": {**GRANTED, "fallbacks": ["openai-gpt-4o"]}}),
    ("fallbacks-dicts", USER, {"body": {**GRANTED, "fallbacks": [{"model": "openai-gpt-4o"}]}}),
    (
        "context-window-fallbacks",
        USER,
        {
            "body": {
                **GRANTED,
                "context_window_fallbacks": [{"anthropic-claude": ["openai-gpt-4o"]}],
            }
        },
    ),
    (
        "content-policy-fallbacks",
        USER,
        {"body": {**GRANTED, "content_policy_fallbacks": ["openai-gpt-4o"]}},
    ),
    (
        "batch-create",
        USER,
        {"body": {"input_file_id": "f", "endpoint": "/v1/chat/completions"}, "path": "/v1/batches"},
    ),
    ("deployment-id-glob", TEAM, {"body": {"model": "claude-deployment-id"}}),
    ("provider-model-glob", TEAM, {"body": {"model": "claude-lookalike"}}),
    ("group-alias-glob", TEAM, {"body": {"model": "claude-fast"}}),
    ("group-alias-dict-glob", TEAM, {"body": {"model": "claude-hidden"}}),
    ("alias-map-glob", TEAM, {"body": {"model": "claude-mapped"}}),
    ("router-fallback-glob", TEAM, {"body": {"model": "claude-flaky"}}),
    (
        "header-model-files",
        USER,
        {"raw": b"", "path": "/v1/files", "headers": {"x-litellm-model": "openai-gpt-4o"}},
    ),
    ("query-model-files", USER, {"raw": b"", "path": "/v1/files?model=openai-gpt-4o"}),
    (
        "target-model-names",
        USER,
        {"body": {"target_model_names": "openai-gpt-4o"}, "path": "/v1/files"},
    ),
    ("user-config", USER, {"body": {**GRANTED, "user_config": {"model_list": []}}}),
    ("specific-deployment", USER, {"body": {**GRANTED, "specific_deployment": True}}),
    ("run-without-model", USER, {"body": {"assistant_id": "a"}, "path": "/v1/threads/t1/runs"}),
    (
        "engine-path-with-slash",
        TEAM,
        {"body": {}, "path": "/engines/claude-x/../openai-gpt-4o/chat/completions"},
    ),
    ("engine-path-slash-model", TEAM, {"body": {}, "path": "/engines/claude-/x/chat/completions"}),
    ("too-complex", USER, {"raw": b"[" + b"{}," * (MAX_JSON_CONTAINERS + 1) + b"{}]"}),
    ("google-path", USER, {"body": {}, "path": "/v1beta/models/openai-gpt-4o:generateContent"}),
]


@pytest.mark.parametrize(
    ("identity", "kwargs"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_every_way_to_another_model_is_refused(
    identity: Identity, kwargs: dict[str, object]
) -> None:
    """Each attack of the review is refused for the restricted caller, with a reason."""
    verdict = ask(identity, **kwargs)  # type: ignore[arg-type]
    assert isinstance(verdict, Deny), verdict
    assert verdict.status in (400, 403, 413)


CONTROLS: list[tuple[str, Identity, dict[str, object]]] = [
    ("granted-user", USER, {"body": GRANTED}),
    ("granted-team-glob", TEAM, {"body": {"model": "claude-haiku"}}),
    ("granted-comma", TEAM, {"body": {"model": "claude-haiku, claude-sonnet"}}),
    (
        "granted-fallbacks",
        TEAM,
        {"body": {"model": "claude-haiku", "fallbacks": ["claude-sonnet"]}},
    ),
    (
        "granted-query",
        USER,
        {"body": GRANTED, "path": "/v1/chat/completions?model=anthropic-claude"},
    ),
    ("batch-list", USER, {"path": "/v1/batches", "method": "GET"}),
    ("batch-cancel", USER, {"path": "/v1/batches/b1/cancel"}),
    (
        "run-with-model",
        USER,
        {"body": {"assistant_id": "a", "model": "anthropic-claude"}, "path": "/v1/threads/t1/runs"},
    ),
    ("admin-any-model", ADMIN, {"body": {"model": "claude-mapped", "fallbacks": ["x"]}}),
    ("admin-too-complex", ADMIN, {"raw": b"[" + b"{}," * (MAX_JSON_CONTAINERS + 1) + b"{}]"}),
    ("admin-cut", ADMIN, {"raw": b" " * 64, "content_type": "text/plain", "cut": True}),
]


@pytest.mark.parametrize(
    ("identity", "kwargs"), [c[1:] for c in CONTROLS], ids=[c[0] for c in CONTROLS]
)
def test_granted_requests_still_pass(identity: Identity, kwargs: dict[str, object]) -> None:
    """Positive controls: granted models, and callers without a model list, are allowed."""
    verdict = ask(identity, **kwargs)  # type: ignore[arg-type]
    assert isinstance(verdict, Allow), verdict


def test_denies_say_why() -> None:
    """Messages name the model reached through the alias, and the reasons are distinct."""
    alias = ask(TEAM, {"model": "claude-fast"})
    assert isinstance(alias, Deny) and alias.reason is Reason.MODEL_NOT_ALLOWED
    assert "'openai-gpt-4o'" in alias.message and "alias" in alias.message
    batch = ask(USER, {"input_file_id": "f"}, path="/v1/batches")
    assert isinstance(batch, Deny) and batch.reason is Reason.MODEL_UNCHECKABLE
    assert batch.status == 403 and "batch" in batch.message
    big = ask(USER, raw=b"[" + b"{}," * (MAX_JSON_CONTAINERS + 1) + b"{}]")
    assert isinstance(big, Deny) and (big.status, big.reason) == (413, Reason.BODY_TOO_COMPLEX)
    cut = ask(USER, raw=b" " * 64, content_type="text/plain", cut=True)
    assert isinstance(cut, Deny) and (cut.status, cut.reason) == (413, Reason.BODY_CUT)


def test_forced_completion_model_is_checked() -> None:
    """general_settings.completion_model runs whatever is asked, so it must be granted."""
    forced = compile_policy(
        parse_yaml(
            CONFIG.replace(
                "  enable_jwt_auth: True",
                "  enable_jwt_auth: True\n  completion_model: openai-gpt-4o",
            )
        ),
        ENV,
    )
    assert any("completion_model" in w for w in forced.warnings)
    request = RequestView("POST", "/v1/chat/completions", {}, json.dumps(GRANTED).encode())
    verdict = decide(request, "/v1/chat/completions", "", USER, forced.policy, StateSnapshot())
    assert isinstance(verdict, Deny) and "completion_model" in verdict.message


def test_pass_through_routes_are_refused_for_restricted_roles() -> None:
    """A provider pass-through route carries its model where we do not read it."""
    text = CONFIG + (
        "  internal_user_allowed_routes: [openai_routes, passthrough_routes_wildcard]\n"
    )
    policy = compile_policy(parse_yaml(text), ENV).policy
    path = "/bedrock/model/openai-gpt-4o/invoke"
    request = RequestView("POST", path, {"content-type": "application/json"}, b"{}")
    verdict = decide(request, path, "", USER, policy, StateSnapshot())
    assert isinstance(verdict, Deny) and verdict.reason is Reason.MODEL_UNCHECKABLE
    # The OpenAI-compatible /openai/deployments/... is an LLM route, read as usual.
    path = "/openai/deployments/anthropic-claude/chat/completions"
    request = RequestView("POST", path, {"content-type": "application/json"}, b"{}")
    assert isinstance(decide(request, path, "", USER, policy, StateSnapshot()), Allow)


def test_check_config_reports_reach_beyond_a_grant() -> None:
    """Each alias or fallback that leads out of a grant is one warning line."""
    warnings = " ".join(compile_policy(parse_yaml(CONFIG), ENV).warnings)
    for name in (
        "claude-fast",
        "claude-hidden",
        "claude-mapped",
        "claude-flaky",
        "claude-lookalike",
    ):
        assert repr(name) in warnings, name


CATALOG = ModelCatalog(
    model_names=frozenset({"a", "b", "c"}),
    alias_map={"x": "a"},
    group_alias={"y": "b"},
    deployment_ids={"id-1": "c"},
    provider_models={"openai/a": ("a",)},
    fallbacks={"a": ("b",), "b": ("c",), "*": ("d",)},
)


@pytest.mark.parametrize(
    ("name", "runs"),
    [
        ("a", ("a", "b", "d", "c")),
        ("c", ("c", "d")),
        ("x", ("x", "a", "b", "d", "c")),
        ("y", ("y", "b", "c", "d")),
        ("id-1", ("id-1", "c", "d")),
        ("openai/a", ("openai/a", "a", "b", "d", "c")),
        ("unknown", ("unknown", "d")),
    ],
)
def test_catalog_follows_litellm_resolution(name: str, runs: tuple[str, ...]) -> None:
    """Alias map, group alias, deployment id, provider model, fallbacks and defaults."""
    assert CATALOG.runs(name) == runs


def test_merge_fallbacks_reports_bad_entries() -> None:
    table, problems = merge_fallbacks([{"a": ["b"]}, {"a": "c"}, ["bad"], {"d": [1]}], ["z", 2])
    assert table == {"a": ("b", "c"), "*": ("z",)}
    assert len(problems) == 3


def test_read_models_reports_steering_and_complexity() -> None:
    """The reader's own flags, independent of any policy."""
    batch = read_models("/v1/batches", "", "POST", "application/json", b"{}", False)
    assert batch.steering is not None and batch.models == ()
    big = read_models(
        "/v1/chat/completions",
        "",
        "POST",
        "application/json",
        b"[" + b"[]," * (MAX_JSON_CONTAINERS + 1) + b"[]]",
        False,
    )
    assert big == ModelRead((), complex=True)
    bad = read_models(
        "/v1/chat/completions", "", "POST", "application/json", b'{"fallbacks": "x"}', False
    )
    assert bad.error is not None and "fallbacks" in bad.error

"""Route groups and the compiled allowed-route matcher."""

from __future__ import annotations

import pytest

from extauthz.policy.litellm_routes import GROUPS
from extauthz.policy.routes import ROUTE_GROUPS, RouteError, RouteSet, compile_routes

# Every LiteLLMRoutes group of the pinned LiteLLM (16 of them were unknown before the table was
# generated: a config naming one was refused whole).
EXPECTED_GROUPS = set(GROUPS)

# (group, paths that must match, paths that must not)
GROUP_SAMPLES: list[tuple[str, list[str], list[str]]] = [
    (
        "openai_routes",
        [
            "/v1/chat/completions",
            "/chat/completions",
            "/cursor/chat/completions",
            "/engines/gpt-4/chat/completions",
            "/openai/deployments/my-dep/embeddings",
            "/completions",
            "/v1/embeddings",
            "/v1/images/edits",
            "/videos/vid_1/remix",
            "/v1/videos/vid_1/content",
            "/audio/speech",
            "/v1/moderations",
            "/v1/batches/b_1/cancel",
            "/files/file-abc/content",
            "/v1/fine_tuning/jobs/ftjob-1/cancel",
            "/v1/threads/t_1/runs",
            "/models",
            "/v1/realtime",
            "/responses/resp_1/input_items",
            "/v1/vector_stores/vs_1/files/f_1/content",
            "/vector_store/list",
            "/v1/search/tavily",
            "/ocr",
            "/v1/containers/*",
            "/utils/token_counter",
            "/v2/rerank",
        ],
        [
            "/v1/chat/completionsX",
            "/v1/chat/completions/",
            "/v1/chat",
            "/v1/files/a/b",
            "/v1/files/",
            "/v1/containers/abc",
            "/v2/chat/completions",
            "/v1/utils/token_counter",
            "/engines/a/b/chat/completions",
        ],
    ),
    (
        "anthropic_routes",
        ["/v1/messages", "/v1/messages/count_tokens", "/v1/skills/sk_1"],
        ["/messages", "/v1/messages/", "/v1/skills/a/b"],
    ),
    (
        "mcp_routes",
        ["/mcp", "/mcp/", "/mcp/anything", "/mcp-rest/tools/call", "/v1/mcp/server/a/b/c"],
        ["/mcp/a/b", "/v1/mcp/server/", "/mcpx"],
    ),
    (
        "agent_routes",
        [
            "/v1/agents/ag_1",
            "/agents",
            "/a2a/ag_1/message/stream",
            "/a2a/x/.well-known/agent-card.json",
        ],
        ["/a2a", "/a2a/x/message", "/agents/ag_1"],
    ),
    (
        "google_routes",
        [
            "/models/gemini-1.5-pro:generateContent",
            "/v1beta/models/gemini-1.5-pro:streamGenerateContent",
            "/v1beta/models/publishers/google/models/gemini:countTokens",
            "/v1beta/interactions/i_1/cancel",
            "/interactions",
        ],
        ["/v1beta/models/:generateContent", "/models/gemini:embedContent", "/v1/interactions"],
    ),
    (
        "mapped_pass_through_routes",
        ["/bedrock", "/eu.assemblyai", "/milvus"],
        ["/bedrock/model/x", "/bedrockx", "/eu-assemblyai"],
    ),
    (
        "passthrough_routes_wildcard",
        ["/bedrock/model/x/invoke", "/vertex_ai/v1/a", "/eu.assemblyai/v2/x"],
        ["/bedrock", "/bedrock/", "/bedrockfoo/x", "/unknown/x"],
    ),
    ("litellm_native_routes", ["/rag/ingest", "/v1/rag/query"], ["/v2/rag/query", "/rag"]),
    ("apply_guardrail_routes", ["/guardrails/apply_guardrail"], ["/v1/guardrails/apply_guardrail"]),
    (
        "llm_api_routes",
        ["/v1/chat/completions", "/v1/messages", "/mcp", "/v1beta/interactions", "/gemini/v1/x"],
        ["/key/generate", "/health"],
    ),
    (
        "info_routes",
        ["/key/info", "/v2/team/list", "/health", "/v1/models", "/sso/get/ui_settings"],
        ["/key/generate", "/health/", "/v1/models/gpt-4"],
    ),
    (
        "key_management_routes",
        ["/key/generate", "/key/k_1/regenerate", "/key/k_1/reset_spend", "/spend/logs"],
        ["/key/a/b/regenerate", "/team/new"],
    ),
    (
        "management_routes",
        [
            "/key/generate",
            "/team/block",
            "/team/unblock",
            "/user/daily/activity/aggregated",
            "/jwt/key/mapping/info",
            "/customer/block",
            "/customer/unblock",
            "/customer/info",
            "/customer/list",
        ],
        ["/team/blocked/x", "/customer/new", "/jwt/key/mapping"],
    ),
    ("spend_tracking_routes", ["/spend/logs/session/ui", "/cost/estimate"], ["/spend"]),
    (
        "global_spend_tracking_routes",
        ["/global/spend", "/global/predict/spend/logs"],
        ["/global/spend/reset", "/global"],
    ),
    ("master_key_only_routes", ["/global/spend/reset", "/memory-usage-in-mem-cache-items"], ["/x"]),
    (
        "public_routes",
        ["/", "/health/liveliness", "/.well-known/litellm-ui-config", "/public/mcp_hub"],
        ["", "/public", "/health"],
    ),
]


def test_every_spec_group_is_present() -> None:
    """ROUTE_GROUPS holds exactly the spec's groups, none empty, with no repeated template."""
    assert set(ROUTE_GROUPS) == EXPECTED_GROUPS
    for name, templates in ROUTE_GROUPS.items():
        assert templates, name
        assert len(set(templates)) == len(templates), name


@pytest.mark.parametrize("name", sorted(EXPECTED_GROUPS), ids=sorted(EXPECTED_GROUPS))
def test_every_group_compiles_and_matches_its_own_literal_templates(name: str) -> None:
    """Each group compiles, and every brace-free template matches itself."""
    routes = compile_routes([name])
    for template in ROUTE_GROUPS[name]:
        if "{" not in template:
            assert routes.matches(template), template


@pytest.mark.parametrize(
    ("group", "hits", "misses"), GROUP_SAMPLES, ids=[g for g, _, _ in GROUP_SAMPLES]
)
def test_group_samples(group: str, hits: list[str], misses: list[str]) -> None:
    """Sample paths of each group match and near-misses do not."""
    routes = compile_routes([group])
    for path in hits:
        assert routes.matches(path), path
    for path in misses:
        assert not routes.matches(path), path


def test_groups_named_by_litellm_1_108_are_known() -> None:
    """Groups LiteLLM added since the hand-written table compile (a config may name them)."""
    for name in (
        "ui_routes",
        "internal_user_routes",
        "mcp_inference_routes",
        "org_admin_only_routes",
    ):
        assert name in ROUTE_GROUPS
        compile_routes([name])


def test_agents_and_mcp_servers_moved_to_management_routes() -> None:
    """LiteLLM 1.108 lists /v1/agents and /v1/mcp/server as management, not LLM API, routes."""
    llm = compile_routes(["llm_api_routes"])
    management = compile_routes(["management_routes"])
    for path in ("/v1/agents", "/v1/mcp/server"):
        assert not llm.matches(path), path
        assert management.matches(path), path


def test_management_routes_include_key_management_routes() -> None:
    """management_routes contains every key_management_routes template."""
    assert set(ROUTE_GROUPS["key_management_routes"]) <= set(ROUTE_GROUPS["management_routes"])


def test_openai_routes_are_listed_with_and_without_v1() -> None:
    """The ±v1 block lists both forms."""
    openai = set(ROUTE_GROUPS["openai_routes"])
    for bare in ("/videos/{video_id}/content", "/files/{file_id}/content", "/vector_store/list"):
        assert bare in openai
        assert "/v1" + bare in openai
    assert "/v1/utils/token_counter" not in openai


ENTRY_CASES: list[tuple[str, list[str], list[str], list[str]]] = [
    # (id, entries, hits, misses)
    (
        "exact",
        ["/v1/chat/completions"],
        ["/v1/chat/completions"],
        ["/v1/chat/completions/", "/v1/chat/completionsX", "/v1/chat", "/V1/chat/completions"],
    ),
    (
        "param-one-segment",
        ["/v1/files/{file_id}"],
        ["/v1/files/abc", "/v1/files/a.b-c_d"],
        ["/v1/files/", "/v1/files/a/b", "/v1/files", "/v1/files/abc/"],
    ),
    (
        "param-path-any-depth",
        ["/v1/mcp/server/{rest:path}"],
        ["/v1/mcp/server/a", "/v1/mcp/server/a/b/c", "/v1/mcp/server/a/"],
        ["/v1/mcp/server/", "/v1/mcp/server"],
    ),
    (
        "param-mid-segment",
        ["/models/{m:path}:predict"],
        ["/models/a:predict", "/models/a/b:predict"],
        ["/models/:predict", "/models/a:predictX"],
    ),
    (
        "wildcard",
        ["/bedrock/*"],
        ["/bedrock/x", "/bedrock/a/b/c", "/bedrock/a/"],
        ["/bedrock", "/bedrock/", "/bedrockfoo", "/bedrockfoo/x", "/x/bedrock/y"],
    ),
    ("root-wildcard", ["/*"], ["/a", "/a/b"], ["/"]),
    (
        "wildcard-after-param",
        ["/a2a/{agent}/*"],
        ["/a2a/x/y", "/a2a/x/y/z"],
        ["/a2a/x", "/a2a/x/", "/a2a/x"],
    ),
    (
        "first-segment-param",
        ["/{tenant}/chat"],
        ["/acme/chat"],
        ["/acme/chat/", "/a/b/chat", "//chat"],
    ),
    ("literal-question-mark", ["/realtime?x"], ["/realtime?x"], ["/realtime"]),
    (
        "mixed",
        ["info_routes", "/v1/files/{file_id}", "/bedrock/*"],
        ["/key/info", "/v1/files/f", "/bedrock/m"],
        ["/key/generate", "/v1/files/f/content", "/bedrock"],
    ),
    ("empty-list", [], [], ["/", "/v1/chat/completions"]),
]


@pytest.mark.parametrize(
    ("entries", "hits", "misses"),
    [c[1:] for c in ENTRY_CASES],
    ids=[c[0] for c in ENTRY_CASES],
)
def test_entry_kinds(entries: list[str], hits: list[str], misses: list[str]) -> None:
    """Exact, template, path-template and wildcard entries match anchored at both ends."""
    routes = compile_routes(entries)
    for path in hits:
        assert routes.matches(path), path
    for path in misses:
        assert not routes.matches(path), path


def test_group_star_is_literal_but_entry_star_is_wildcard() -> None:
    """'/containers/*' inside openai_routes is literal; the same text as an entry is a wildcard."""
    assert not compile_routes(["openai_routes"]).matches("/v1/containers/abc")
    assert compile_routes(["/v1/containers/*"]).matches("/v1/containers/abc")


ERROR_CASES: list[tuple[str, list[str], list[str]]] = [
    # (id, entries, fragments the message must contain)
    (
        "typo-group",
        ["opeanai_routes"],
        [
            "unknown route group 'opeanai_routes'",
            "did you mean 'openai_routes'?",
            "use one of:",
            "agent_routes, anthropic_routes",
            "or a path starting with '/'",
        ],
    ),
    (
        "unknown-group-no-hint",
        ["zzzz"],
        ["unknown route group 'zzzz'; use one of:", "public_routes"],
    ),
    (
        "missing-leading-slash",
        ["v1/chat/completions"],
        ["unknown route group 'v1/chat/completions'", "did you mean '/v1/chat/completions'?"],
    ),
    ("empty", [""], ["empty route entry"]),
    ("blank", ["  "], ["empty route entry"]),
    ("star-in-middle", ["/v1/*/x"], ["'*' is only allowed as a final '/*'"]),
    ("star-glued", ["/bedrock*"], ["'*' is only allowed as a final '/*'"]),
    ("two-stars", ["/a/*/*"], ["'*' is only allowed as a final '/*'"]),
    ("unclosed-brace", ["/v1/files/{file_id"], ["'{' at position 10 is not closed"]),
    ("nested-brace", ["/v1/{a{b}}"], ["is not closed"]),
    ("stray-close", ["/v1/files/x}"], ["'}' at position 11 has no matching '{'"]),
    ("empty-name", ["/v1/{}"], ["parameter name '' is not an identifier"]),
    ("bad-name", ["/v1/{1x}"], ["parameter name '1x' is not an identifier"]),
    ("bad-convertor", ["/v1/{x:int}"], ["convertor ':int' is not supported"]),
    ("duplicate-param", ["/v1/{x}/{x}"], ["parameter 'x' appears twice"]),
    ("two-params-one-segment", ["/v1/{a}-{b}"], ["two parameters in one path segment"]),
    ("two-path-params", ["/v1/{a:path}/{b:path}"], ["more than one '{name:path}' or '/*'"]),
    ("path-param-and-star", ["/v1/{a:path}/*"], ["more than one '{name:path}' or '/*'"]),
]


@pytest.mark.parametrize(
    ("entries", "fragments"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_bad_entries_explain_the_fix(entries: list[str], fragments: list[str]) -> None:
    """Each bad entry raises RouteError whose message names the problem and the fix."""
    with pytest.raises(RouteError) as info:
        compile_routes(entries)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_single_string_is_refused() -> None:
    """Passing one string instead of a list is refused, not split into characters."""
    with pytest.raises(RouteError, match="single string"):
        compile_routes("openai_routes")


def test_route_error_is_a_value_error() -> None:
    """RouteError subclasses ValueError so config loaders can catch it generically."""
    assert issubclass(RouteError, ValueError)


def test_routeset_keeps_original_entries() -> None:
    """describe() and iteration give back the entries as configured."""
    entries = ["info_routes", "/v1/files/{file_id}", "/bedrock/*"]
    routes = compile_routes(entries)
    assert routes.describe() == tuple(entries)
    assert list(routes) == entries
    assert len(routes) == 3


def test_routeset_is_immutable_and_comparable() -> None:
    """A RouteSet cannot be mutated and equals another built from the same entries."""
    routes = compile_routes(["info_routes"])
    with pytest.raises(AttributeError):
        routes.entries = ()  # type: ignore[misc]
    assert routes == compile_routes(["info_routes"])
    assert hash(routes) == hash(compile_routes(["info_routes"]))
    assert isinstance(routes, RouteSet)


def test_route_groups_is_read_only() -> None:
    """ROUTE_GROUPS cannot be modified at runtime."""
    with pytest.raises(TypeError):
        ROUTE_GROUPS["x"] = ()  # type: ignore[index]


def test_matching_a_long_hostile_path_is_fast() -> None:
    """An 8 KB path of colons and slashes does not trigger catastrophic backtracking."""
    import time

    routes = compile_routes(["llm_api_routes", "management_routes", "/a/{x:path}/b/{y}/c"])
    paths = ["/models/" + "a:" * 4000, "/a/" + "x/" * 4000, "/v1/" + "a" * 8000]
    start = time.perf_counter()
    for path in paths:
        assert not routes.matches(path)
    assert time.perf_counter() - start < 0.5

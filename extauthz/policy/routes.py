"""LiteLLM's route groups and a compiled, anchored matcher for allowed-route lists.

LiteLLM matches a group's templates with Starlette's ``compile_path`` (``{p}`` is one segment,
``{p:path}`` any depth, everything else literal) and any other entry by string equality. We keep
the group semantics exactly, and add ``/prefix/*`` wildcards for our own entries, because an
allow-list that is only exact strings cannot name a pass-through provider.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class RouteError(ValueError):
    """An allowed-route entry cannot be compiled; the message says what to change."""


def _pm_v1(*paths: str) -> tuple[str, ...]:
    """Each path bare and ``/v1``-prefixed, in that order, as LiteLLM lists them ("±v1")."""
    out: list[str] = []
    for p in paths:
        out += [p, "/v1" + p]
    return tuple(out)


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """Concatenate groups, dropping repeats but keeping first-seen order (stable for explain)."""
    return tuple(dict.fromkeys(t for g in groups for t in g))


def _llm_triplet(op: str) -> tuple[str, ...]:
    """The engines/deployments/bare/v1 forms LiteLLM lists for chat, completions, embeddings."""
    return (
        f"/engines/{{model}}/{op}",
        f"/openai/deployments/{{model}}/{op}",
        f"/{op}",
        f"/v1/{op}",
    )


_OPENAI: tuple[str, ...] = (
    *_llm_triplet("chat/completions"),
    "/cursor/chat/completions",
    *_llm_triplet("completions"),
    *_llm_triplet("embeddings"),
    *_pm_v1(
        "/images/generations",
        "/images/edits",
        "/videos",
        "/videos/{video_id}",
        "/videos/{video_id}/content",
        "/videos/{video_id}/remix",
        "/audio/transcriptions",
        "/audio/speech",
        "/moderations",
        "/batches",
        "/batches/{batch_id}",
        "/batches/{batch_id}/cancel",
        "/files",
        "/files/{file_id}",
        "/files/{file_id}/content",
        "/fine_tuning/jobs",
        "/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
        "/assistants",
        "/assistants/{assistant_id}",
        "/threads",
        "/threads/{thread_id}",
        "/threads/{thread_id}/messages",
        "/threads/{thread_id}/runs",
        "/models",
        # LiteLLM also lists "/realtime?{model}"; the query is never part of matching.
        "/realtime",
        "/responses",
        "/responses/{response_id}",
        "/responses/{response_id}/input_items",
        "/responses/{response_id}/cancel",
        "/vector_stores",
        "/vector_stores/{vector_store_id}/search",
        "/vector_stores/{vector_store_id}/files",
        "/vector_stores/{vector_store_id}/files/{file_id}",
        "/vector_stores/{vector_store_id}/files/{file_id}/content",
        "/vector_store/list",
        "/search",
        "/search/{search_tool_name}",
        "/ocr",
        "/containers",
        # Literal '*' under Starlette semantics, exactly as LiteLLM matches it.
        "/containers/*",
    ),
    # LiteLLM 1.108 also serves the Responses API under /openai/v1 (and its input_tokens).
    "/responses/input_tokens",
    "/v1/responses/input_tokens",
    "/openai/v1/responses",
    "/openai/v1/responses/{response_id}",
    "/openai/v1/responses/{response_id}/input_items",
    "/openai/v1/responses/{response_id}/cancel",
    "/openai/v1/responses/input_tokens",
    "/utils/token_counter",
    "/utils/transform_request",
    "/rerank",
    "/v1/rerank",
    "/v2/rerank",
)

_ANTHROPIC = ("/v1/messages", "/v1/messages/count_tokens", "/v1/skills", "/v1/skills/{skill_id}")

_MCP = (
    "/mcp",
    "/mcp/",
    "/mcp/{subpath}",
    "/mcp/tools",
    "/mcp/tools/list",
    "/mcp/tools/call",
    "/mcp-rest/tools/list",
    "/mcp-rest/tools/call",
    "/v1/mcp/server",
    "/v1/mcp/server/{path:path}",
)

_AGENT = (
    "/v1/agents",
    "/v1/agents/{agent_id}",
    "/agents",
    "/a2a/{agent_id}",
    "/a2a/{agent_id}/message/send",
    "/a2a/{agent_id}/message/stream",
    "/a2a/{agent_id}/.well-known/agent-card.json",
)

_GOOGLE_BARE = (
    "/models/{model_name:path}:countTokens",
    "/models/{model_name:path}:generateContent",
    "/models/{model_name:path}:streamGenerateContent",
    "/interactions",
    "/interactions/{interaction_id}",
    "/interactions/{interaction_id}/cancel",
)
_GOOGLE = _GOOGLE_BARE + tuple("/v1beta" + t for t in _GOOGLE_BARE)

_MAPPED_PASS_THROUGH = (
    "/bedrock",
    "/vertex-ai",
    "/vertex_ai",
    "/cohere",
    "/cursor",
    "/gemini",
    "/anthropic",
    "/langfuse",
    "/azure",
    "/azure_ai",
    "/openai",
    "/openai_passthrough",
    "/assemblyai",
    "/eu.assemblyai",
    "/vllm",
    "/mistral",
    "/milvus",
)
_PASS_THROUGH_WILDCARD = tuple(p + "/*" for p in _MAPPED_PASS_THROUGH)

_LITELLM_NATIVE = _pm_v1("/rag/ingest", "/rag/query")
_APPLY_GUARDRAIL = ("/guardrails/apply_guardrail",)

_INFO = (
    "/key/info",
    "/key/health",
    "/team/info",
    "/team/list",
    "/v2/team/list",
    "/organization/list",
    "/team/available",
    "/user/info",
    "/v2/user/info",
    "/model/info",
    "/v1/model/info",
    "/v2/model/info",
    "/v2/key/info",
    "/model_group/info",
    "/health",
    "/health/services",
    "/key/list",
    "/user/filter/ui",
    "/models",
    "/v1/models",
    "/sso/get/ui_settings",
)

_KEY_MANAGEMENT = (
    "/key/generate",
    "/key/update",
    "/key/delete",
    "/key/info",
    "/key/regenerate",
    "/key/service-account/generate",
    "/key/{key_id}/regenerate",
    "/key/list",
    "/key/block",
    "/key/unblock",
    "/key/bulk_update",
    "/team/daily/activity",
    "/spend/logs",
    "/key/{key_id}/reset_spend",
    "/key/aliases",
)

_MANAGEMENT = _union(
    _KEY_MANAGEMENT,
    (
        "/user/new",
        "/user/update",
        "/user/bulk_update",
        "/user/delete",
        "/user/info",
        "/user/list",
        "/user/daily/activity",
        "/user/daily/activity/aggregated",
        "/team/new",
        "/team/update",
        "/team/delete",
        "/team/list",
        "/v2/team/list",
        "/team/info",
        "/team/block",
        "/team/unblock",
        "/team/available",
        "/team/permissions_list",
        "/team/permissions_update",
        "/team/daily/activity",
        "/model/new",
        "/model/update",
        "/model/delete",
        "/model/info",
        "/jwt/key/mapping/new",
        "/jwt/key/mapping/update",
        "/jwt/key/mapping/delete",
        "/jwt/key/mapping/list",
        "/jwt/key/mapping/info",
        # End-user (customer) administration: LiteLLM serves these as management routes.
        "/customer/block",
        "/customer/unblock",
        "/customer/info",
        "/customer/list",
    ),
)

_SPEND_TRACKING = (
    "/spend/keys",
    "/spend/users",
    "/spend/tags",
    "/spend/calculate",
    "/spend/logs",
    "/spend/logs/ui",
    "/spend/logs/session/ui",
    "/cost/estimate",
)

_GLOBAL_SPEND_TRACKING = (
    "/global/spend/logs",
    "/global/spend",
    "/global/spend/keys",
    "/global/spend/teams",
    "/global/spend/end_users",
    "/global/spend/models",
    "/global/predict/spend/logs",
    "/global/spend/report",
    "/global/spend/provider",
    "/global/spend/tags",
    "/global/spend/all_tag_names",
)

_MASTER_KEY_ONLY = (
    "/global/spend/reset",
    "/memory-usage-in-mem-cache",
    "/memory-usage-in-mem-cache-items",
)

_PUBLIC = (
    "/routes",
    "/",
    "/health/liveliness",
    "/health/liveness",
    "/health/readiness",
    "/test",
    "/config/yaml",
    "/metrics",
    "/litellm/.well-known/litellm-ui-config",
    "/.well-known/litellm-ui-config",
    "/public/model_hub",
    "/public/agent_hub",
    "/public/mcp_hub",
    "/public/litellm_model_cost_map",
)

ROUTE_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "openai_routes": _OPENAI,
        "anthropic_routes": _ANTHROPIC,
        "mcp_routes": _MCP,
        "agent_routes": _AGENT,
        "google_routes": _GOOGLE,
        "mapped_pass_through_routes": _MAPPED_PASS_THROUGH,
        "passthrough_routes_wildcard": _PASS_THROUGH_WILDCARD,
        "litellm_native_routes": _LITELLM_NATIVE,
        "apply_guardrail_routes": _APPLY_GUARDRAIL,
        "llm_api_routes": _union(
            _OPENAI,
            _ANTHROPIC,
            _MCP,
            _AGENT,
            _GOOGLE,
            _MAPPED_PASS_THROUGH,
            _PASS_THROUGH_WILDCARD,
            _LITELLM_NATIVE,
            _APPLY_GUARDRAIL,
        ),
        "info_routes": _INFO,
        "key_management_routes": _KEY_MANAGEMENT,
        "management_routes": _MANAGEMENT,
        "spend_tracking_routes": _SPEND_TRACKING,
        "global_spend_tracking_routes": _GLOBAL_SPEND_TRACKING,
        "master_key_only_routes": _MASTER_KEY_ONLY,
        "public_routes": _PUBLIC,
    }
)
"""Every LiteLLM route group (spec §2) and its Starlette path templates."""

# Group templates whose trailing "/*" is a wildcard; in every other group template '*' is literal.
_WILDCARD_GROUP_TEMPLATES = frozenset(_PASS_THROUGH_WILDCARD)

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _template_regex(template: str, *, wildcard: bool, entry: str) -> str | None:
    """Regex source for one template, or None when it has no parameter or wildcard (exact).

    ``wildcard`` selects our ``/prefix/*`` meaning of a final ``/*``; otherwise '*' is literal.
    At most one param per segment and one ``:path`` per template keep matching linear-time.
    """
    body = template
    tail = ""
    if wildcard and "*" in template:
        if not template.endswith("/*") or template.count("*") != 1:
            raise RouteError(
                f"route {entry!r}: '*' is only allowed as a final '/*' (e.g. '/bedrock/*', "
                "which matches everything below '/bedrock/')"
            )
        body = template[:-2]
        tail = "/.+"
    parts: list[str] = []
    names: set[str] = set()
    path_params = 1 if tail else 0
    has_param = bool(tail)
    i = 0
    segment_params = 0
    while i < len(body):
        ch = body[i]
        if ch == "{":
            close = body.find("}", i + 1)
            reopen = body.find("{", i + 1)
            if close < 0 or (0 <= reopen < close):
                raise RouteError(
                    f"route {entry!r}: '{{' at position {i} is not closed; "
                    "write a parameter as '{name}' or '{name:path}'"
                )
            name, _, conv = body[i + 1 : close].partition(":")
            if not _PARAM_NAME.fullmatch(name):
                raise RouteError(
                    f"route {entry!r}: parameter name {name!r} is not an identifier; "
                    "write a parameter as '{name}' or '{name:path}'"
                )
            if conv not in ("", "path"):
                raise RouteError(
                    f"route {entry!r}: convertor ':{conv}' is not supported; "
                    "use '{name}' (one segment) or '{name:path}' (any depth)"
                )
            if name in names:
                raise RouteError(f"route {entry!r}: parameter {name!r} appears twice; rename one")
            names.add(name)
            segment_params += 1
            if segment_params > 1:
                raise RouteError(
                    f"route {entry!r}: two parameters in one path segment; "
                    "put each parameter in its own segment"
                )
            if conv == "path":
                path_params += 1
                if path_params > 1:
                    raise RouteError(
                        f"route {entry!r}: more than one '{{name:path}}' or '/*'; "
                        "keep at most one any-depth part per route"
                    )
            parts.append(".+" if conv == "path" else "[^/]+")
            has_param = True
            i = close + 1
            continue
        if ch == "}":
            raise RouteError(
                f"route {entry!r}: '}}' at position {i} has no matching '{{'; "
                "write a parameter as '{name}' or '{name:path}'"
            )
        if ch == "/":
            segment_params = 0
        parts.append(re.escape(ch))
        i += 1
    if not has_param:
        return None
    return "".join(parts) + tail


def _first_segment(path: str) -> str:
    """The text between the leading '/' and the next '/', the bucket key for a path."""
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


def _literal_first_segment(template: str, *, wildcard: bool) -> str | None:
    """The template's first segment when it is plain literal text (so it can pick a bucket)."""
    first = _first_segment(template)
    if "{" in first or (wildcard and first == "*") or "/" not in template[1:]:
        return None
    return first


@dataclass(frozen=True, slots=True)
class RouteSet:
    """A compiled allowed-route list; build it with :func:`compile_routes`.

    Exact paths are a set lookup; templates are one combined regex per literal first segment
    (plus one for templates starting with a parameter), so a check costs a dict lookup and at
    most two anchored regex runs whatever the list size.
    """

    entries: tuple[str, ...]
    _exact: frozenset[str] = field(compare=False, repr=False)
    _buckets: Mapping[str, re.Pattern[str]] = field(compare=False, repr=False)
    _fallback: re.Pattern[str] | None = field(compare=False, repr=False)

    def matches(self, path: str) -> bool:
        """Whether the decoded request path is allowed by any entry (anchored, no prefixing)."""
        if path in self._exact:
            return True
        if self._buckets:
            bucket = self._buckets.get(_first_segment(path))
            if bucket is not None and bucket.fullmatch(path) is not None:
                return True
        fallback = self._fallback
        return fallback is not None and fallback.fullmatch(path) is not None

    def describe(self) -> tuple[str, ...]:
        """The entries as configured, for error messages and ``explain`` output."""
        return self.entries

    def __iter__(self) -> Iterator[str]:
        """Iterate the configured entries (group names stay group names)."""
        return iter(self.entries)

    def __len__(self) -> int:
        """How many entries were configured."""
        return len(self.entries)


def _unknown_group(entry: str) -> RouteError:
    """The error for an entry that is neither a group nor a path, with a best-guess hint."""
    names = sorted(ROUTE_GROUPS)
    hint = ""
    close = difflib.get_close_matches(entry.strip(), names, n=1, cutoff=0.6)
    if close:
        hint = f" did you mean {close[0]!r}?"
    elif "/" in entry and not entry.startswith("/"):
        hint = f" did you mean '/{entry.lstrip()}'?"
    return RouteError(
        f"unknown route group {entry!r};{hint} use one of: {', '.join(names)}, "
        "or a path starting with '/'"
    )


def compile_routes(entries: Iterable[str]) -> RouteSet:
    """Compile allowed-route entries (group names, exact paths, templates, ``/prefix/*``).

    Raises :class:`RouteError` naming the bad entry and how to fix it; call this when a policy
    is loaded so a typo fails the load instead of silently denying every request.
    """
    if isinstance(entries, str | bytes):
        raise RouteError(
            f"routes must be a list of entries, not the single string {entries!r}; "
            "write it as a one-item list"
        )
    listed = tuple(entries)
    exact: set[str] = set()
    bucketed: dict[str, list[str]] = {}
    fallback: list[str] = []
    for entry in listed:
        if not isinstance(entry, str):
            raise RouteError(f"route entry {entry!r} is not a string; write a group name or path")
        if entry == "" or entry.isspace():
            raise RouteError(
                "empty route entry; write a group name (e.g. 'openai_routes') or a path "
                "starting with '/'"
            )
        if entry.startswith("/"):
            templates: tuple[tuple[str, bool], ...] = ((entry, True),)
        elif entry in ROUTE_GROUPS:
            templates = tuple((t, t in _WILDCARD_GROUP_TEMPLATES) for t in ROUTE_GROUPS[entry])
        else:
            raise _unknown_group(entry)
        for template, wildcard in templates:
            source = _template_regex(template, wildcard=wildcard, entry=entry)
            if source is None:
                exact.add(template)
                continue
            first = _literal_first_segment(template, wildcard=wildcard)
            if first is None:
                fallback.append(source)
            else:
                bucketed.setdefault(first, []).append(source)
    return RouteSet(
        entries=listed,
        _exact=frozenset(exact),
        _buckets=MappingProxyType({k: _combine(v) for k, v in bucketed.items()}),
        _fallback=_combine(fallback) if fallback else None,
    )


def _combine(sources: list[str]) -> re.Pattern[str]:
    """One alternation of de-duplicated template regexes; callers ``fullmatch`` it."""
    unique = dict.fromkeys(sources)
    return re.compile("|".join(f"(?:{s})" for s in unique), re.DOTALL)

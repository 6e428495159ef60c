"""LiteLLM's ``RouteChecks.is_llm_api_route`` (and its MCP exemption) over the generated table.

Reproduced template by template as LiteLLM matches them (its placeholders, its unescaped
literals, its ``*`` prefixes), so the set of routes is LiteLLM's (tests/unit/test_userparam.py
compares the two). Read by ``enforce_user_param`` (``policy.userparam``) and by the routes
OAuth2 introspection covers (``policy.overrides``).
"""

from __future__ import annotations

import re

from extauthz.policy.litellm_routes import GROUPS


def _placeholder(match: re.Match[str]) -> str:
    """LiteLLM's ``_route_matches_pattern`` placeholder rule."""
    if not match.group(0).strip("{}").endswith(":path"):
        return r"[^/]+"
    return r"[^:]+" if ":" in match.string[match.end() :] else r"[\s\S]+"


def _template(template: str) -> str:
    # As LiteLLM does: the literal parts are not escaped (a '.' matches any character).
    return "^" + re.sub(r"\{[^}]+\}", _placeholder, template) + "$"


_PLACEHOLDER_GROUPS = ("openai_routes", "google_routes", "anthropic_routes")
# Matched by check_route_access: exactly, a trailing '*' as a string prefix, or as a pattern.
_ACCESS_GROUPS = ("mcp_inference_routes", "agent_inference_routes", "litellm_native_routes")

_EXACT = frozenset(t for g in _PLACEHOLDER_GROUPS + _ACCESS_GROUPS for t in GROUPS[g])
_PREFIXES = tuple(
    t[:-1] for g in ("openai_routes", *_ACCESS_GROUPS) for t in GROUPS[g] if t.endswith("*")
)
_PATTERNS = re.compile(
    "|".join(
        [f"(?:{_template(t)})" for g in _PLACEHOLDER_GROUPS for t in GROUPS[g] if "{" in t]
        + [f"(?:{_template(t)})" for g in _ACCESS_GROUPS for t in GROUPS[g]]
    )
)
_AZURE = re.compile(
    r"^/openai/deployments/[^/]+/[^/]+/chat/completions$|^/engines/[^/]+/chat/completions$"
)
_MAPPED = frozenset(GROUPS["mapped_pass_through_routes"])
_MAPPED_BELOW = tuple(p + "/" for p in GROUPS["mapped_pass_through_routes"])
_MCP_EXACT = frozenset(GROUPS["mcp_routes"])
_MCP_PREFIXES = tuple(t[:-1] for t in GROUPS["mcp_routes"] if t.endswith("*"))
_MCP_PATTERNS = re.compile("|".join(f"(?:{_template(t)})" for t in GROUPS["mcp_routes"]))


def is_llm_api_route(path: str) -> bool:
    """LiteLLM's ``RouteChecks.is_llm_api_route`` for a decoded path."""
    return (
        path in _EXACT
        or path.startswith(_PREFIXES)
        or _PATTERNS.match(path) is not None
        or _AZURE.match(path) is not None
        or path in _MAPPED
        or path.startswith(_MAPPED_BELOW)
    )


def is_mcp_route(path: str) -> bool:
    """Whether the decoded path is one of LiteLLM's ``mcp_routes``."""
    return (
        path in _MCP_EXACT
        or path.startswith(_MCP_PREFIXES)
        or _MCP_PATTERNS.match(path) is not None
    )

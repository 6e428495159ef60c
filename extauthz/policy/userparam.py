"""``general_settings.enforce_user_param``: LiteLLM's ``_enforce_user_param_check``.

LiteLLM 1.108.7 runs it in ``common_checks`` for every authenticated caller (JWT callers, proxy
admins and the master key alike; public routes are exempt): a POST to an LLM API route
(``RouteChecks.is_llm_api_route``) that is not an MCP route, whose request data (the parsed body,
with the query's parameters added) has no ``user`` key, is refused with a plain Exception, which
its auth handler answers 401. Only the key's presence counts: ``"user": null`` passes.

``applies`` reproduces ``is_llm_api_route`` over the generated route table, template by template
as LiteLLM matches them (its placeholders, its unescaped literals, its ``*`` prefixes), so the
set of routes is LiteLLM's (tests/unit/test_userparam.py compares the two).
"""

from __future__ import annotations

import re

from extauthz.model import Deny, Identity, Reason, Role
from extauthz.policy.litellm_routes import GROUPS
from extauthz.policy.models import MAX_JSON_CONTAINERS, MAX_JSON_ITEMS, ModelRead


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
_MAPPED = tuple(GROUPS["mapped_pass_through_routes"])
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
        or any(path == p or path.startswith(p + "/") for p in _MAPPED)
    )


def applies(path: str) -> bool:
    """Whether the check runs on this path for a POST: an LLM API route, not an MCP route."""
    return is_llm_api_route(path) and not (
        path in _MCP_EXACT
        or path.startswith(_MCP_PREFIXES)
        or _MCP_PATTERNS.match(path) is not None
    )


def refusal(read: ModelRead, identity: Identity, role: Role | None) -> Deny | None:
    """The deny for a POST on a route the check applies to; None when ``user`` is there.

    A body Envoy cut or too complex to parse may hold ``user`` where it was not read: refused
    (413, as for a model that cannot be checked), never guessed present.
    """
    if read.user:
        return None
    if read.cut:
        return Deny(
            413,
            Reason.BODY_CUT,
            "the request body is larger than the authorization buffer, so whether it names "
            "`user` (general_settings.enforce_user_param) cannot be checked; send a smaller body, "
            "pass `user` in the query, or raise with_request_body.max_request_bytes in Envoy's "
            "ext_authz filter",
            identity,
            role,
        )
    if read.complex:
        return Deny(
            413,
            Reason.BODY_TOO_COMPLEX,
            f"the request body holds more than {MAX_JSON_CONTAINERS:,} JSON objects and arrays "
            f"or {MAX_JSON_ITEMS:,} values, more than the authorization service reads to find "
            "`user` (general_settings.enforce_user_param); send a simpler body",
            identity,
            role,
        )
    return Deny(
        401,
        Reason.USER_PARAM_MISSING,
        "'user' param not passed in: general_settings.enforce_user_param requires a `user` "
        "field (the end user's id) in the body of every POST to an LLM API route; add it",
        identity,
        role,
    )

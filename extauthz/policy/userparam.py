"""``general_settings.enforce_user_param``: LiteLLM's ``_enforce_user_param_check``.

LiteLLM 1.108.7 runs it in ``common_checks`` for every authenticated caller (JWT callers, proxy
admins and the master key alike; public routes are exempt): a POST to an LLM API route
(``RouteChecks.is_llm_api_route``) that is not an MCP route, whose request data (the parsed body,
with the query's parameters added) has no ``user`` key, is refused with a plain Exception, which
its auth handler answers 401. Only the key's presence counts: ``"user": null`` passes.

``applies`` is ``policy.llm_api_routes``: LiteLLM's route test, reproduced over the generated
table (tests/unit/test_userparam.py compares the two).
"""

from __future__ import annotations

from extauthz.model import Deny, Identity, Reason, Role
from extauthz.policy.llm_api_routes import is_llm_api_route, is_mcp_route
from extauthz.policy.models import MAX_JSON_CONTAINERS, MAX_JSON_ITEMS, ModelRead


def applies(path: str) -> bool:
    """Whether the check runs on this path for a POST: an LLM API route, not an MCP route."""
    return is_llm_api_route(path) and not is_mcp_route(path)


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

"""``custom_validate`` functions for the differential test, written as LiteLLM requires them
(annotated ``-> Literal[True]``) and imported by both LiteLLM and extauthz by dotted path."""

from __future__ import annotations

from typing import Any, Literal


def not_mallory(claims: dict[str, Any]) -> Literal[True]:
    """Refuses the subject ``mallory``."""
    return claims.get("sub") != "mallory"  # type: ignore[return-value]


def not_blocked_team(claims: dict[str, Any]) -> Literal[True]:
    """Refuses LiteLLM's normalized issuer team ``blocked-team`` (what an issuer's field names)."""
    return claims.get("_litellm_team_id") != "blocked-team"  # type: ignore[return-value]


def truthy_subject(claims: dict[str, Any]) -> Literal[True]:
    """Returns the subject itself: truthy for LiteLLM, not ``True`` for extauthz."""
    return claims.get("sub")  # type: ignore[return-value]

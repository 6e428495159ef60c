"""Reading /team/new and /team/update bodies (LiteLLM's NewTeamRequest / UpdateTeamRequest).

Only the fields the access decision uses are taken: ``team_id``, ``team_alias``, ``models``,
``blocked``, ``organization_id``. LiteLLM's other team fields (budgets, rate limits, members,
guardrails, ...) are refused with a 400 that says extauthz does not enforce them, rather than
stored and silently ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from extauthz.identity.claims import ClaimValueError, canonical_id
from extauthz.state.protocol import TeamChanges, TeamState

TEAM_FIELDS = ("team_id", "team_alias", "models", "blocked", "organization_id")
MAX_MODELS = 1000
MAX_NAME = 512


class BadTeamInput(ValueError):
    """A team body the admin API answers with 400 and this message."""


def check_id(value: object, field: str) -> str:
    """A team or user id in the canonical form tokens' ids have (``canonical_id``): 4242 is
    "4242"; " team-a " is refused, never trimmed, so a block names exactly what a token carries."""
    try:
        canonical = canonical_id(value, field)
    except ClaimValueError as exc:
        raise BadTeamInput(str(exc)) from None
    if canonical is None:
        raise BadTeamInput(f"{field} must not be empty; an id is a string or an integer")
    return canonical


def refuse_unknown(data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise BadTeamInput(
            f"unknown or unsupported field(s) {', '.join(repr(u[:64]) for u in unknown[:10])}; "
            f"the sidecar keeps only {', '.join(allowed)} (budgets, rate limits, members and "
            "other LiteLLM team settings are not enforced here: set them on the gateway)"
        )


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadTeamInput(f"{field} must be a non-empty string")
    if len(value) > MAX_NAME:
        raise BadTeamInput(f"{field} is longer than {MAX_NAME} characters")
    if not value.isprintable():
        raise BadTeamInput(f"{field} must not contain control characters")
    return value


def check_models(value: object) -> tuple[str, ...]:
    """LiteLLM's team ``models``: a list of model names ([] is every model)."""
    if not isinstance(value, list):
        raise BadTeamInput('models must be a list of model names, e.g. {"models": ["gpt-4o"]}')
    if len(value) > MAX_MODELS:
        raise BadTeamInput(f"models has more than {MAX_MODELS} entries")
    return tuple(dict.fromkeys(_name(m, f"models[{i}]") for i, m in enumerate(value)))


def _blocked(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadTeamInput("blocked must be true or false")
    return value


def new_team(data: Mapping[str, Any], by: str, at: float) -> TeamState:
    """A /team/new body as the team to create (a missing team_id is a new UUID, as LiteLLM)."""
    refuse_unknown(data, TEAM_FIELDS)
    raw_id = data.get("team_id")
    team_id = str(uuid.uuid4()) if raw_id is None else check_id(raw_id, "team_id")
    alias = data.get("team_alias")
    org = data.get("organization_id")
    models = data.get("models")
    blocked = data.get("blocked")
    return TeamState(
        team_id,
        False if blocked is None else _blocked(blocked),
        by,
        at,
        team_alias=None if alias is None else _name(alias, "team_alias"),
        models=() if models is None else check_models(models),
        organization_id=None if org is None else check_id(org, "organization_id"),
        registered=True,
        created_at=at,
    )


def team_update(data: Mapping[str, Any]) -> tuple[str, TeamChanges]:
    """A /team/update body: the team and what to change (absent or null: unchanged)."""
    refuse_unknown(data, TEAM_FIELDS)
    if data.get("team_id") is None:
        raise BadTeamInput('missing field "team_id"; send {"team_id": "...", "models": [...]}')
    team_id = check_id(data["team_id"], "team_id")
    alias, org = data.get("team_alias"), data.get("organization_id")
    models, blocked = data.get("models"), data.get("blocked")
    return team_id, TeamChanges(
        team_alias=None if alias is None else _name(alias, "team_alias"),
        models=None if models is None else check_models(models),
        organization_id=None if org is None else check_id(org, "organization_id"),
        blocked=None if blocked is None else _blocked(blocked),
    )

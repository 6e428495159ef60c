"""Which team a request runs as, and what the team's model list lets it use (issue 17).

Pure: reads the caller's token teams, the ``x-litellm-team-id`` header, the models the request
may run and the state snapshot's team registry. LiteLLM's order (``JWTAuthManager.auth_builder``):

1. ``x-litellm-team-id`` naming (by id or alias) one of the token's teams picks it; any other
   value is refused;
2. else the ``team_id_jwt_field`` team (or ``team_id_default``, unless the token carries an
   alias and no team claim);
3. else the ``team_alias_jwt_field`` alias, resolved through the registry; with a team or
   alias field configured and no team found, the token is refused ("No team found in token");
4. else the first of the ``team_ids_jwt_field`` teams (in claim order) that is registered, may
   call this route as a team, and whose models allow every model the request may run; with
   models asked and no such team, refused; with no teams and
   ``enforce_team_based_model_access``, refused.

The registry is "in use" once it holds a registered team: from then on a team it does not hold
is refused (LiteLLM: "Team doesn't exist in db"), unless ``team_id_upsert`` registers it. While
it is empty every team exists and may use every model (the behaviour before the registry).
A registered team's ``models`` (LiteLLM's meaning: [] or "*" or "all-proxy-models" is every
model; "all-team-models" every model the config's ``model_list`` names; "x/*" a wildcard;
"no-default-models" names no real model, so none) must allow every model the upstream may run
for the request, as ``role_permissions`` must.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from extauthz.model import Deny, Identity, Reason, Role
from extauthz.policy.catalog import ModelCatalog
from extauthz.policy.compiled import ModelRule, TeamRules
from extauthz.state.protocol import StateSnapshot, TeamEntry

TEAM_HEADER = "x-litellm-team-id"  # LiteLLM: pick one of the token's teams
ALL_MODELS = frozenset({"*", "all-proxy-models"})
ALL_TEAM_MODELS = "all-team-models"  # LiteLLM: the router's model names (with a model_list)


@dataclass(frozen=True, slots=True)
class TeamChoice:
    """The team a request runs as (None: no team), its registry entry, and why it was chosen."""

    team_id: str | None
    entry: TeamEntry | None
    why: str


NO_TEAM = TeamChoice(None, None, "no team")


@functools.lru_cache(maxsize=4096)
def team_rule(models: tuple[str, ...]) -> ModelRule | None:
    """A team's model list as a rule; None when it allows every model."""
    if not models or ALL_MODELS.intersection(models):
        return None
    return ModelRule(models, globs=True)


def team_allows(models: tuple[str, ...], model: str, proxy_models: frozenset[str]) -> bool:
    """Whether a team with ``models`` may use ``model`` (LiteLLM's check_model_access_helper;
    ``proxy_models``: the names the config's model_list serves)."""
    rule = team_rule(models)
    if rule is None or rule.allows(model):
        return True
    return model in proxy_models and ALL_TEAM_MODELS in models


def _team_allows(
    entry: TeamEntry | None, runs: tuple[str, ...], proxy_models: frozenset[str]
) -> bool:
    return entry is None or all(team_allows(entry.models, m, proxy_models) for m in runs)


def runs_of(models: tuple[str, ...], catalog: ModelCatalog) -> tuple[str, ...]:
    """Every model the upstream may run for ``models`` (aliases and fallbacks followed)."""
    return tuple(dict.fromkeys(r for m in models for r in catalog.runs(m)))


def choose_team(
    identity: Identity,
    header: str | None,
    runs: tuple[str, ...],
    rules: TeamRules,
    team_route: bool,
    state: StateSnapshot,
    role: Role | None,
    proxy_models: frozenset[str] = frozenset(),
    header_teams: tuple[str, ...] | None = None,
) -> TeamChoice | Deny:
    """The team this request runs as, or why it is refused (see the module's docstring).

    ``team_route``: the TEAM role may call this path (LiteLLM's group choice checks it).

    ``header_teams``: when ``object_id_jwt_field`` replaced the team id, the teams the header
    may name instead of it (LiteLLM allows the team claim, not the object id; ``rolemap``)."""
    teams = state.teams
    in_use = bool(teams)

    def known(team_id: str) -> tuple[bool, TeamEntry | None]:
        entry = teams.get(team_id)
        if entry is not None or not in_use:
            return True, entry
        return rules.upsert, None  # upsert: registered off the request path, every model

    def unknown(team_id: str, where: str) -> Deny:
        return Deny(
            403,
            Reason.TEAM_NOT_FOUND,
            f"team {team_id[:200]!r} ({where}) is not registered: an admin can create it with "
            "POST /team/new, or set general_settings.litellm_jwtauth.team_id_upsert: true",
            identity,
            role,
        )

    def chosen(team_id: str, where: str) -> TeamChoice | Deny:
        ok, entry = known(team_id)
        return TeamChoice(team_id, entry, where) if ok else unknown(team_id, where)

    held = identity.team_ids if identity.team_id is None else (identity.team_id, *identity.team_ids)
    if header_teams is not None:
        held = (*header_teams, *identity.team_ids)
    if header:
        target = header if header in held else state.team_aliases.get(header)
        if target is None or target not in held:
            shown = ", ".join(repr(t) for t in held[:10]) or "none"
            return Deny(
                403,
                Reason.TEAM_NOT_ALLOWED,
                f"{TEAM_HEADER} {header[:200]!r} is not a team of this token (its teams: {shown})",
                identity,
                role,
            )
        return chosen(target, f"{TEAM_HEADER} header")
    individual = identity.team_id
    if identity.team_alias is not None and identity.team_id_defaulted and not identity.team_ids:
        individual = None  # an alias claim beats team_id_default
    if individual is not None:
        return chosen(individual, rules.claim_source(identity) or "")
    if identity.team_alias is not None:
        by_alias = state.team_aliases.get(identity.team_alias)
        if by_alias is not None:
            where = f"alias in claim {rules.alias_field!r}"
            return TeamChoice(by_alias, teams.get(by_alias), where)
    if rules.refuse_without_team:
        return Deny(
            403,
            Reason.NO_TEAM,
            f"no team found in the token: checked claim {rules.team_field!r} (team_id_jwt_field)"
            f" and claim {rules.alias_field!r} (team_alias_jwt_field)"
            + (
                f"; alias {identity.team_alias[:200]!r} names no registered team"
                if identity.team_alias is not None
                else ""
            ),
            identity,
            role,
        )
    if not identity.team_ids:
        if rules.enforce:
            return Deny(
                403,
                Reason.NO_TEAM,
                f"no teams found in the token (claim {rules.ids_field!r}, team_ids_jwt_field): "
                "enforce_team_based_model_access is set, so the token must belong to a team",
                identity,
                role,
            )
        return NO_TEAM
    for team_id in identity.team_ids:
        entry = teams.get(team_id)
        ok = entry is not None or not in_use  # no upsert here: LiteLLM's group search reads only
        if ok and team_route and (not runs or _team_allows(entry, runs, proxy_models)):
            where = f"first team in claim {rules.ids_field!r} with access"
            return TeamChoice(team_id, entry, where)
    if runs:
        return Deny(
            403,
            Reason.MODEL_NOT_ALLOWED,
            f"no team of this token has access to model {runs[0][:200]!r} on this route "
            f"(checked teams: {', '.join(repr(t) for t in identity.team_ids[:10])})",
            identity,
            role,
        )
    return NO_TEAM


def team_refusal(
    choice: TeamChoice,
    runs: tuple[str, ...],
    identity: Identity,
    role: Role | None,
    proxy_models: frozenset[str] = frozenset(),
) -> Deny | None:
    """The chosen team's model list refusing a model the request may run (LiteLLM's
    ``can_team_access_model`` in ``common_checks``)."""
    entry = choice.entry
    rule = None if entry is None else team_rule(entry.models)
    if entry is None or rule is None:
        return None
    for model in runs:
        if not team_allows(entry.models, model, proxy_models):
            return Deny(
                403,
                Reason.MODEL_NOT_ALLOWED,
                f"team {choice.team_id!r} may not use model {model[:200]!r}; the team's models: "
                + ", ".join(rule.entries[:20]),
                identity,
                role,
            )
    return None

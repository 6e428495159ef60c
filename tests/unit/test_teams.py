"""The team a request runs as, and team-based model access (policy/teams.py through decide)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.identity.fields import identity_from_claims
from extauthz.model import Allow, Decision, Deny, Identity, Reason, RequestView, Role
from extauthz.policy.compiled import Policy
from extauthz.policy.decide import decide
from extauthz.policy.teams import team_rule
from extauthz.state.protocol import StateSnapshot, TeamEntry

ENV = {"JWT_PUBLIC_KEY_URL": "file:///dev/null"}
GROUPS = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth:
    user_id_jwt_field: sub
    team_ids_jwt_field: groups
    %s
  role_permissions:
    - role: internal_user
      models: ["gpt-4o", "claude", "gpt-mini", "fallback-big"]
model_list:
  - {model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}
  - {model_name: claude, litellm_params: {model: anthropic/claude}}
  - {model_name: gpt-mini, litellm_params: {model: openai/gpt-4o-mini}}
  - {model_name: fallback-big, litellm_params: {model: openai/big}}
router_settings:
  fallbacks: [{gpt-mini: [fallback-big]}]
"""
ALIAS = """
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth:
    user_id_jwt_field: sub
    team_id_jwt_field: client_id
    team_alias_jwt_field: team_name
    %s
"""
REGISTRY = StateSnapshot.of(
    frozenset(),
    frozenset(),
    1,
    [
        TeamEntry("eng", "Engineering", ("gpt-4o", "gpt-mini")),
        TeamEntry("research", "Research", ("claude",)),
        TeamEntry("all", "Everything", ()),
    ],
)


def policy(text: str, extra: str = "") -> Policy:
    return compile_policy(parse_yaml(text % extra), ENV).policy


def identity(p: Policy, claims: dict[str, Any]) -> Identity:
    ident = identity_from_claims(claims, p)
    assert isinstance(ident, Identity)
    return ident


def run(
    p: Policy,
    claims: dict[str, Any],
    model: str | None = "gpt-4o",
    state: StateSnapshot = REGISTRY,
    header: str | None = None,
    path: str = "/v1/chat/completions",
) -> Decision:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["x-litellm-team-id"] = header
    body = json.dumps({"model": model}).encode() if model else b"{}"
    req = RequestView("POST", path, headers, body)
    return decide(req, path, "", identity(p, claims), p, state)


def team_of(d: Decision) -> str | None:
    assert isinstance(d, Allow), d
    return d.identity.team_id


def denied(d: Decision) -> Deny:
    assert isinstance(d, Deny), d
    return d


def reason(d: Decision) -> Reason:
    return denied(d).reason


def test_groups_pick_the_first_team_with_the_model() -> None:
    p = policy(GROUPS)
    alice = {"sub": "alice", "groups": ["research", "eng"]}
    assert team_of(run(p, alice, "gpt-4o")) == "eng"
    assert team_of(run(p, alice, "claude")) == "research"
    d = run(p, {"sub": "bob", "groups": ["research"]}, "gpt-4o")
    assert reason(d) is Reason.MODEL_NOT_ALLOWED and "no team of this token" in denied(d).message


def test_an_alias_or_fallback_counts_as_the_model_it_runs() -> None:
    """gpt-mini falls back to fallback-big, which no team lists: no team may run it."""
    p = policy(GROUPS)
    d = run(p, {"sub": "alice", "groups": ["eng"]}, "gpt-mini")
    assert reason(d) is Reason.MODEL_NOT_ALLOWED
    registry = StateSnapshot.of(
        frozenset(), frozenset(), 1, [TeamEntry("eng", None, ("gpt-mini", "fallback-big"))]
    )
    assert team_of(run(p, {"sub": "alice", "groups": ["eng"]}, "gpt-mini", registry)) == "eng"


def test_unregistered_group_teams_are_skipped_while_the_registry_is_in_use() -> None:
    p = policy(GROUPS)
    assert team_of(run(p, {"sub": "a", "groups": ["ghost", "all"]}, "claude")) == "all"
    assert reason(run(p, {"sub": "a", "groups": ["ghost"]}, "claude")) is Reason.MODEL_NOT_ALLOWED
    # No registry: every team exists with every model (as before the registry).
    empty = StateSnapshot()
    assert team_of(run(p, {"sub": "a", "groups": ["ghost"]}, "claude", empty)) == "ghost"


def test_no_model_picks_the_first_registered_team() -> None:
    p = policy(GROUPS)
    d = run(p, {"sub": "a", "groups": ["ghost", "research"]}, None, path="/v1/models")
    assert isinstance(d, Allow) and d.identity.team_id == "research"


def test_the_header_picks_a_team_of_the_token_by_id_or_alias() -> None:
    p = policy(GROUPS)
    alice = {"sub": "alice", "groups": ["research", "eng"]}
    assert team_of(run(p, alice, "gpt-4o", header="eng")) == "eng"
    assert team_of(run(p, alice, "gpt-4o", header="Engineering")) == "eng"
    d = run(p, alice, "gpt-4o", header="research")  # picked, and its models refuse gpt-4o
    assert reason(d) is Reason.MODEL_NOT_ALLOWED and "team 'research'" in denied(d).message
    assert reason(run(p, alice, "gpt-4o", header="all")) is Reason.TEAM_NOT_ALLOWED


def test_enforce_team_based_model_access_needs_a_team() -> None:
    p = policy(GROUPS, "enforce_team_based_model_access: true")
    assert reason(run(p, {"sub": "alice"}, "gpt-4o")) is Reason.NO_TEAM
    assert team_of(run(p, {"sub": "alice", "groups": ["eng"]}, "gpt-4o")) == "eng"
    q = policy(GROUPS)
    allowed = run(q, {"sub": "alice"}, "gpt-4o")
    assert isinstance(allowed, Allow) and allowed.identity.team_id is None


def test_role_permissions_still_apply() -> None:
    """A team's models allow every model, but the role's list does not: refused."""
    p = policy(GROUPS)
    d = run(p, {"sub": "a", "groups": ["all"]}, "openai/big")
    assert reason(d) is Reason.MODEL_NOT_ALLOWED and "role internal_user" in denied(d).message


def test_a_blocked_chosen_team_is_refused() -> None:
    p = policy(GROUPS)
    blocked = StateSnapshot.of(
        frozenset({"eng"}), frozenset(), 2, [TeamEntry("eng", None, ()), TeamEntry("b", None, ())]
    )
    assert reason(run(p, {"sub": "a", "groups": ["eng"]}, "gpt-4o", blocked)) is (
        Reason.TEAM_BLOCKED
    )


def test_alias_claims_resolve_through_the_registry() -> None:
    p = policy(ALIAS)
    assert team_of(run(p, {"sub": "a", "team_name": "Research"}, "claude")) == "research"
    d = run(p, {"sub": "a", "team_name": "Nobody"}, "claude")
    assert reason(d) is Reason.NO_TEAM and "names no registered team" in denied(d).message
    # The team id claim comes first.
    assert team_of(run(p, {"client_id": "eng", "team_name": "Research"}, "gpt-4o")) == "eng"


def test_an_alias_beats_team_id_default() -> None:
    p = policy(ALIAS, "team_id_default: all")
    assert team_of(run(p, {"sub": "a", "team_name": "Research"}, "claude")) == "research"
    assert team_of(run(p, {"sub": "a"}, "claude")) == "all"


def test_an_unknown_team_claim_is_refused_unless_upserted() -> None:
    p = policy(ALIAS)
    d = run(p, {"client_id": "ghost"}, "claude")
    assert reason(d) is Reason.TEAM_NOT_FOUND and "POST /team/new" in denied(d).message
    up = policy(ALIAS, "team_id_upsert: true")
    assert team_of(run(up, {"client_id": "ghost"}, "claude")) == "ghost"
    assert team_of(run(p, {"client_id": "ghost"}, "claude", StateSnapshot())) == "ghost"


def test_a_registered_team_claims_models_apply_to_team_tokens() -> None:
    p = policy(ALIAS)
    d = run(p, {"client_id": "research"}, "gpt-4o")
    assert isinstance(d, Deny) and d.role is Role.TEAM and d.reason is Reason.MODEL_NOT_ALLOWED
    assert team_of(run(p, {"client_id": "research"}, "claude")) == "research"


def test_a_cut_body_is_refused_when_the_team_list_matters() -> None:
    p = policy(ALIAS)
    ident = identity(p, {"client_id": "research"})
    req = RequestView(
        "POST", "/v1/chat/completions", {"content-type": "application/json"}, b'{"mo', True
    )
    d = decide(req, "/v1/chat/completions", "", ident, p, REGISTRY)
    assert reason(d) is Reason.BODY_CUT
    ident = identity(p, {"client_id": "all"})
    assert isinstance(decide(req, "/v1/chat/completions", "", ident, p, REGISTRY), Allow)


@pytest.mark.parametrize(
    "models,model,allowed",
    [
        ((), "anything", True),
        (("*",), "anything", True),
        (("all-proxy-models",), "anything", True),
        (("no-default-models",), "gpt-4o", False),
        (("openai/*",), "openai/gpt-4o", True),
        (("openai/*",), "gpt-4o", False),  # no provider inference (a README difference)
        (("gpt-4o",), "gpt-4o-mini", False),
        (("gpt-4.o",), "gpt-4xo", False),  # only * is special
    ],
)
def test_team_model_lists_mean_what_litellm_says(
    models: tuple[str, ...], model: str, allowed: bool
) -> None:
    rule = team_rule(models)
    assert (rule is None or rule.allows(model)) is allowed


def test_team_ids_claim_forms() -> None:
    p = policy(GROUPS)
    assert identity(p, {"sub": "a", "groups": "eng"}).team_ids == ("eng",)  # a string is one
    assert identity(p, {"sub": "a", "groups": [1, "x", "x"]}).team_ids == ("1", "x")
    bad = identity_from_claims({"sub": "a", "groups": [{"x": 1}]}, p)
    assert isinstance(bad, Deny) and bad.status == 401
    many = identity_from_claims({"sub": "a", "groups": [str(i) for i in range(300)]}, p)
    assert isinstance(many, Deny) and "more than 256 teams" in many.message


def test_upsert_does_not_reach_the_group_search() -> None:
    """LiteLLM's group search reads teams without creating them; a header or claim team is."""
    p = policy(GROUPS, "team_id_upsert: true")
    assert reason(run(p, {"sub": "a", "groups": ["ghost"]}, "claude")) is Reason.MODEL_NOT_ALLOWED
    assert team_of(run(p, {"sub": "a", "groups": ["ghost"]}, "claude", header="ghost")) == "ghost"


def test_the_decision_says_how_the_team_was_chosen() -> None:
    p = policy(GROUPS)
    d = run(p, {"sub": "alice", "groups": ["research", "eng"]}, "gpt-4o")
    assert isinstance(d, Allow) and d.team_source == "first team in claim 'groups' with access"
    d = run(p, {"sub": "alice", "groups": ["research", "eng"]}, "gpt-4o", header="Engineering")
    assert isinstance(d, Allow) and d.team_source == "x-litellm-team-id header"
    a = policy(ALIAS)
    d = run(a, {"sub": "a", "team_name": "Research"}, "claude")
    assert isinstance(d, Allow) and d.team_source == "alias in claim 'team_name'"
    d = run(a, {"client_id": "eng"}, "gpt-4o")
    assert isinstance(d, Allow) and d.team_source == "claim 'client_id'"


def test_all_team_models_is_every_model_the_config_serves() -> None:
    """LiteLLM expands "all-team-models" to the router's model names (model_list here)."""
    p = policy(GROUPS)
    registry = StateSnapshot.of(
        frozenset(), frozenset(), 1, [TeamEntry("t", None, ("all-team-models",))]
    )
    assert team_of(run(p, {"sub": "a", "groups": ["t"]}, "claude", registry)) == "t"
    d = run(p, {"sub": "a", "groups": ["t"]}, "not-served", registry)
    assert reason(d) is Reason.MODEL_NOT_ALLOWED and "no team of this token" in denied(d).message
    a = policy(ALIAS)  # no model_list: the name is only itself, as LiteLLM without a router
    registry = StateSnapshot.of(
        frozenset(), frozenset(), 1, [TeamEntry("t", None, ("all-team-models",))]
    )
    assert reason(run(a, {"client_id": "t"}, "claude", registry)) is Reason.MODEL_NOT_ALLOWED

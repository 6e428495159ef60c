"""Every id read from a claim has one canonical form, the same for blocks, headers and metadata.

The rule (README, "Ids"): a string is taken as it is, unless it has leading or trailing
whitespace, a control character, or more than 1024 characters (then the token is refused, 401
malformed_token naming the claim); an integer (not a bool) becomes its decimal string, as
LiteLLM's ``str()`` makes it; a list counts by its first element (LiteLLM); anything else (bool,
float, object) is refused. The admin API applies the same rule to the ids it is given.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from extauthz.admin.service import AdminError, check_id, check_ids
from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.errors import ConfigError
from extauthz.identity.claims import canonical_id
from extauthz.identity.fields import identity_from_claims
from extauthz.model import Allow, Deny, Identity, Reason, RequestView
from extauthz.policy.decide import decide
from extauthz.policy.verdict import render
from extauthz.state.protocol import StateSnapshot

POLICY_YAML = """
general_settings:
  enable_jwt_auth: True
  litellm_jwtauth:
    team_id_jwt_field: client_id
    user_id_jwt_field: uid
    org_id_jwt_field: org
    end_user_id_jwt_field: customer
    user_email_jwt_field: email
"""
POLICY = compile_policy(parse_yaml(POLICY_YAML), {"JWT_PUBLIC_KEY_URL": "u"}).policy
FIELDS = {  # Identity attribute → the claim this policy reads it from
    "team_id": "client_id",
    "user_id": "uid",
    "org_id": "org",
    "end_user_id": "customer",
    "email": "email",
}
CHAT = "/v1/chat/completions"

REFUSED: list[tuple[str, Any]] = [
    ("leading-space", " team-blocked"),
    ("trailing-space", "team-blocked "),
    ("both-spaces", " team-blocked "),
    ("tab", "team-blocked\t"),
    ("nbsp", "\u00a0team-blocked"),
    ("ideographic-space", "team-blocked\u3000"),
    ("only-spaces", "   "),
    ("newline-inside", "a\nb"),
    ("nul", "a\x00b"),
    ("c1-control", "a\x85b"),
    ("too-long", "x" * 1025),
    ("too-long-integer", -(10**1024)),
    ("bool-true", True),
    ("bool-false", False),
    ("float-fraction", 4242.5),
    ("float-whole", 4242.0),
    ("object", {"id": "t"}),
    ("list-of-list", [["t"]]),
    ("list-first-spaced", [" t ", "u"]),
]
NORMALISED: list[tuple[str, Any, str | None]] = [
    ("string", "team-a", "team-a"),
    ("inner-space-kept", "team a", "team a"),
    ("integer", 4242, "4242"),
    ("negative-integer", -7, "-7"),
    ("zero", 0, "0"),
    ("big-integer", 2**63, str(2**63)),
    ("list-first-integer", [4242, "x"], "4242"),
    ("list-first-string", ["t1", "t2"], "t1"),
    ("empty-string", "", None),
    ("null", None, None),
    ("empty-list", [], None),
    ("longest", "x" * 1024, "x" * 1024),
    ("longest-integer", -(10**1023 - 1), "-" + "9" * 1023),
]


@pytest.mark.parametrize("attr", list(FIELDS))
@pytest.mark.parametrize("value", [v for _, v in REFUSED], ids=[i for i, _ in REFUSED])
def test_odd_ids_are_refused_naming_the_claim(attr: str, value: Any) -> None:
    """Each id field: a value with no exact, header-safe form is a 401 that names the claim."""
    claim = FIELDS[attr]
    result = identity_from_claims({"uid": "u", claim: value}, POLICY)
    assert isinstance(result, Deny), result
    assert (result.status, result.reason) == (401, Reason.MALFORMED_TOKEN)
    assert repr(claim) in result.message


@pytest.mark.parametrize("attr", [a for a in FIELDS if a != "email"])
@pytest.mark.parametrize(
    "value,expected", [(v, e) for _, v, e in NORMALISED], ids=[i for i, _, _ in NORMALISED]
)
def test_ids_take_their_canonical_form(attr: str, value: Any, expected: str | None) -> None:
    """Each id field: strings as they are, integers as decimal strings, lists by their first."""
    claims = {FIELDS[attr]: value}
    identity = identity_from_claims(claims, POLICY)
    assert isinstance(identity, Identity), identity
    assert getattr(identity, attr) == expected


def test_an_integer_email_is_its_decimal_string() -> None:
    """The email claim follows the same rule (the email gate judges the address itself)."""
    identity = identity_from_claims({"uid": "u", "email": 4242}, POLICY)
    assert isinstance(identity, Identity) and identity.email == "4242"


def allow_or_deny(claims: dict[str, Any], state: StateSnapshot) -> Allow | Deny:
    identity = identity_from_claims(claims, POLICY)
    if isinstance(identity, Deny):
        return identity
    request = RequestView("POST", CHAT, {"content-type": "application/json"}, b'{"model": "m"}')
    return decide(request, CHAT, "", identity, POLICY, state)


def test_a_spaced_team_id_does_not_slip_past_its_block() -> None:
    """``" team-blocked "`` is refused, not allowed as a team the block does not name."""
    state = StateSnapshot(frozenset({"team-blocked"}))
    decision = allow_or_deny({"client_id": " team-blocked ", "uid": "u"}, state)
    assert isinstance(decision, Deny) and decision.status == 401, decision
    assert "'client_id'" in decision.message and "whitespace" in decision.message


def test_a_numeric_team_id_is_the_blocked_team() -> None:
    """``client_id: 4242`` is team "4242": blocked when "4242" is, never "no team"."""
    state = StateSnapshot(frozenset({"4242"}))
    decision = allow_or_deny({"client_id": 4242, "uid": "u"}, state)
    assert isinstance(decision, Deny), decision
    assert (decision.status, decision.reason) == (403, Reason.TEAM_BLOCKED)


def test_a_numeric_end_user_id_is_the_blocked_end_user() -> None:
    """The end-user block reads the same canonical id."""
    state = StateSnapshot(frozenset(), frozenset({"77"}))
    decision = allow_or_deny({"client_id": "t", "customer": 77}, state)
    assert isinstance(decision, Deny), decision
    assert decision.reason is Reason.END_USER_BLOCKED


def test_headers_and_metadata_carry_the_id_the_block_checked() -> None:
    """The upstream and the access log see "4242", the value the block check compared."""
    claims = {"client_id": 4242, "uid": 17, "org": [5], "customer": 6, "email": "a@b.io"}
    decision = allow_or_deny(claims, StateSnapshot())
    assert isinstance(decision, Allow), decision
    verdict = render(decision, POLICY)
    headers = dict(verdict.headers)
    assert headers["x-auth-team-id"] == verdict.metadata["team_id"] == "4242"
    assert headers["x-auth-user-id"] == verdict.metadata["user_id"] == "17"
    assert headers["x-auth-org-id"] == verdict.metadata["org_id"] == "5"
    assert headers["x-auth-end-user-id"] == verdict.metadata["end_user_id"] == "6"


# -- the admin API's ids: the same rule ---------------------------------------------------------


@pytest.mark.parametrize("value", [v for _, v in REFUSED], ids=[i for i, _ in REFUSED])
def test_admin_refuses_the_ids_a_token_may_not_carry(value: Any) -> None:
    """What a token may not carry, no block may name: 400 with the field's name."""
    with pytest.raises(AdminError) as caught:
        check_id(value, "team_id")
    assert caught.value.status == 400 and "team_id" in caught.value.message


@pytest.mark.parametrize("value", [None, "", []], ids=["null", "empty", "empty-list"])
def test_admin_needs_an_id(value: Any) -> None:
    """No id at all is a 400 too (a claim without one is simply absent)."""
    with pytest.raises(AdminError) as caught:
        check_id(value, "team_id")
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "value,expected",
    [(v, e) for _, v, e in NORMALISED if e is not None and not isinstance(v, list)],
    ids=[i for i, v, e in NORMALISED if e is not None and not isinstance(v, list)],
)
def test_admin_takes_ids_in_the_tokens_canonical_form(value: Any, expected: str) -> None:
    """An admin's 4242 is "4242", the id a token's 4242 has."""
    assert check_id(value, "team_id") == expected
    assert check_ids([value], "user_ids") == [expected]


SCALARS = REFUSED + [(i, v) for i, v, _ in NORMALISED]


@pytest.mark.parametrize(
    "value",
    [v for _, v in SCALARS if not isinstance(v, list)],
    ids=[i for i, v in SCALARS if not isinstance(v, list)],
)
def test_admin_and_tokens_never_disagree(value: Any) -> None:
    """For any one value, a token's id and an admin's id are the same, or neither exists."""
    try:
        token_side = canonical_id(value, "claim 'client_id'")
    except ValueError:
        token_side = None
    try:
        admin_side: str | None = check_id(value, "team_id")
    except AdminError:
        admin_side = None
    assert admin_side == token_side


def test_team_id_default_follows_the_rule() -> None:
    """A configured default team id with edge whitespace is a config error, not a silent id."""
    text = POLICY_YAML + '    team_id_default: " team-x "\n'
    with pytest.raises(ConfigError, match="team_id_default"):
        compile_policy(parse_yaml(text), {"JWT_PUBLIC_KEY_URL": "u"})


def test_refusal_never_echoes_the_value() -> None:
    """The message names the claim, not its (attacker-chosen) content."""
    secretish = " sk-live-" + "z" * 20 + " "
    result = identity_from_claims({"client_id": secretish}, POLICY)
    assert isinstance(result, Deny) and "sk-live" not in result.message
    assert "sk-live" not in json.dumps(render(result, POLICY).body)

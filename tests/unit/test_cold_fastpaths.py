"""The new-token fast paths answer exactly as the general paths they skip.

``plain_id`` lets ``canonical_id`` and ``string_claim`` skip the control-character regex;
``read_header`` remembers vetted headers; an allow's CheckResponse is copied from a shape.
Each is compared here with the general path on hostile values, so a divergence fails.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz import authorizer as authorizer_module
from extauthz.envoy import grpc_service
from extauthz.envoy.grpc_service import to_check_response
from extauthz.identity import tokens
from extauthz.identity.claims import (
    MAX_ID_CHARS,
    ClaimValueError,
    canonical_id,
    plain_id,
    string_claim,
)
from extauthz.identity.roles import RoleClaims
from extauthz.identity.tokencache import ExpiringCache
from extauthz.identity.tokens import Header, TokenFailure, TokenRules, read_header
from extauthz.identity.verifier import Verified
from extauthz.model import Allow, Identity, Reason, RequestView, Verdict
from extauthz.policy.decide import Admission
from tests.unit.keys import rs_token
from tests.unit.test_check_threads import authorizer as threaded_authorizer

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def general_id(value: str) -> str | type[ClaimValueError] | None:
    """``canonical_id``'s rule for a string, written out without the fast path."""
    if not value:
        return None
    if len(value) > MAX_ID_CHARS or _CONTROLS.search(value) or value[0].isspace():
        return ClaimValueError
    return ClaimValueError if value[-1].isspace() else value


def fast_id(value: object) -> str | type[ClaimValueError] | None:
    try:
        return canonical_id(value, "x")
    except ClaimValueError:
        return ClaimValueError


TRICKY_IDS = [
    "",
    " ",
    "a",
    " a",
    "a ",
    "a b",
    "\ta",
    "a\n",
    "a\x00b",
    "a\x1fb",
    "a\x7fb",
    "a\x85b",
    "a\x9fb",
    "a\xa0",
    "\xa0a",
    "a\u2028",
    "\u3000a",
    "a\ud800b",
    "\udfff",
    "é",
    "ü ",
    "x" * MAX_ID_CHARS,
    "x" * (MAX_ID_CHARS + 1),
    "~!@#$%^&*()_+{}|:<>?`-=[]\\;',./\"",
    "a\u200bb",  # zero-width space: printable? no (Cf); a legal id as before
    "\U0001f600",
]


@pytest.mark.parametrize("value", TRICKY_IDS)
def test_canonical_id_of_tricky_strings_is_the_general_rule(value: str) -> None:
    assert fast_id(value) == general_id(value)


@given(st.text(alphabet=st.characters(max_codepoint=0x3000), max_size=40))
@settings(max_examples=500, deadline=None)
def test_canonical_id_of_any_string_is_the_general_rule(value: str) -> None:
    assert fast_id(value) == general_id(value)
    if plain_id(value):
        assert general_id(value) == value  # plain means: taken as it is


@pytest.mark.parametrize(
    "value", [0, -1, 10**20, True, False, 1.5, None, [], ["a"], {}, {"a": 1}, b"a"]
)
def test_canonical_id_of_non_strings_is_unchanged(value: object) -> None:
    expected: Any
    if value is None:
        expected = None
    elif isinstance(value, int) and not isinstance(value, bool):
        expected = str(value)
    else:
        expected = ClaimValueError
    assert fast_id(value) == expected


@pytest.mark.parametrize("value", [*TRICKY_IDS, 7, True, 1.5, [" a"], ["a\x00"], ["ok"], []])
def test_string_claim_answers_as_canonical_id(value: object) -> None:
    first = value[0] if isinstance(value, list) and value else None
    expected = fast_id(first if isinstance(value, list) else value)
    try:
        got: object = string_claim({"c": value}, "c", ("c",))
    except ClaimValueError as exc:
        assert "'c'" in str(exc)  # the claim is named, its value never quoted
        got = ClaimValueError
    assert got == expected


def test_identity_fields_are_in_the_order_identity_from_claims_passes_them() -> None:
    """``identity_from_claims`` builds ``Identity`` by position, the role claims last."""
    assert Identity._fields == (
        "kind",
        "user_id",
        "team_id",
        "org_id",
        "end_user_id",
        "email",
        "scopes",
        "roles",
        "subject",
        "email_domain",
        "email_problem",
        "user_id_from_email",
        "team_ids",
        "team_alias",
        "team_id_defaulted",
        "issuer",
        "userinfo",
        *RoleClaims._fields,
    )
    assert RoleClaims._fields == (
        "mapped_role",
        "mapped_from",
        "object_id",
        "role_problem",
        "synced_role",
        "synced_from",
    )


def test_admission_fields_are_in_the_order_admit_passes_them() -> None:
    """``admit`` builds ``Admission`` by position."""
    assert tuple(f.name for f in dataclasses.fields(Admission)) == (
        "identity",
        "role",
        "rule",
        "read_body",
        "admin_api",
        "catalog",
        "forced",
        "steering",
        "teams",
        "team_route",
        "scope",
        "promoted",
        "header_teams",
        "user_param",
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(header: dict[str, Any] | str) -> str:
    raw = header if isinstance(header, str) else json.dumps(header)
    return f"{_b64(raw.encode())}.{_b64(b'{}')}.{_b64(b'sig')}"


HEADERS: list[dict[str, Any] | str] = [
    {"alg": "RS256", "kid": "k1"},
    {"alg": "RS256"},
    {"alg": "ES256", "kid": "k2", "typ": "JWT"},
    {"alg": "HS256", "kid": "k1"},
    {"alg": "none"},
    {"alg": "RS256", "crit": ["b64"]},
    {"alg": "RS256", "kid": 5},
    {"kid": "k1"},
    "[1]",
    "not json",
]


@pytest.mark.parametrize("header", HEADERS)
def test_read_header_remembered_or_not_is_the_same(header: dict[str, Any] | str) -> None:
    tokens._headers.clear()
    token = _token(header)
    fresh = tokens._vet_header(token.partition(".")[0])
    assert read_header(token, TokenRules()) == fresh
    assert read_header(token, TokenRules()) == fresh  # the second read may come from memory
    segment = token.partition(".")[0]
    assert (segment in tokens._headers) is isinstance(fresh, Header)  # refusals are not kept


def test_read_header_memory_is_bounded_and_checks_shape_first() -> None:
    tokens._headers.clear()
    for i in range(tokens.MEMO_HEADERS * 2):
        assert isinstance(
            read_header(_token({"alg": "RS256", "kid": f"k{i}"}), TokenRules()), Header
        )
    assert len(tokens._headers) <= tokens.MEMO_HEADERS
    good = _token({"alg": "RS256", "kid": "k1"})
    read_header(good, TokenRules())
    for bad in (good + ".x", good.replace(".", "", 1), good.rpartition(".")[0]):
        failure = read_header(bad, TokenRules())
        assert isinstance(failure, TokenFailure)
        assert failure.reason is Reason.MALFORMED_TOKEN
    too_big = read_header(good, TokenRules(max_token_bytes=10))
    assert isinstance(too_big, TokenFailure) and too_big.reason is Reason.TOKEN_TOO_LARGE


def built_field_by_field(verdict: Verdict) -> external_auth_pb2.CheckResponse:
    """An allow as ``to_check_response`` built it before shapes: message by message."""
    response = external_auth_pb2.CheckResponse()
    for key, value in verdict.metadata.items():
        response.dynamic_metadata.fields[key].string_value = value
    response.status.code = code_pb2.OK
    ok = response.ok_response
    ok.SetInParent()
    for key, value in verdict.headers:
        option = ok.headers.add(append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
        option.header.key = key
        option.header.value = value
    ok.headers_to_remove.extend(verdict.remove)
    return response


ODD_VALUES = ["", "a", " a ", "é" * 300, "x" * 5000, "\x00\x7f", "a,b;c=d", "\u2028", "😀"]
NAMES = ["x-auth-user-id", "x-auth-team-id", "x-Odd", "", ":authority", "x-auth-user-id"]


def _allow(headers: tuple[tuple[str, str], ...], remove: tuple[str, ...]) -> Verdict:
    metadata = {"decision": "allow", **{f"k{i}": v for i, (_, v) in enumerate(headers)}}
    return Verdict(True, 200, Reason.ALLOWED, headers, remove, metadata)


@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(ODD_VALUES)), max_size=7),
    st.lists(st.sampled_from(NAMES), max_size=6),
)
@settings(max_examples=300, deadline=None)
def test_allow_from_a_shape_is_the_message_built_field_by_field(
    headers: list[tuple[str, str]], remove: list[str]
) -> None:
    verdict = _allow(tuple(headers), tuple(remove))
    got, want = to_check_response(verdict), built_field_by_field(verdict)
    assert got == want
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    again = to_check_response(verdict)  # from the remembered shape, which stays untouched
    assert again == want
    assert not any(o.header.value for o in grpc_service._allow_shape(verdict).ok_response.headers)


def test_allow_with_unencodable_value_raises_as_before() -> None:
    verdict = _allow((("x-auth-user-id", "a\udc80"),), ())
    with pytest.raises(UnicodeEncodeError):
        built_field_by_field(verdict)
    with pytest.raises(UnicodeEncodeError):
        to_check_response(verdict)


def test_allow_shapes_are_bounded() -> None:
    grpc_service._shapes.clear()
    for i in range(grpc_service.MAX_SHAPES + 5):
        to_check_response(_allow((("x", "v"),), (f"r{i}",)))
    assert len(grpc_service._shapes) <= grpc_service.MAX_SHAPES


class _CountingCache(ExpiringCache[Verified]):
    """The token cache, counting lookups."""

    __slots__ = ("gets",)

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.gets = 0

    def get(self, key: str, now: float) -> Verified | None:
        self.gets += 1
        return super().get(key, now)


def test_a_new_token_is_looked_up_in_the_cache_once() -> None:
    """``identify_now`` missed: ``verify_now`` verifies without a second lookup."""
    authorizer = threaded_authorizer(100)
    assert authorizer.verifier is not None
    cache = authorizer.verifier._cache = _CountingCache(100)
    request = RequestView(
        method="POST",
        path="/v1/chat/completions",
        headers={"authorization": f"Bearer {rs_token({'sub': 'new'})}"},
    )
    assert isinstance(authorizer.decide_now(request), Allow)
    assert (cache.gets, len(cache)) == (1, 1)
    assert isinstance(authorizer.decide_now(request), Allow)  # now a hit
    assert (cache.gets, len(cache)) == (2, 1)


def test_a_new_jwt_is_shape_tested_once_by_the_authorizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a userinfo endpoint only a JWT reaches ``verify_now``: no second pass over it."""
    calls: list[int] = []

    def counted(token: str) -> bool:
        calls.append(len(token))  # not the token: a failure message would show it
        return tokens.looks_like_jwt(token)

    monkeypatch.setattr(authorizer_module, "looks_like_jwt", counted)
    authorizer = threaded_authorizer(100)
    request = RequestView(
        method="POST",
        path="/v1/chat/completions",
        headers={"authorization": f"Bearer {rs_token({'sub': 'shape'})}"},
    )
    assert isinstance(authorizer.decide_now(request), Allow)
    assert len(calls) == 1  # identify_now's

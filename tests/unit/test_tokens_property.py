"""Hostile tokens never raise: property tests over the token parser and verifier."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz.identity.credentials import extract_credential
from extauthz.identity.keyring import KeyRing
from extauthz.identity.tokens import (
    TokenFailure,
    TokenRules,
    UnknownKid,
    b64url_decode,
    read_header,
    verify_token,
)
from tests.unit.keys import NOW, rs_token, rsa_jwk

RING = KeyRing.from_jwks([{"keys": [rsa_jwk()]}])
RULES = TokenRules()
GOOD = rs_token({"sub": "alice"})


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


def _run(token: str) -> Any:
    header = read_header(token, RULES)
    if isinstance(header, TokenFailure):
        return header
    return verify_token(token, header, RING, RULES, NOW)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_never_raises(token: str) -> None:
    """Arbitrary text is refused with a reason, never an exception."""
    assert isinstance(_run(token), TokenFailure | UnknownKid | dict)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["alg", "kid", "crit", "typ", "jku"]), json_values),
    st.dictionaries(st.text(max_size=6), json_values, max_size=5),
    st.binary(max_size=64),
)
def test_structured_garbage_never_raises(
    header: dict[str, Any], claims: dict[str, Any], sig: bytes
) -> None:
    """Well-formed JSON with any header values and any claims never raises and never verifies."""
    token = ".".join(
        (_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(sig))
    )
    result = _run(token)
    assert not isinstance(result, dict)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.characters(codec="ascii"))
def test_any_single_character_change_is_refused(pos: int, ch: str) -> None:
    """Flipping any character of a valid token never yields different verified claims."""
    mutated = GOOD[:pos] + ch + GOOD[pos + 1 :]
    result = _run(mutated)
    if isinstance(result, dict):
        assert result["sub"] == "alice"  # base64 slack bits may decode to the same bytes


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["authorization", "x-api-key", "api-key", "x-litellm-api-key"]),
        st.text(max_size=40),
    )
)
def test_credential_extraction_never_raises(headers: dict[str, str]) -> None:
    """Any header values give a credential or None."""
    extract_credential(headers)


def test_property_suite_sees_a_valid_token() -> None:
    """Sanity: the unmutated token verifies, so the properties above can fail."""
    assert isinstance(asyncio.run(asyncio.sleep(0, _run(GOOD))), dict)


@given(st.binary(max_size=64))
def test_b64url_round_trips_any_bytes(data: bytes) -> None:
    """Unpadded base64url of any bytes decodes back to exactly those bytes."""
    assert b64url_decode(base64.urlsafe_b64encode(data).rstrip(b"=").decode()) == data


@given(st.text(alphabet="AZaz09-_+/= \n.é\x00", max_size=12))
def test_b64url_accepts_only_what_the_strict_alphabet_allows(part: str) -> None:
    """Agrees with the reference rule: only [A-Za-z0-9_-], never padding, a valid length."""
    valid = all(c.isascii() and (c.isalnum() or c in "-_") for c in part) and len(part) % 4 != 1
    expected = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) if valid else None
    assert b64url_decode(part) == expected

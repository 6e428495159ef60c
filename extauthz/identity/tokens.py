"""Verify a compact JWS token against a key ring, then check its time and audience claims.

Pure: the key ring and the current time are arguments. Failures come back as ``TokenFailure``
values with a stable reason and a message meant for the client; nothing here raises, and no
message ever contains the token.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from extauthz.identity.keyring import ALLOWED_ALGS, KeyRing
from extauthz.model import Reason

_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


@dataclass(frozen=True, slots=True)
class TokenRules:
    """How strictly to check claims; built from config, never changed per request."""

    audiences: frozenset[str] = frozenset()
    issuers: frozenset[str] = frozenset()
    leeway: float = 30.0
    require_exp: bool = True
    max_token_bytes: int = 8192
    # ``litellm_jwtauth.issuers``: (issuer, the rules its tokens are checked by), in config order.
    providers: tuple[tuple[str, TokenRules], ...] = ()


@dataclass(frozen=True, slots=True)
class TokenFailure:
    """Why a token was refused: ``reason`` for metrics, ``message`` for the client."""

    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class UnknownKid:
    """The token's ``kid`` is not in the ring: the caller may refetch keys and try again."""

    kid: str


class Header(NamedTuple):
    """The parts of a JOSE header we act on (made once per new token: a cheap NamedTuple)."""

    alg: str
    kid: str | None


def looks_like_jwt(token: str) -> bool:
    """LiteLLM's test: a JWT is anything that splits on '.' into exactly three parts."""
    return token.count(".") == 2


def b64url_decode(part: str) -> bytes | None:
    """Strict base64url (no padding required, no stray characters); None when invalid.

    One strict C decode after ruling out the standard alphabet's ``+ / =``: three of these run
    per new token, where a regex over the signature alone cost more than the decode.
    """
    if "+" in part or "/" in part or "=" in part or not part.isascii():
        return None
    data = part.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(part) % 4)
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def segment_object(part: str) -> dict[str, Any] | None:
    """A base64url JSON object, parsed by orjson: UTF-8 only (RFC 7515), and NaN, Infinity,
    lone surrogates and numbers beyond a double are refused rather than read (fail closed)."""
    raw = b64url_decode(part)
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# An IdP signs every token with the same few headers, so a header segment that passed is
# remembered: a new token skips a base64 decode, a JSON parse and the checks (~15k of its
# ~450k instructions). Bounded (made-up headers can only make it start over); refusals are
# not kept, so they cannot push the good headers out.
MEMO_HEADERS = 64
MEMO_HEADER_CHARS = 512
_headers: dict[str, Header] = {}


def read_header(token: str, rules: TokenRules) -> Header | TokenFailure:
    """Parse and vet the JOSE header before any key is chosen."""
    if len(token) > rules.max_token_bytes:
        return TokenFailure(
            Reason.TOKEN_TOO_LARGE,
            f"the token is larger than {rules.max_token_bytes} bytes; ask your identity "
            "provider for a smaller token or raise extauthz.max_token_bytes",
        )
    if token.count(".") != 2:
        return TokenFailure(Reason.MALFORMED_TOKEN, "the token is not a compact JWT (3 parts)")
    segment = token[: token.index(".")]
    known = _headers.get(segment)
    if known is not None:
        return known
    vetted = _vet_header(segment)
    if isinstance(vetted, Header) and len(segment) <= MEMO_HEADER_CHARS:
        if len(_headers) >= MEMO_HEADERS:
            _headers.clear()
        _headers[segment] = vetted
    return vetted


def _vet_header(segment: str) -> Header | TokenFailure:
    """``read_header``'s judgement of the first segment (a pure function of it)."""
    header = segment_object(segment)
    if header is None:
        return TokenFailure(Reason.MALFORMED_TOKEN, "the token header is not base64url JSON")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        return TokenFailure(
            Reason.ALGORITHM_NOT_ALLOWED,
            f"token algorithm {str(alg)[:16]!r} is not accepted; use one of "
            f"{', '.join(sorted(ALLOWED_ALGS))}",
        )
    if "crit" in header:
        return TokenFailure(
            Reason.MALFORMED_TOKEN,
            "the token header has critical extensions ('crit') we do not support",
        )
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        return TokenFailure(Reason.MALFORMED_TOKEN, "the token header 'kid' is not a string")
    return Header(alg=alg, kid=kid)


def verify_token(
    token: str, header: Header, ring: KeyRing, rules: TokenRules, now: float
) -> dict[str, Any] | TokenFailure | UnknownKid:
    """Return the verified claims, or why not. ``header`` is ``read_header(token)``'s result."""
    candidates = ring.candidates(header.kid, header.alg)
    if candidates is None:
        return UnknownKid(header.kid or "")
    if not candidates:
        if header.kid is None:
            return TokenFailure(
                Reason.UNKNOWN_KEY,
                f"the token has no 'kid' and the identity provider publishes {len(ring)} keys; "
                "the token must name its signing key",
            )
        return TokenFailure(
            Reason.BAD_SIGNATURE,
            f"signing key {header.kid!r} cannot verify algorithm {header.alg}",
        )
    signing_input, _, sig_part = token.rpartition(".")
    signature = b64url_decode(sig_part)
    if signature is None:
        return TokenFailure(Reason.MALFORMED_TOKEN, "the token signature is not base64url")
    msg = signing_input.encode("ascii", "replace")
    for verifier in candidates:  # a loop, not any(genexpr): no generator per new token
        if verifier.verify(msg, signature):
            break
    else:
        return TokenFailure(Reason.BAD_SIGNATURE, "the token signature does not verify")
    claims = segment_object(signing_input.partition(".")[2])
    if claims is None:
        return TokenFailure(Reason.MALFORMED_TOKEN, "the token payload is not a JSON object")
    failure = check_claims(claims, rules, now)
    return failure if failure is not None else claims


_ABSENT = object()
# A tuple, not ``int | float``: that expression builds a new UnionType per call (~0.2 µs).
NUMBER_TYPES = (int, float)


def json_number(value: object) -> float | None:
    """A JSON number (not a bool) as a float; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, NUMBER_TYPES):
        return None
    return float(value)


def check_claims(claims: Mapping[str, Any], rules: TokenRules, now: float) -> TokenFailure | None:
    """Time and audience checks (RFC 7519 §4.1) with ``rules.leeway`` seconds of clock skew."""
    times: list[float | None] = []  # one read of each time claim
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name, _ABSENT)
        number = None if value is _ABSENT else json_number(value)
        if number is None and value is not _ABSENT:
            return TokenFailure(Reason.MALFORMED_TOKEN, f"the token claim '{name}' is not a number")
        times.append(number)
    exp, nbf, iat = times
    if exp is None:
        if rules.require_exp:
            return TokenFailure(
                Reason.MISSING_EXPIRY,
                "the token has no 'exp' claim; issue tokens with an expiry "
                "(or set extauthz.require_exp: false)",
            )
    elif now > exp + rules.leeway:
        return TokenFailure(Reason.TOKEN_EXPIRED, "the token has expired; get a new one")
    if nbf is not None and now + rules.leeway < nbf:
        return TokenFailure(Reason.TOKEN_NOT_YET_VALID, "the token is not valid yet (nbf)")
    if iat is not None and now + rules.leeway < iat:
        return TokenFailure(
            Reason.TOKEN_NOT_YET_VALID, "the token was issued in the future (iat); check clocks"
        )
    if rules.issuers:
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss not in rules.issuers:
            return TokenFailure(
                Reason.ISSUER_MISMATCH,
                "the token issuer is not accepted; expected " + ", ".join(sorted(rules.issuers)),
            )
    if rules.audiences:
        aud = claims.get("aud")
        auds = {aud} if isinstance(aud, str) else set()
        if isinstance(aud, list):
            auds = {a for a in aud if isinstance(a, str)}
        if not auds & rules.audiences:
            return TokenFailure(
                Reason.AUDIENCE_MISMATCH,
                "the token audience is not accepted; expected "
                + ", ".join(sorted(rules.audiences)),
            )
    return None

"""Token verification with a bounded cache of verified tokens.

A cache entry never outlives its token (``exp`` + leeway) nor ``max_age`` seconds, and the whole
cache is dropped whenever the key ring changes, so a key the IdP withdrew stops verifying at once.
Each entry also carries a memo slot, so work derived from the claims (the caller's identity under
the current policy) is done once per token, not once per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from extauthz import metrics
from extauthz.identity.fields import ClaimRules, identity_from_claims
from extauthz.identity.jwks import JwksSource
from extauthz.identity.keyring import KeyRing
from extauthz.identity.tokencache import ExpiringCache
from extauthz.identity.tokens import (
    TokenFailure,
    TokenRules,
    UnknownKid,
    read_header,
    verify_token,
)
from extauthz.model import Deny, Identity, Reason

Claims = dict[str, Any]


class Verified:
    """Verified claims, and the identity read from them under ``rules`` (``fields.ClaimRules``):
    a cached token's identity is read once per token and rule set, not once per request."""

    __slots__ = ("_under", "claims", "until")

    def __init__(self, claims: Claims, until: float) -> None:
        self.claims = claims
        self.until = until
        # (rules, identity) as one reference: threads reading under different rules (a reload
        # in flight) never pair one rule set with the other's identity.
        self._under: tuple[object, Identity | Deny] | None = None

    def identity_under(self, rules: ClaimRules) -> Identity | Deny:
        """The caller these claims name under ``rules`` (read once, then remembered)."""
        under = self._under
        if under is None or under[0] is not rules:
            under = self._under = (rules, identity_from_claims(self.claims, rules))
        return under[1]


class TokenVerifier:
    """Verifies JWTs against a ``JwksSource``; safe to share across threads (the cache locks)."""

    def __init__(
        self,
        keys: JwksSource,
        rules: TokenRules,
        *,
        cache_size: int = 10_000,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.rules = rules
        self._clock = clock
        self._max_age = max_age

        self._cache: ExpiringCache[Verified] = ExpiringCache(cache_size)
        self._enabled = cache_size > 0
        keys.on_change = self._keys_changed

    def _keys_changed(self, _ring: KeyRing) -> None:
        self._cache.clear()

    def set_rules(self, rules: TokenRules) -> None:
        """Apply new claim rules (policy reload); cached verdicts were made under the old ones."""
        if rules != self.rules:
            self.rules = rules
            self._cache.clear()

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def cached(self, token: str) -> Verified | None:
        """The cached verdict for a token verified before and still live (no waiting)."""
        return self._cache.get(token, self._clock()) if self._enabled else None

    def verify_now(self, token: str) -> Verified | TokenFailure | UnknownKid:
        """``verify`` without waiting: UnknownKid when only a key refetch could tell (the one
        case that needs the event loop). Safe to call from any thread."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        now = self._clock()
        header = read_header(token, self.rules)
        if isinstance(header, TokenFailure):
            return header
        ring = self.keys.ring
        if ring is None:
            return TokenFailure(
                Reason.KEYS_UNAVAILABLE,
                "signing keys could not be fetched from the identity provider yet; retry shortly",
            )
        result = verify_token(token, header, ring, self.rules, now)
        if isinstance(result, UnknownKid):
            return result
        return self._remember(token, result, now)

    async def verify(self, token: str, wait: float = 1.0) -> Verified | TokenFailure:
        """Verified claims, or why the token is refused. Never raises for any token.

        ``wait`` bounds the only await: a refetch of keys for an unknown ``kid``.
        """
        result = self.verify_now(token)
        if not isinstance(result, UnknownKid):
            return result
        try:
            known = await asyncio.wait_for(self.keys.refetch_for_kid(result.kid), wait)
        except TimeoutError:
            known = False
        ring = self.keys.ring
        if not known or ring is None:
            return _unknown_key(result)
        header = read_header(token, self.rules)
        if isinstance(header, TokenFailure):
            return header
        now = self._clock()
        claims = verify_token(token, header, ring, self.rules, now)
        if isinstance(claims, UnknownKid):
            return _unknown_key(claims)
        return self._remember(token, claims, now)

    def _remember(
        self, token: str, result: Claims | TokenFailure, now: float
    ) -> Verified | TokenFailure:
        if isinstance(result, TokenFailure):
            return result
        exp = result.get("exp")
        until = (float(exp) + self.rules.leeway) if isinstance(exp, int | float) else now
        verified = Verified(result, until)
        if self._enabled and until > now:
            self._cache.put(token, verified, min(until, now + self._max_age))
            metrics.TOKEN_CACHE_SIZE.set(len(self._cache))
        return verified


def _unknown_key(result: UnknownKid) -> TokenFailure:
    return TokenFailure(
        Reason.UNKNOWN_KEY,
        f"the token's signing key {result.kid[:64]!r} is not published by the identity provider",
    )

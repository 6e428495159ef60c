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

from extauthz.identity.credentials import unsendable
from extauthz.identity.fields import ClaimRules, identity_from_claims
from extauthz.identity.inflight import Inflight
from extauthz.identity.jwks import JwksSource
from extauthz.identity.keyring import KeyRing
from extauthz.identity.providers import unknown_issuer, unverified_issuer
from extauthz.identity.tokencache import ExpiringCache, token_key
from extauthz.identity.tokens import (
    NUMBER_TYPES,
    Header,
    TokenFailure,
    TokenRules,
    UnknownKid,
    looks_like_jwt,
    read_header,
    verify_token,
)
from extauthz.identity.userinfo import UserinfoClient
from extauthz.model import Deny, Identity, Reason

Claims = dict[str, Any]


class Verified:
    """Verified claims, and the identity read from them under ``rules`` (``fields.ClaimRules``):
    a cached token's identity is read once per token and rule set, not once per request."""

    __slots__ = ("_under", "claims", "issuer", "until", "userinfo")

    def __init__(
        self, claims: Claims, until: float, issuer: str | None = None, userinfo: bool = False
    ) -> None:
        self.claims = claims
        self.until = until
        self.issuer = issuer  # the ``issuers`` entry that verified it (None: the global keys)
        self.userinfo = userinfo  # claims from the userinfo endpoint (an opaque token)
        # (rules, identity) as one reference: threads reading under different rules (a reload
        # in flight) never pair one rule set with the other's identity.
        self._under: tuple[object, Identity | Deny] | None = None

    def identity_under(self, rules: ClaimRules) -> Identity | Deny:
        """The caller these claims name under ``rules`` (read once, then remembered)."""
        under = self._under
        if under is None or under[0] is not rules:
            identity = identity_from_claims(self.claims, rules)
            if isinstance(identity, Identity) and (self.issuer is not None or self.userinfo):
                identity = identity._replace(issuer=self.issuer, userinfo=self.userinfo)
            under = self._under = (rules, identity)
        return under[1]


class TokenVerifier:
    """Verifies JWTs against a ``JwksSource`` (or, per ``issuers`` entry, that issuer's), and
    opaque tokens at the userinfo endpoint. ``cached`` and ``verify_now`` may be called from
    any thread (the caches lock; rules are swapped as one reference); ``verify``, ``stop`` and
    the userinfo requests run on the event loop."""

    def __init__(
        self,
        keys: JwksSource,
        rules: TokenRules,
        *,
        cache_size: int = 10_000,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.time,
        issuer_keys: dict[str, JwksSource] | None = None,
        userinfo: UserinfoClient | None = None,
    ) -> None:
        self.keys = keys
        # The rules and the issuers they name, as one reference (a reload swaps both at once).
        self._rules: tuple[TokenRules, dict[str, TokenRules]] = (rules, dict(rules.providers))
        self._clock = clock
        self._max_age = max_age
        # One key source per ``issuers`` entry (shared: the runtime keeps it in step).
        self.issuer_keys: dict[str, JwksSource] = {} if issuer_keys is None else issuer_keys
        # Opaque tokens go to the userinfo endpoint when set; answers cached by token hash.
        self.userinfo = userinfo
        self._userinfo_cache: ExpiringCache[Verified] = ExpiringCache(cache_size)
        # One userinfo request per token at a time, shared by the requests waiting for it.
        self._userinfo_inflight: Inflight[dict[str, Any] | TokenFailure] = Inflight()

        self._cache: ExpiringCache[Verified] = ExpiringCache(cache_size)
        self._enabled = cache_size > 0
        # Told the cache's size after each change: only where a scrape cannot ask for it
        # (``metrics.report_token_cache``); None costs a new token nothing.
        self.on_size: Callable[[int], None] | None = None
        keys.on_change = self._clear
        for source in self.issuer_keys.values():
            self.watch(source)

    @property
    def rules(self) -> TokenRules:
        return self._rules[0]

    def set_userinfo(self, client: UserinfoClient | None) -> None:
        """Use another userinfo endpoint (reload); answers of the old one are dropped."""
        self.userinfo = client
        self._userinfo_cache.clear()

    def watch(self, source: JwksSource) -> None:
        """Drop cached verdicts whenever ``source``'s keys change (an issuer's key source)."""
        source.on_change = self._clear

    def _clear(self, _ring: KeyRing | None = None) -> None:
        """Drop every cached verdict (a key source changed, or the claim rules)."""
        self._cache.clear()
        if self.on_size is not None:
            self.on_size(0)

    def set_rules(self, rules: TokenRules) -> None:
        """Apply new claim rules (policy reload); cached verdicts were made under the old ones."""
        if rules != self.rules:
            self._rules = (rules, dict(rules.providers))
            self._clear()

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def cached(self, token: str) -> Verified | None:
        """The cached verdict for a token verified before and still live (no waiting)."""
        if not self._enabled:
            return None
        hit = self._cache.get(token, self._clock())
        if hit is None and self.userinfo is not None and not looks_like_jwt(token):
            hit = self._userinfo_cache.get(token_key(token), self._clock())
        return hit

    def verify_now(self, token: str) -> Verified | TokenFailure | UnknownKid:
        """``verify`` of a JWT ``cached`` just missed, without waiting: UnknownKid when only a
        key refetch could tell (the one case that needs the event loop). Any thread. The cache
        is not looked up again (a new token's check paid for two lookups). Opaque tokens for
        the userinfo endpoint are ``verify``'s alone (an HTTP request)."""
        prepared = self._prepare(token)
        return prepared if isinstance(prepared, TokenFailure) else self._check(token, prepared)

    async def verify(self, token: str, wait: float = 1.0) -> Verified | TokenFailure:
        """Verified claims, or why the token is refused. Never raises for any token.

        ``wait`` bounds the only awaits: a refetch of keys for an unknown ``kid``, a userinfo
        request for an opaque token.
        """
        hit = self.cached(token)
        if hit is not None:
            return hit
        if self.userinfo is not None and not looks_like_jwt(token):
            return await self._resolve_userinfo(self.userinfo, token, wait)
        prepared = self._prepare(token)  # once: the header and issuer serve after a refetch
        if isinstance(prepared, TokenFailure):
            return prepared
        result = self._check(token, prepared)
        if not isinstance(result, UnknownKid):
            return result
        keys = prepared[1]
        try:
            known = await asyncio.wait_for(keys.refetch_for_kid(result.kid), wait)
        except TimeoutError:
            known = False
        if not known or keys.ring is None:
            return _unknown_key(result)
        again = self._check(token, prepared)  # against the refetched keys
        return _unknown_key(again) if isinstance(again, UnknownKid) else again

    def _check(
        self, token: str, prepared: tuple[Header, JwksSource, str | None, TokenRules]
    ) -> Verified | TokenFailure | UnknownKid:
        """The signature and claims of a ``_prepare``d token, against its source's keys now."""
        header, keys, issuer, rules = prepared
        ring = keys.ring
        if ring is None:
            return _NO_KEYS_YET
        now = self._clock()
        result = verify_token(token, header, ring, rules, now)
        if isinstance(result, UnknownKid):
            return result
        return self._remember(token, result, now, rules, issuer)

    def _prepare(
        self, token: str
    ) -> tuple[Header, JwksSource, str | None, TokenRules] | TokenFailure:
        """The token's vetted header, and the key source, ``issuers`` entry and rules it is
        checked by: chosen by its unverified ``iss`` when ``issuers`` are configured, else the
        global ones (pure functions of the token and the rules: made once per check)."""
        rules, by_issuer = self._rules
        header = read_header(token, rules)
        if isinstance(header, TokenFailure):
            return header
        if not by_issuer:
            return header, self.keys, None, rules
        iss = unverified_issuer(token)
        if isinstance(iss, TokenFailure):
            return iss
        chosen = None if iss is None else by_issuer.get(iss)
        if iss is not None and chosen is not None:
            keys = self.issuer_keys.get(iss, self.keys)
            if keys is self.keys:  # the runtime has not made this issuer's source yet
                return TokenFailure(
                    Reason.KEYS_UNAVAILABLE,
                    "signing keys of this token's issuer are not loaded yet; retry shortly",
                )
            return header, keys, iss, chosen
        if not self.keys.urls:
            return unknown_issuer(by_issuer)
        return header, self.keys, None, rules

    def _remember(
        self,
        token: str,
        result: Claims | TokenFailure,
        now: float,
        rules: TokenRules,
        issuer: str | None,
    ) -> Verified | TokenFailure:
        if isinstance(result, TokenFailure):
            return result
        exp = result.get("exp")
        until = (float(exp) + rules.leeway) if isinstance(exp, NUMBER_TYPES) else now
        verified = Verified(result, until, issuer)
        if self._enabled and until > now:
            self._cache.put(token, verified, min(until, now + self._max_age))
            if self.on_size is not None:
                self.on_size(len(self._cache))
        return verified

    async def stop(self) -> None:
        """Cancel userinfo requests still running (their waiters have given up or gone)."""
        await self._userinfo_inflight.cancel()

    async def _resolve_userinfo(
        self, client: UserinfoClient, token: str, wait: float
    ) -> Verified | TokenFailure:
        """An opaque token's claims from the userinfo endpoint, cached ``client.ttl`` seconds
        by token hash (cached answers keep serving while the endpoint is down)."""
        refused = unsendable(token, self.rules.max_token_bytes, "the userinfo endpoint")
        if refused is not None:  # no provider issued it, and it would break the request header
            return refused
        key = token_key(token)
        claims = await self._userinfo_inflight.join(key, lambda: client.fetch(token), wait)
        if claims is None:
            return TokenFailure(
                Reason.USERINFO_UNAVAILABLE,
                "the identity provider's userinfo endpoint did not answer in time; retry shortly",
            )
        if isinstance(claims, TokenFailure):
            return claims
        now = self._clock()
        verified = Verified(claims, now + client.ttl, userinfo=True)
        if self._enabled and self.userinfo is client:  # not a late answer of a replaced endpoint
            self._userinfo_cache.put(key, verified, now + client.ttl)
        return verified


_NO_KEYS_YET = TokenFailure(
    Reason.KEYS_UNAVAILABLE,
    "signing keys could not be fetched from the identity provider yet; retry shortly",
)


def _unknown_key(result: UnknownKid) -> TokenFailure:
    return TokenFailure(
        Reason.UNKNOWN_KEY,
        f"the token's signing key {result.kid[:64]!r} is not published by the identity provider",
    )

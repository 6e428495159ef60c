"""Several identity providers at once (``litellm_jwtauth.issuers``): which one a token names.

LiteLLM's rule (``JWTHandler._get_configured_issuer``): the token's *unverified* ``iss`` picks
the entry whose ``issuer`` equals it exactly; that entry's keys, audience and claim fields then
judge the token, and its ``iss`` must still equal the entry's issuer once verified. A token whose
``iss`` names no entry goes to the global keys (``public_key_url``), as in LiteLLM ("additive
routing, not an allow-list"); with no global keys configured it is refused here, naming the
issuers that are accepted.

The unverified ``iss`` only chooses where to look: a token claiming issuer A but signed by B's
key finds no key of B in A's ring and is refused (``unknown_key`` / ``bad_signature``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from extauthz.identity.fields import ClaimField, ClaimFields
from extauthz.identity.jwks import Fetcher, JwksSource
from extauthz.identity.roles import NO_ROLE_RULES, RoleRules
from extauthz.identity.tokens import TokenFailure, segment_object
from extauthz.model import Reason

MAX_ISSUER_CHARS = 2048  # an issuer is a URL; a longer `iss` names no configured provider


@dataclass(frozen=True, slots=True)
class IssuerClaims:
    """How an ``issuers`` entry's tokens map to a caller (``fields.ClaimRules``): its own claim
    fields, each falling back to the global one; the default team and email gate are global."""

    fields: ClaimFields
    team_id_default: str | None
    email_domains: frozenset[str] | None
    # (LiteLLM's normalized claim, the entry's own field): what custom_validate is shown.
    mapped: tuple[tuple[str, ClaimField], ...] = ()
    role_rules: RoleRules = NO_ROLE_RULES  # global (role_mappings, jwt_litellm_role_map)


def unverified_issuer(token: str) -> str | TokenFailure | None:
    """The ``iss`` of a compact JWT's payload, read before any signature check (to choose the
    provider, nothing else). None when absent or not a string; a failure when unreadable.

    Callers have already bounded the token's size (``read_header``)."""
    parts = token.split(".")
    if len(parts) != 3:
        return TokenFailure(Reason.MALFORMED_TOKEN, "the token is not a compact JWT (3 parts)")
    payload = segment_object(parts[1])
    if payload is None:
        return TokenFailure(Reason.MALFORMED_TOKEN, "the token payload is not a JSON object")
    iss = payload.get("iss")
    if not isinstance(iss, str) or not iss or len(iss) > MAX_ISSUER_CHARS:
        return None
    return iss


def unknown_issuer(accepted: Mapping[str, object]) -> TokenFailure:
    """The refusal for a token whose ``iss`` names no provider (and no global keys exist)."""
    return TokenFailure(
        Reason.ISSUER_MISMATCH,
        "the token's issuer ('iss') is not one of the configured identity providers "
        "(litellm_jwtauth.issuers); accepted: " + ", ".join(sorted(accepted)),
    )


class IssuerKeys:
    """One ``JwksSource`` per ``issuers`` entry, kept in step with reloads: each refreshes,
    rotates and fails on its own, so one provider down never touches another's tokens."""

    def __init__(self, fetch: Fetcher) -> None:
        self._fetch = fetch
        # Shared with the verifier (``TokenVerifier.issuer_keys``): changed in place, never rebound.
        self.sources: dict[str, JwksSource] = {}
        self._running = False

    def sync(
        self,
        key_urls: tuple[tuple[str, tuple[str, ...]], ...],
        ttl: float,
        refetch_interval: float,
        on_new: Callable[[JwksSource], None] | None = None,
    ) -> list[asyncio.Future[bool]]:
        """Match the configured issuers: new ones get a source (started if we run), gone ones
        are stopped, changed ones reconfigured. Returns the refreshes this started."""
        wanted = dict(key_urls)
        started: list[asyncio.Future[bool]] = []
        for issuer in [i for i in self.sources if i not in wanted]:
            started.append(asyncio.ensure_future(_stopped(self.sources.pop(issuer))))
        for issuer, urls in wanted.items():
            source = self.sources.get(issuer)
            if source is None:
                source = JwksSource(
                    urls, ttl=ttl, refetch_interval=refetch_interval, fetch=self._fetch
                )
                self.sources[issuer] = source
                if on_new is not None:
                    on_new(source)
                if self._running:
                    source.start()
            else:
                refresh = source.reconfigure(urls, ttl, refetch_interval)
                if refresh is not None:
                    started.append(refresh)
        return started

    def start(self) -> None:
        self._running = True
        for source in self.sources.values():
            source.start()

    async def refresh_all(self) -> None:
        """Fetch every issuer's keys once (``explain``), failures recorded per source."""
        await asyncio.gather(*(s.refresh("startup") for s in self.sources.values()))

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*(s.stop() for s in self.sources.values()))


async def _stopped(source: JwksSource) -> bool:
    await source.stop()
    return True

"""OAuth2 token introspection for tokens a ``routing_overrides`` rule hands over (LiteLLM's
``Oauth2Handler.check_oauth2_token``, ``litellm/proxy/auth/oauth2_check.py``).

LiteLLM's call, kept: an endpoint whose URL holds "introspect", with a client id and secret
configured, is asked as RFC 7662 says (``POST`` form ``token=…``, HTTP Basic client
credentials); any other endpoint is a token-info endpoint (``GET`` with the token as a Bearer
credential). A JSON answer names the caller: its user id, team id and LiteLLM role are the
top-level keys ``user_id_field`` / ``team_id_field`` / ``role_field`` (LiteLLM's
``OAUTH_USER_ID_FIELD_NAME``, ``OAUTH_USER_TEAM_ID_FIELD_NAME``, ``OAUTH_USER_ROLE_FIELD_NAME``,
default ``sub``, ``team_id``, ``role``); an answer whose ``active`` is falsy is refused.

What this adds, fail closed (as ``identity.userinfo`` does for the userinfo endpoint):
- the provider refusing the token is a 401; the provider unreachable, slow, redirecting
  (never followed: that would hand the token to another URL), refusing our client credentials,
  or answering anything but a JSON object under ``MAX_ANSWER_BYTES`` is a 503 (the token may
  be fine; retry), never a guess;
- ``active`` is checked whatever the endpoint (LiteLLM: only for a POST), and an answer whose
  ``exp`` has passed is refused;
- answers are cached by token hash (``tokencache.token_key``) until the earlier of ``cache_ttl``
  and their ``exp``; refusals are not cached. The token and the client secret never appear in
  a message or log.

``Introspector.cached`` may be called from any thread (``ExpiringCache`` locks); ``resolve``
runs on the event loop (one request per token at a time, shared by its waiters).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from extauthz.identity.capped import ProviderSession, json_object, read_capped
from extauthz.identity.claims import ClaimValueError, canonical_id
from extauthz.identity.inflight import Inflight
from extauthz.identity.tokencache import ExpiringCache, token_key
from extauthz.identity.tokens import TokenFailure, json_number
from extauthz.model import LITELLM_USER_ROLES, OAUTH2, Identity, Reason
from extauthz.redact import redact_url

log = logging.getLogger("extauthz.introspection")

MAX_ANSWER_BYTES = 64 * 1024
# The role values an answer may carry (anything else is refused).
LITELLM_ROLES = frozenset(LITELLM_USER_ROLES)


@dataclass(frozen=True, slots=True)
class IntrospectionSettings:
    """Where and how matching tokens are introspected (``config.overrides`` builds it)."""

    endpoint: str
    user_id_field: str = "sub"
    role_field: str = "role"
    team_id_field: str = "team_id"
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    cache_ttl: float = 60.0
    timeout: float = 5.0

    @property
    def rfc7662(self) -> bool:
        """LiteLLM's ``_is_introspection_endpoint``: POST, with client credentials."""
        return (
            "introspect" in self.endpoint.lower()
            and self.client_id is not None
            and self.client_secret is not None
        )


def _unavailable(why: str) -> TokenFailure:
    return TokenFailure(
        Reason.INTROSPECTION_UNAVAILABLE,
        f"the OAuth2 token introspection endpoint {why}; the token could not be checked, "
        "retry shortly",
    )


def _rejected(why: str) -> TokenFailure:
    return TokenFailure(
        Reason.INTROSPECTION_REJECTED,
        f"the OAuth2 provider does not vouch for this token ({why}); get a new token",
    )


class IntrospectionClient(ProviderSession):
    """Asks one introspection (or token-info) endpoint about tokens; holds a session."""

    def __init__(self, settings: IntrospectionSettings) -> None:
        super().__init__(settings.timeout)
        self.settings = settings

    def _request(self, token: str) -> tuple[str, dict[str, str], dict[str, str] | None]:
        s = self.settings
        if s.rfc7662:
            pair = f"{s.client_id}:{s.client_secret}".encode()
            auth = "Basic " + base64.b64encode(pair).decode("ascii")  # as LiteLLM encodes it
            headers = {
                "Authorization": auth,
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            }
            return "POST", headers, {"token": token}
        return "GET", {"Authorization": f"Bearer {token}", "Accept": "application/json"}, None

    async def fetch(self, token: str) -> dict[str, Any] | TokenFailure:
        """The endpoint's answer for ``token``, or why not (never raises for any answer)."""
        shown = redact_url(self.settings.endpoint)
        method, headers, form = self._request(token)
        try:
            async with self.session().request(
                method, self.settings.endpoint, headers=headers, data=form, allow_redirects=False
            ) as resp:
                status = resp.status
                body = await read_capped(resp, MAX_ANSWER_BYTES) if status == 200 else b""
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "introspection endpoint unreachable",
                extra={"url": shown, "error_type": type(exc).__name__},
            )
            return _unavailable("is unreachable")
        if status != 200:
            return self._refusal(status, shown)
        if body is None:
            return _unavailable(f"answered more than {MAX_ANSWER_BYTES} bytes")
        doc = json_object(body)
        if doc is None:
            log.warning("introspection answer is not a JSON object", extra={"url": shown})
            return _unavailable("did not answer a JSON object")
        return doc

    def _refusal(self, status: int, shown: str) -> TokenFailure:
        if status in (400, 401, 403) and not self.settings.rfc7662:
            # A token-info endpoint judges the Bearer token itself (Google's answers 400).
            return _rejected(f"the endpoint answered {status}")
        if status in (401, 403):
            log.warning(
                "introspection endpoint refused our client credentials: check "
                "OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET",
                extra={"url": shown, "status": status},
            )
            return _unavailable(f"refused this service's client credentials ({status})")
        log.warning("introspection endpoint failed", extra={"url": shown, "status": status})
        return _unavailable(f"answered HTTP {status}")


def _id(answer: Mapping[str, Any], name: str) -> str | None:
    value = answer.get(name)
    if value is not None and not isinstance(value, str):
        # LiteLLM's UserAPIKeyAuth refuses a non-string id (a validation error, a 401).
        raise ClaimValueError(f"the introspection answer's {name!r} is not a string")
    return canonical_id(value, f"the introspection answer's {name!r}")


def identity_from_answer(
    answer: Mapping[str, Any], settings: IntrospectionSettings, now: float
) -> Identity | TokenFailure:
    """The caller an answer names, as LiteLLM maps it; a failure for an inactive or expired
    answer, or one whose id or role LiteLLM could not use."""
    active = answer.get("active", True)  # absent: active, as LiteLLM reads it
    if active is not True:
        # false, and anything that is not a JSON boolean ("false" is truthy in LiteLLM)
        return _rejected(
            "it answered active: false" if active is False else "its active is no boolean"
        )
    exp = json_number(answer.get("exp"))
    if exp is not None and exp <= now:
        return _rejected("the answer says the token has expired")
    try:
        user_id = _id(answer, settings.user_id_field)
        team_id = _id(answer, settings.team_id_field)
    except ClaimValueError as exc:
        return TokenFailure(Reason.MALFORMED_TOKEN, f"{exc}; such a value cannot be forwarded")
    role = answer.get(settings.role_field)
    if role is not None and role not in LITELLM_ROLES:
        return TokenFailure(
            Reason.MALFORMED_TOKEN,
            f"the introspection answer's {settings.role_field!r} is not a LiteLLM role "
            f"({', '.join(sorted(LITELLM_ROLES))})",
        )
    sub = answer.get("sub")
    return Identity(
        kind=OAUTH2,
        user_id=user_id,
        team_id=team_id,
        roles=frozenset() if role is None else frozenset({role}),
        subject=sub if isinstance(sub, str) else None,
    )


class Introspector:
    """Introspects tokens through a client, with a bounded cache of answers by token hash."""

    def __init__(
        self,
        client: IntrospectionClient,
        *,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.settings = client.settings
        self._clock = clock
        self._cache: ExpiringCache[Identity] = ExpiringCache(cache_size)  # thread-safe
        self._inflight: Inflight[dict[str, Any] | TokenFailure] = Inflight()

    def cached(self, token: str) -> Identity | None:
        """A live cached answer's caller (no waiting). Any thread."""
        return self._cache.get(token_key(token), self._clock())

    async def resolve(self, token: str, wait: float) -> Identity | TokenFailure:
        """The caller the endpoint says ``token`` is, waiting at most ``wait`` seconds."""
        key = token_key(token)
        hit = self._cache.get(key, self._clock())
        if hit is not None:
            return hit
        answer = await self._inflight.join(key, lambda: self.client.fetch(token), wait)
        if answer is None:
            return _unavailable("did not answer in time")
        if isinstance(answer, TokenFailure):
            return answer
        now = self._clock()
        identity = identity_from_answer(answer, self.settings, now)
        if isinstance(identity, TokenFailure):
            return identity
        until = now + self.settings.cache_ttl
        exp = json_number(answer.get("exp"))
        if exp is not None:
            until = min(until, exp)
        self._cache.put(key, identity, until)
        return identity

    async def close(self) -> None:
        """Cancel requests still running, then close the client's session."""
        await self._inflight.cancel()
        await self.client.close()

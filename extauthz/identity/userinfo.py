"""Resolve an opaque (non-JWT) access token at the identity provider's OIDC userinfo endpoint.

LiteLLM's ``JWTHandler.get_oidc_userinfo``: ``GET <oidc_userinfo_endpoint>`` with the token as a
Bearer credential; a 200 JSON object is the caller's claims, read through the same
``*_jwt_field`` settings as a JWT's. What this adds, fail closed:
- the provider refusing the token (401/403) is a 401 deny; the provider unreachable, slow,
  redirecting or answering anything but a JSON object under ``MAX_USERINFO_BYTES`` is a 503
  (the token may be fine; retry), and never a guess;
- redirects are not followed: following one would hand the token to another URL;
- the token never appears in a message or log; callers key their cache by ``tokencache.token_key``.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from extauthz.identity.capped import ProviderSession, json_object, read_capped
from extauthz.identity.tokens import TokenFailure
from extauthz.model import Reason
from extauthz.redact import redact_url

log = logging.getLogger("extauthz.userinfo")

MAX_USERINFO_BYTES = 64 * 1024


def _unavailable(why: str) -> TokenFailure:
    return TokenFailure(
        Reason.USERINFO_UNAVAILABLE,
        f"the identity provider's userinfo endpoint {why}; the token could not be checked, "
        "retry shortly",
    )


class UserinfoClient(ProviderSession):
    """Asks one userinfo endpoint about tokens. One per serving process (holds a session)."""

    def __init__(self, endpoint: str, ttl: float, timeout: float) -> None:
        super().__init__(timeout)
        self.endpoint = endpoint
        self.ttl = ttl

    async def fetch(self, token: str) -> dict[str, Any] | TokenFailure:
        """The provider's claims for ``token``, or why not (never raises for any answer)."""
        shown = redact_url(self.endpoint)
        try:
            async with self.session().get(
                self.endpoint,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                allow_redirects=False,
            ) as resp:
                if resp.status in (401, 403):
                    return TokenFailure(
                        Reason.USERINFO_REJECTED,
                        "the identity provider does not accept this access token (userinfo "
                        f"answered {resp.status}); get a new token",
                    )
                if resp.status != 200:
                    log.warning(
                        "userinfo endpoint failed", extra={"url": shown, "status": resp.status}
                    )
                    return _unavailable(f"answered HTTP {resp.status}")
                body = await read_capped(resp, MAX_USERINFO_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "userinfo endpoint unreachable",
                extra={"url": shown, "error_type": type(exc).__name__},
            )
            return _unavailable("is unreachable")
        if body is None:
            return _unavailable(f"answered more than {MAX_USERINFO_BYTES} bytes")
        doc = json_object(body)
        if doc is None:
            log.warning("userinfo answer is not a JSON object", extra={"url": shown})
            return _unavailable("did not answer a JSON object")
        return doc

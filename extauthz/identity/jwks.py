"""Fetch signing keys from JWKS or OpenID-discovery URLs (or ``file://``) and keep them fresh.

Policy, in short (the why is in the issue and DESIGN.md):
- keys are refreshed in the background every ``ttl`` seconds; a failed refresh keeps the keys
  we have (an IdP outage must not lock everyone out) and retries sooner with backoff;
- a token with an unknown ``kid`` may trigger one refetch, at most every ``refetch_interval``
  seconds and shared by all waiting requests, so a key rotation is seen in seconds while a flood
  of made-up kids cannot hammer the IdP;
- nothing here decides anything: callers read ``ring`` (None until keys were ever obtained);
- a key URL may carry credentials (user-info, ``?token=``): every error shows it redacted, and
  any text quoted from elsewhere (an exception, a redirect) is scrubbed of its secrets, since
  errors reach the log and /readyz, which anyone may read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import aiohttp

from extauthz import metrics
from extauthz.errors import KeySourceError
from extauthz.identity.capped import ProviderSession
from extauthz.identity.keyring import KeyRing
from extauthz.redact import redact_url, scrub_url

log = logging.getLogger("extauthz.jwks")

MAX_DOCUMENT_BYTES = 1024 * 1024
Fetcher = Callable[[str], Awaitable[dict[str, Any]]]


def split_urls(value: str) -> tuple[str, ...]:
    """``JWT_PUBLIC_KEY_URL`` may hold several comma-separated URLs."""
    return tuple(u.strip() for u in value.split(",") if u.strip())


class HttpFetcher(ProviderSession):
    """GET a JSON document over http(s) or read it from a ``file://`` URL, with size caps."""

    async def __call__(self, url: str) -> dict[str, Any]:
        """The JSON object at ``url``; ``KeySourceError`` (with no secret of the URL) if not."""
        try:
            return await self._document(url)
        except KeySourceError as exc:
            raise KeySourceError(scrub_url(str(exc), url)) from None

    async def _document(self, url: str) -> dict[str, Any]:
        shown = redact_url(url)
        try:
            parsed = urlparse(url)
        except ValueError as exc:
            raise KeySourceError(f"{shown}: the URL cannot be parsed ({exc})") from None
        if parsed.scheme == "file":
            raw = await asyncio.to_thread(_read_file, unquote(parsed.path))
        elif parsed.scheme in ("http", "https"):
            raw = await self._get(url)
        else:
            raise KeySourceError(f"{shown}: only https://, http:// and file:// URLs are supported")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise KeySourceError(f"{shown}: not JSON") from None
        if not isinstance(doc, dict):
            raise KeySourceError(f"{shown}: expected a JSON object")
        return doc

    async def _get(self, url: str) -> bytes:
        shown = redact_url(url)
        last: Exception | None = None
        for attempt in range(3):  # LiteLLM retries transport errors three times too
            try:
                async with self.session().get(url, allow_redirects=True) as resp:
                    if resp.status != 200:
                        raise KeySourceError(f"{shown}: HTTP {resp.status}")
                    return await _read_capped(resp, shown)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = exc
                await asyncio.sleep(0.2 * (attempt + 1))
        # The exception's text may quote the URL (aiohttp's do): scrubbed by __call__.
        raise KeySourceError(f"{shown}: unreachable ({type(last).__name__}: {last})")


def _over_cap(where: str) -> KeySourceError:
    return KeySourceError(
        f"{where}: document larger than the {MAX_DOCUMENT_BYTES}-byte cap on key documents"
    )


async def _read_capped(resp: aiohttp.ClientResponse, url: str) -> bytes:
    """The whole body, however it arrives (chunked or not), but never more than the cap.

    ``content.read(n)`` would return only what has arrived so far, cutting big documents.
    """
    announced = resp.content_length  # of the encoded body when compressed, so not judged then
    if (
        announced is not None
        and announced > MAX_DOCUMENT_BYTES
        and not resp.headers.get("content-encoding")
    ):
        raise _over_cap(url)
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            raise _over_cap(url)  # leaving the block drops the connection: no more is read
    return bytes(body)


def _read_file(path: str) -> bytes:
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise KeySourceError(f"file://{path}: {exc.strerror}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _over_cap(f"file://{path}")
    return raw


async def fetch_jwks(url: str, fetch: Fetcher) -> dict[str, Any]:
    """A JWKS document from ``url``, following OpenID discovery's ``jwks_uri`` if needed."""
    doc = await fetch(url)
    if isinstance(doc.get("keys"), list):
        return doc
    jwks_uri = doc.get("jwks_uri")
    if isinstance(jwks_uri, str) and urlparse(jwks_uri).scheme in ("https", "http"):
        keys = await fetch(jwks_uri)
        if isinstance(keys.get("keys"), list):
            return keys
        raise KeySourceError(
            f"{redact_url(jwks_uri)} (jwks_uri of {redact_url(url)}): no 'keys' list"
        )
    raise KeySourceError(
        f"{redact_url(url)}: neither a JWKS ('keys') nor an OpenID discovery document ('jwks_uri')"
    )


class JwksSource:
    """Holds the current key ring and keeps it fresh. One per serving process."""

    def __init__(
        self,
        urls: tuple[str, ...],
        *,
        ttl: float = 600.0,
        refetch_interval: float = 5.0,
        fetch: Fetcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = urls
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self._fetch = fetch
        self._clock = clock
        self._docs: dict[str, dict[str, Any]] = {}
        self.ring: KeyRing | None = None
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._last_refetch = -float("inf")
        self._inflight: asyncio.Task[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_change: Callable[[KeyRing], None] | None = None

    def reconfigure(
        self, urls: tuple[str, ...], ttl: float, refetch_interval: float
    ) -> asyncio.Future[bool] | None:
        """Take reloaded key settings; a changed URL list or TTL starts a refresh (returned)."""
        self.refetch_interval = refetch_interval
        if urls == self.urls and ttl == self.ttl:
            return None
        self.urls, self.ttl = urls, ttl
        return asyncio.ensure_future(self.refresh("reload"))

    @property
    def ready(self) -> bool:
        """Keys were obtained at least once."""
        return self.ring is not None

    async def refresh(self, trigger: str = "schedule") -> bool:
        """Fetch every URL; keep the last good document of any URL that fails. True if all ok."""
        results = await asyncio.gather(
            *(fetch_jwks(u, self._fetch) for u in self.urls), return_exceptions=True
        )
        errors: list[str] = []
        for url, result in zip(self.urls, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, KeySourceError):
                    msg = str(result)
                else:  # a fetcher's own failure: its text may quote the URL
                    msg = f"{redact_url(url)}: {type(result).__name__}: {result}"
                errors.append(scrub_url(msg, url))
            else:
                self._docs[url] = result
        if self._docs:
            ring = KeyRing.from_jwks(self._docs[u] for u in self.urls if u in self._docs)
            if self.ring is None or ring.fingerprint != self.ring.fingerprint:
                self.ring = ring
                metrics.KEYS_LOADED.set(len(ring))
                if self.on_change is not None:
                    self.on_change(ring)
        ok = not errors
        metrics.KEY_FETCHES.labels("ok" if ok else "error", trigger).inc()
        if ok:
            self.last_error = None
            self.last_success = time.time()
            metrics.KEYS_AGE.set(self.last_success)
        else:
            self.last_error = "; ".join(errors)
            log.warning("signing-key fetch failed", extra={"error": self.last_error})
        return ok

    async def refetch_for_kid(self, kid: str) -> bool:
        """One shared, rate-limited refetch for an unknown ``kid``. True if the kid is now known."""
        if self._inflight is None:
            now = self._clock()
            if now - self._last_refetch < self.refetch_interval:
                return self.ring is not None and self.ring.has_kid(kid)
            self._last_refetch = now
            self._inflight = asyncio.ensure_future(self.refresh("unknown_kid"))
            self._inflight.add_done_callback(lambda _: setattr(self, "_inflight", None))
        with contextlib.suppress(Exception):
            await asyncio.shield(self._inflight)
        return self.ring is not None and self.ring.has_kid(kid)

    def start(self) -> None:
        """Start the background refresh loop (the first fetch happens at once)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        failures = 0
        while True:
            ok = await self.refresh("schedule" if self.ring is not None else "startup")
            failures = 0 if ok else failures + 1
            delay = self.ttl if ok else min(self.ttl, 30.0, 0.5 * 2 ** min(failures, 6))
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop the background loop and any refetch still running."""
        if self._inflight is not None:
            self._inflight.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

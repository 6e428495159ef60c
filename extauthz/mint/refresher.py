"""The refresh loop: mint each credential, write it, and plan the next attempt.

The schedule is the contract in DESIGN.md ("The minter's contract"): a credential is refreshed
once, at 80 % of its lifetime (a one-hour credential at about 48 minutes); a failed attempt is
retried with jittered exponential backoff capped at 30 s; and the last good credential stays in
its file until a new one replaces it, because a failure never writes anything.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from extauthz.mint.errors import MintError
from extauthz.mint.metrics import MintMetrics
from extauthz.mint.minter import mint
from extauthz.mint.plan import CredentialSpec
from extauthz.mint.sinks import write_atomic
from extauthz.mint.sources import OidcTokens
from extauthz.mint.status import CredentialState, iso
from extauthz.mint.transport import HttpClient

log = logging.getLogger("extauthz.mint")

REFRESH_FRACTION = 0.8
MIN_REFRESH_DELAY = 1.0
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 30.0


def retry_delay(
    failures: int,
    rng: random.Random,
    base: float = RETRY_BASE_SECONDS,
    cap: float = RETRY_CAP_SECONDS,
) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``base·2^(n-1)``, capped at
    ``cap``, times a jitter in [0.5, 1] so replicas do not retry in step. Never above ``cap``."""
    exponent = min(max(failures, 1) - 1, 30)
    return min(cap, base * 2.0**exponent) * rng.uniform(0.5, 1.0)


def next_refresh_at(
    issued_at: float | None,
    expires_at: float | None,
    failures: int,
    rng: random.Random,
    *,
    failed_at: float | None = None,
    base: float = RETRY_BASE_SECONDS,
    cap: float = RETRY_CAP_SECONDS,
) -> float | None:
    """When to mint next. Pure.

    * ``failures == 0``: ``issued_at`` + 80 % of the lifetime (``expires_at - issued_at``), but
      at least ``MIN_REFRESH_DELAY`` later, so a credential that arrives nearly expired cannot
      make a tight loop. None when the credential does not expire (static keys).
    * ``failures > 0``: ``failed_at`` (else ``issued_at``) + ``retry_delay(failures)``.
    """
    if failures > 0:
        start = failed_at if failed_at is not None else issued_at
        if start is None:
            raise ValueError("a retry needs failed_at or issued_at")
        return start + retry_delay(failures, rng, base, cap)
    if expires_at is None:
        return None
    if issued_at is None:
        raise ValueError("a refresh needs issued_at")
    lifetime = expires_at - issued_at
    return issued_at + max(REFRESH_FRACTION * lifetime, MIN_REFRESH_DELAY)


class Refresher:
    """Keeps every planned credential's file fresh; one task per credential."""

    def __init__(
        self,
        specs: Iterable[CredentialSpec],
        *,
        out_dir: Path,
        http: HttpClient,
        tokens: OidcTokens,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        attempt_timeout: float = 60.0,
        retry_base: float = RETRY_BASE_SECONDS,
        retry_cap: float = RETRY_CAP_SECONDS,
    ) -> None:
        self.states = {spec.filename: CredentialState(spec) for spec in specs}
        self.out_dir = out_dir
        self._http = http
        self._tokens = tokens
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._attempt_timeout = attempt_timeout
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self.metrics = MintMetrics(self.states.values, clock)

    def ready(self) -> bool:
        """True when every credential's file holds an unexpired credential."""
        now = self._clock()
        return all(state.valid(now) for state in self.states.values())

    async def attempt(self, state: CredentialState) -> bool:
        """Mint and write one credential, update its state and plan its next attempt.

        Never raises (except cancellation): a failure is recorded, logged and retried later.
        """
        spec = state.spec
        started = self._clock()
        state.last_attempt_at = started
        result = "success"
        try:
            async with asyncio.timeout(self._attempt_timeout):
                minted = await mint(spec, self._http, self._tokens, self._clock)
            now = self._clock()
            if minted.expires_at is not None and minted.expires_at <= now:
                raise MintError(
                    f"the new credential had already expired ({iso(minted.expires_at)}, now "
                    f"{iso(now)}); check this machine's clock"
                )
            await asyncio.to_thread(write_atomic, self.out_dir, minted.filename, minted.text)
        except (MintError, TimeoutError) as exc:
            if isinstance(exc, MintError):
                message, result = str(exc), exc.reason
            else:
                message = f"the attempt took longer than {self._attempt_timeout:g} s"
                result = "timeout"
            self._failed(state, message)
        except Exception as exc:  # a bug: keep the loop alive, log the type only (no secrets)
            result = "internal"
            self._failed(state, f"internal error {type(exc).__name__}")
        else:
            self._succeeded(state, now, minted.expires_at, minted.detail)
        finally:
            self.metrics.refreshes.labels(state.key, result).inc()
            self.metrics.duration.labels(state.key).observe(max(0.0, self._clock() - started))
        return result == "success"

    def _succeeded(
        self, state: CredentialState, now: float, expires_at: float | None, detail: str
    ) -> None:
        state.minted = True
        state.refreshed_at = now
        state.expires_at = expires_at
        state.failures = 0
        state.next_refresh_at = next_refresh_at(now, expires_at, 0, self._rng)
        extra: dict[str, object] = {
            "credential": state.key,
            "kind": state.spec.kind,
            "file": str(self.out_dir / state.key),
            "expires_at": iso(expires_at),
            "next_refresh_at": iso(state.next_refresh_at),
        }
        if expires_at is not None:
            extra["lifetime_s"] = round(expires_at - now, 3)
        if detail:
            extra["detail"] = detail
        log.info("credential written", extra=extra)

    def _failed(self, state: CredentialState, message: str) -> None:
        now = self._clock()
        state.failures += 1
        state.last_error = message
        state.last_error_at = now
        state.next_refresh_at = next_refresh_at(
            state.refreshed_at,
            state.expires_at,
            state.failures,
            self._rng,
            failed_at=now,
            base=self._retry_base,
            cap=self._retry_cap,
        )
        log.warning(
            "credential refresh failed",
            extra={
                "credential": state.key,
                "kind": state.spec.kind,
                "error": message,
                "consecutive_failures": state.failures,
                "retry_at": iso(state.next_refresh_at),
                "current_valid_until": iso(state.expires_at) if state.valid(now) else None,
            },
        )

    async def run_once(self) -> bool:
        """Attempt every credential once, concurrently; True when all succeeded."""
        results = await asyncio.gather(*(self.attempt(s) for s in self.states.values()))
        return all(results)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep every credential fresh until ``stop`` is set."""
        tasks = [asyncio.create_task(self._keep_fresh(s, stop)) for s in self.states.values()]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep_fresh(self, state: CredentialState, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.attempt(state)
            when = state.next_refresh_at
            if when is None:
                return
            delay = max(0.0, when - self._clock())
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                continue
            return

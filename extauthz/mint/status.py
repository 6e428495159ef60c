"""What the minter knows about each credential, shown on /status, /readyz and /metrics.

The record holds times, counts and sanitized error messages only: the secret itself lives in the
file and nowhere else in the process once it is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from extauthz.mint.plan import CredentialSpec


def iso(ts: float | None) -> str | None:
    """A POSIX time as RFC 3339 UTC, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class CredentialState:
    """One credential's history: last success, last failure, and the next planned refresh."""

    spec: CredentialSpec
    minted: bool = False
    expires_at: float | None = None
    refreshed_at: float | None = None
    last_attempt_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    next_refresh_at: float | None = None

    @property
    def key(self) -> str:
        """The credential's file name: unique, and the label used everywhere."""
        return self.spec.filename

    def valid(self, now: float) -> bool:
        """True when the file holds a credential that has not expired."""
        return self.minted and (self.expires_at is None or self.expires_at > now)

    def to_status(self, now: float) -> dict[str, Any]:
        """The /status entry: kind, validity, expiry, refresh times, last error; no secret."""
        return {
            "credential": self.key,
            "name": self.spec.name,
            "kind": self.spec.kind,
            "entry": self.spec.where,
            "source": self.spec.source,
            "valid": self.valid(now),
            "expires_at": iso(self.expires_at),
            "last_refresh": iso(self.refreshed_at),
            "last_attempt": iso(self.last_attempt_at),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "consecutive_failures": self.failures,
            "next_refresh_at": iso(self.next_refresh_at),
        }


def status_document(states: Iterable[CredentialState], now: float) -> dict[str, Any]:
    """The whole /status body."""
    entries = [s.to_status(now) for s in states]
    return {
        "ready": all(e["valid"] for e in entries),
        "now": iso(now),
        "credentials": entries,
    }

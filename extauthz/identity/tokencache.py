"""The verified-token cache: a bounded map whose entries die with their token.

Hand-written rather than ``cachetools.TLRUCache`` because it sits on every request: a hit here
is one ``OrderedDict`` lookup and a float compare (~0.3 µs), against ~2 µs for TLRUCache's
Python-level bookkeeping. Eviction is oldest-first; a hot token evicted early only costs one
signature check. A lock makes it safe for the gRPC server's threads (an uncontended
``threading.Lock`` costs ~0.1 µs; ``cachetools`` caches are not thread-safe either).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


def token_key(token: str) -> str:
    """The cache key of a token sent to a provider (userinfo, introspection): its SHA-256, so
    the cache never holds the token (LiteLLM keys its userinfo cache the same way)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class ExpiringCache(Generic[V]):
    """``key → value`` entries, each with an absolute expiry; at most ``maxsize`` of them."""

    __slots__ = ("_entries", "_lock", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(maxsize, 1)
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> V | None:
        """The live value for ``key``; an expired entry is dropped and reads as a miss."""
        entry = self._entries.get(key)  # one C-level lookup: atomic without the lock
        if entry is None:
            return None
        if now < entry[1]:
            return entry[0]
        with self._lock:
            self._entries.pop(key, None)
        return None

    def put(self, key: str, value: V, expires: float) -> None:
        """Store ``value`` until ``expires``; the oldest entry makes room when full."""
        entries = self._entries
        with self._lock:
            if key in entries:
                del entries[key]
            elif len(entries) >= self.maxsize:
                entries.popitem(last=False)
            entries[key] = (value, expires)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

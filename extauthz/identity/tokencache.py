"""The verified-token cache: a bounded map whose entries die with their token.

Hand-written rather than ``cachetools.TLRUCache`` because it sits on every request: a hit here
is one ``OrderedDict`` lookup and a float compare (~0.3 µs), against ~2 µs for TLRUCache's
Python-level bookkeeping. Eviction is oldest-first; a hot token evicted early only costs one
signature check.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringCache(Generic[V]):
    """``key → value`` entries, each with an absolute expiry; at most ``maxsize`` of them."""

    __slots__ = ("_entries", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(maxsize, 1)
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def get(self, key: str, now: float) -> V | None:
        """The live value for ``key``; an expired entry is dropped and reads as a miss."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now < entry[1]:
            return entry[0]
        del self._entries[key]
        return None

    def put(self, key: str, value: V, expires: float) -> None:
        """Store ``value`` until ``expires``; the oldest entry makes room when full."""
        entries = self._entries
        if key in entries:
            del entries[key]
        elif len(entries) >= self.maxsize:
            entries.popitem(last=False)
        entries[key] = (value, expires)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

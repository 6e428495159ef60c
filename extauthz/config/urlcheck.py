"""The one check of a URL a policy names (key sets, userinfo and introspection endpoints)."""

from __future__ import annotations

from urllib.parse import urlparse

HTTP = ("http", "https")


def is_url(url: str, schemes: tuple[str, ...] = HTTP, *, host: bool = True) -> bool:
    """True when ``url`` parses, has one of ``schemes`` and a host (or, ``host=False``, at least
    a path). A malformed URL (an unclosed IPv6 bracket) is False, never an exception."""
    try:
        parsed = urlparse(url)
    except ValueError:
        return False
    return parsed.scheme in schemes and bool(parsed.netloc or (not host and parsed.path))

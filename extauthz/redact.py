"""URLs as they may be shown: on /readyz (which anyone may read), in logs and in messages.

A URL can carry credentials: a user-info (``https://user:password@host``, or a token alone as the
user name), query parameters (``?token=``, ``?key=``, ``?sig=``, ``password=`` for libpq) and a
fragment. ``redact_url`` shows everything else and ``***`` for those; ``scrub_url`` does the
same to a text that may quote a URL (an exception's message, a service's answer).

The one user name kept is a PostgreSQL URL's: there it is the database role, not a secret, and
it helps to see which role the state store uses.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"
UNPARSEABLE = "<URL not shown: it cannot be parsed>"
# Query parameters whose names suggest a secret (matched anywhere in the name, any case):
# token=, access_token=, key=, api_key=, sig=, X-Amz-Signature=, password=, client_secret=, ...
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|sig|auth|cred|code|session", re.IGNORECASE)
_PARAM = re.compile(r"(^|[&;])([^&;=]*)=([^&;]*)")


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None


def _shows_user(parts: SplitResult) -> bool:
    return parts.scheme in ("postgresql", "postgres")


def _secret_params(query: str) -> list[re.Match[str]]:
    return [m for m in _PARAM.finditer(query) if m[3] and _SECRET_NAME.search(unquote_plus(m[2]))]


def redact_url(url: str) -> str:
    """``url`` with its user-info (a PostgreSQL URL: its password), secret query values and
    fragment replaced by ``***``; a URL that cannot be parsed is not shown at all. A URL with
    nothing to hide (and no control character) is shown as written: urlunsplit would turn
    ``sqlite:////abs`` into ``sqlite://abs``."""
    parts = _split(url)
    if parts is None:
        return UNPARSEABLE
    original = parts
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        if not _shows_user(parts):
            userinfo = MASK
        elif ":" in userinfo:
            userinfo = f"{userinfo.partition(':')[0]}:{MASK}"
        parts = parts._replace(netloc=f"{userinfo}@{host}")
    if parts.query:
        secret = {m.start(3) for m in _secret_params(parts.query)}
        parts = parts._replace(
            query=_PARAM.sub(
                lambda m: f"{m[1]}{m[2]}={MASK}" if m.start(3) in secret else m[0], parts.query
            )
        )
    if parts.fragment:
        parts = parts._replace(fragment=MASK)
    return url if parts == original and url.isprintable() else urlunsplit(parts)


def url_secrets(url: str) -> list[str]:
    """The pieces of ``url`` that ``redact_url`` hides, as written and percent-decoded, longest
    first; the whole URL when it cannot be parsed."""
    parts = _split(url)
    if parts is None:
        return [url]
    pieces: list[str] = []
    userinfo, at, _host = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        pieces += [password] if _shows_user(parts) else [userinfo, user, password]
    pieces += [m[3] for m in _secret_params(parts.query)]
    pieces.append(parts.fragment)
    found = {form for piece in pieces for form in (piece, unquote(piece), unquote_plus(piece))}
    return sorted((p for p in found if p), key=len, reverse=True)


def scrub_url(text: str, url: str) -> str:
    """``text`` (which may quote ``url``, whole or in part) with the URL's secrets hidden."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text

"""``--state`` URLs → store objects; a URL that cannot work fails here, at start, with a reason.

memory://                         in-process only (tests, dev); lost on exit
sqlite:///relative/path.db        SQLAlchemy's convention: three slashes, then the path
sqlite:////absolute/path.db       (four slashes for an absolute path)
postgresql://user[:pw]@host[:port]/db[?options=-csearch_path%3Dschema]   (or postgres://)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from extauthz.errors import ConfigError
from extauthz.redact import redact_url
from extauthz.state.memory import MemoryStore
from extauthz.state.postgres import PostgresStore
from extauthz.state.protocol import StateStore
from extauthz.state.sqlite import SqliteStore

DEFAULT_STATE_URL = "sqlite:///extauthz-state.db"
_EXAMPLES = (
    "sqlite:///extauthz-state.db, sqlite:////var/lib/extauthz/state.db, "
    "postgresql://user@host:5432/db, memory://"
)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Timing knobs of the stores (defaults suit production; tests shorten them)."""

    poll_interval: float = 0.5  # SQLite: how often other processes' changes are looked for
    op_timeout: float = 5.0  # any one store operation
    connect_timeout: float = 3.0  # PostgreSQL connection set-up


def _fail(url: str, what: str) -> ConfigError:
    return ConfigError(f"{redact_url(url)!r}: {what} (examples: {_EXAMPLES})", source="--state")


def store_from_url(url: str, settings: StoreSettings | None = None) -> StateStore:
    """The store ``url`` names, not yet opened; ``ConfigError`` for a URL that cannot work."""
    s = settings or StoreSettings()
    url = url.strip()
    if not url:
        raise _fail(url, "empty state URL")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _fail(url, "not a URL (no scheme://)")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest:
            raise _fail(url, "memory:// takes nothing after the scheme")
        return MemoryStore()
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise _fail(url, "a SQLite URL has three slashes then the path (sqlite:///file.db)")
        path = rest[1:]
        if not path or path.endswith("/"):
            raise _fail(url, "no database file name after sqlite:///")
        if "?" in path or "#" in path:
            raise _fail(url, "SQLite URLs take no query string or fragment")
        if path == ":memory:":
            raise _fail(url, "use memory:// for a store that is not kept on disk")
        return SqliteStore(path, poll_interval=s.poll_interval, op_timeout=s.op_timeout)
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise _fail(url, "no host in the PostgreSQL URL")
        try:
            _ = parts.port
        except ValueError:
            raise _fail(url, "the port is not a number") from None
        return PostgresStore(url, op_timeout=s.op_timeout, connect_timeout=s.connect_timeout)
    raise _fail(url, f"unknown scheme {scheme!r}; use sqlite, postgresql or memory")

"""The project's error hierarchy.

    ExtAuthzError
     +-- ConfigError        a policy file or setting is wrong; raised at start or on reload only
     +-- KeySourceError     signing keys could not be fetched or parsed
     +-- StoreError         the state store failed (maps to 503 on admin writes)

Expected authorization outcomes are never exceptions: the decision core returns a ``Deny``.
"""

from __future__ import annotations


class ExtAuthzError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ExtAuthzError):
    """A configuration problem; ``problems`` lists each one as ``key.path: what to fix``."""

    def __init__(self, problems: list[str] | str, source: str = "config") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.problems))


class KeySourceError(ExtAuthzError):
    """Signing keys could not be obtained from a JWKS or discovery URL."""


class StoreError(ExtAuthzError):
    """The state store is unreachable or refused an operation."""

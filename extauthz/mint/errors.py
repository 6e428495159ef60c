"""Errors raised while minting one credential; each names what failed and never holds a secret.

    MintError              one credential could not be minted (retried with backoff)
     +-- TokenSourceError   the workload OIDC token could not be read or fetched
     +-- ExchangeError      STS or Entra refused the exchange (code and message from the service)
     +-- TransportError     a network, TLS, timeout or size-limit failure talking to a service
     +-- SinkError          the credential file could not be written

Configuration problems are ``extauthz.errors.ConfigError`` and stop the minter at start.
"""

from __future__ import annotations

from extauthz.errors import ExtAuthzError


class MintError(ExtAuthzError):
    """One credential could not be minted this time; ``reason`` is a stable metric label."""

    reason = "error"


class TokenSourceError(MintError):
    """The OIDC token source (metadata server, env var, file, CI endpoint) gave no token."""

    reason = "token_source"


class ExchangeError(MintError):
    """STS or Entra answered with a refusal; ``code`` is the service's error code."""

    reason = "exchange"

    def __init__(self, message: str, code: str = "") -> None:
        self.code = code
        super().__init__(message)


class TransportError(MintError):
    """A service could not be reached, timed out, answered too much or broke TLS."""

    reason = "transport"


class SinkError(MintError):
    """A credential file could not be written to the output directory."""

    reason = "sink"

"""How a sidecar runs, as opposed to what it decides: signing keys, deadlines, reloads.

Compiled from the same file as the policy (``compile_policy`` returns both) and applied by the
runtime; the decision core never reads these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extauthz.identity.introspection import IntrospectionSettings


@dataclass(frozen=True, slots=True)
class KeySettings:
    """Where signing keys come from and how long they are trusted."""

    urls: tuple[str, ...] = ()
    ttl: float = 600.0
    refetch_interval: float = 5.0
    fetch_timeout: float = 5.0
    token_cache_size: int = 10_000
    token_cache_max_age: float = 300.0
    # litellm_jwtauth.issuers: (issuer, its key URLs), one key source each.
    issuers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # litellm_jwtauth.oidc_userinfo_*: where opaque tokens are resolved (None: not at all).
    userinfo_endpoint: str | None = None
    userinfo_cache_ttl: float = 300.0
    # litellm_jwtauth.routing_overrides: where matching tokens are introspected (config.overrides)
    introspection: IntrospectionSettings | None = None


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """The runtime knobs of one policy file (``extauthz:`` and ``public_key_ttl``)."""

    keys: KeySettings = field(default_factory=KeySettings)
    check_timeout: float = 0.8  # the sidecar's own deadline per check (below Envoy's)
    reload_interval: float = 1.0  # how often the policy file is looked at

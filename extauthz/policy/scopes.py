"""``scope_mappings`` under ``enforce_scope_based_access``: the models (and routes) scopes grant.

LiteLLM 1.108.7 (``JWTAuthManager.check_scope_based_access``), for every JWT caller, admins
included: the models of the mappings whose scope the token holds are the only ones it may ask
for; a request that names no model passes. Here the models are every model the upstream may run
(``decide.judge_body``: aliases, fallbacks, forced models), like ``role_permissions`` models.

LiteLLM does not read ``scope_mappings[].routes``. Here, once any mapping names routes, a caller
may call only the routes of the mappings its scopes match (none matched: no route): stricter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extauthz.policy.compiled import ModelRule
from extauthz.policy.routes import RouteSet


@dataclass(frozen=True, slots=True)
class ScopeMapping:
    """One compiled ``scope_mappings`` entry."""

    scope: str
    models: tuple[str, ...] | None
    routes: RouteSet | None


@dataclass(frozen=True, slots=True)
class ScopeGrant:
    """What a caller's scopes grant: the model rule and the route sets (None: unrestricted)."""

    rule: ModelRule
    routes: tuple[RouteSet, ...] | None
    matched: tuple[str, ...]  # the scopes that matched a mapping, config order

    def allows_route(self, path: str) -> bool:
        return self.routes is None or any(r.matches(path) for r in self.routes)

    def describe(self) -> str:
        """For messages and explain: which scopes granted which models."""
        scopes = ", ".join(self.matched) or "none of the mapped scopes"
        return f"scopes {scopes} grant models " + (", ".join(self.rule.entries) or "(none)")


@dataclass(frozen=True, slots=True)
class ScopeRules:
    """All ``scope_mappings``; ``routed``: some mapping names routes (routes are enforced)."""

    mappings: tuple[ScopeMapping, ...]
    globs: bool = False  # extauthz.model_globs, as for role_permissions models
    routed: bool = field(init=False, default=False)  # derived once, read by every grant

    def __post_init__(self) -> None:
        object.__setattr__(self, "routed", any(m.routes is not None for m in self.mappings))

    def grant(self, scopes: frozenset[str]) -> ScopeGrant:
        matched = [m for m in self.mappings if m.scope in scopes]
        models = dict.fromkeys(x for m in matched for x in m.models or ())
        routes = (
            tuple(m.routes for m in matched if m.routes is not None) if self.routed else None
        )
        return ScopeGrant(
            ModelRule(tuple(models), globs=self.globs),
            routes,
            tuple(dict.fromkeys(m.scope for m in matched)),
        )

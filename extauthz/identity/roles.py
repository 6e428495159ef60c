"""IdP roles to LiteLLM roles: ``role_mappings``, ``object_id_jwt_field``, ``jwt_litellm_role_map``.

LiteLLM 1.108.7 (``handle_jwt.py``), read once per token with the identity:
- ``role_mappings``: the first entry, in config order, whose ``role`` the ``roles_jwt_field``
  claim holds (exact compare) gives the internal role (``_rbac_role_from_role_mapping``); it is
  the last resort of ``get_rbac_role``, after the admin scope, the team id and the user id/roles.
- ``object_id_jwt_field``: a present object id becomes the team id of a ``team`` caller and the
  user id of an ``internal_user`` (``authorize_jwt``), whatever made the role.
- ``jwt_litellm_role_map`` under ``sync_user_role_and_teams``: the first entry, in config order,
  whose glob (``fnmatch``, case-sensitive on Linux) matches any IdP role is written to the user's
  database row, and a row that says ``proxy_admin`` makes the request a proxy admin's
  (``map_jwt_role_to_litellm_role``, ``sync_user_role_and_teams``).

A roles claim that is one string is one role (LiteLLM iterates its characters); one that is not
a string or a list of strings, and an object id without a canonical form, are a problem that
refuses the token (``Identity.role_problem``), never quoted.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from extauthz.identity.claims import ClaimValueError, canonical_id, read_claim
from extauthz.model import Role


@dataclass(frozen=True, slots=True)
class GlobRole:
    """One ``jwt_litellm_role_map`` entry, its pattern compiled as ``fnmatch`` compiles it."""

    pattern: str
    role: Role
    regex: re.Pattern[str]

    @classmethod
    def of(cls, pattern: str, role: Role) -> GlobRole:
        # fnmatch.translate makes star runs atomic groups: no catastrophic backtracking.
        return cls(pattern, role, re.compile(fnmatch.translate(pattern)))


@dataclass(frozen=True, slots=True)
class RoleRules:
    """The compiled role settings (empty: none configured, nothing is read)."""

    roles_field: str | None = None  # roles_jwt_field
    roles_path: tuple[str, ...] = ()
    mappings: tuple[tuple[str, Role], ...] = ()  # role_mappings, config order
    object_id_field: str | None = None  # object_id_jwt_field
    object_id_path: tuple[str, ...] = ()
    role_map: tuple[GlobRole, ...] = ()  # jwt_litellm_role_map, only with sync on

    @property
    def active(self) -> bool:
        return bool(self.mappings or self.role_map or self.object_id_field)


NO_ROLE_RULES = RoleRules()


class RoleClaims(NamedTuple):
    """What the role settings read from one token (the ``Identity`` fields of the same names)."""

    mapped_role: Role | None = None
    mapped_from: str | None = None
    object_id: str | None = None
    role_problem: str | None = None
    synced_role: Role | None = None
    synced_from: str | None = None


NO_ROLE_CLAIMS = RoleClaims()
_KIND = {bool: "a boolean", int: "a number", float: "a number", dict: "an object"}


def idp_roles(claims: Mapping[str, Any], rules: RoleRules) -> tuple[tuple[str, ...], str | None]:
    """The IdP roles in claim order, or a problem: a list of strings, or one string whole."""
    if rules.roles_field is None:
        return (), None
    value = read_claim(claims, rules.roles_field, rules.roles_path)
    name = f"claim {rules.roles_field!r} (roles_jwt_field)"
    if value is None:
        return (), None
    if isinstance(value, str):
        return (value,), None
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return tuple(dict.fromkeys(value)), None  # duplicates dropped, order kept
        return (), f"{name} holds an entry that is not a string; roles are a list of strings"
    kind = _KIND.get(type(value), "not a list")
    return (), f"{name} is {kind}; roles are a list of strings"


def _object_id(claims: Mapping[str, Any], rules: RoleRules) -> str | None:
    """The object id in canonical form; a falsy claim is none (LiteLLM: ``if object_id``)."""
    if rules.object_id_field is None:
        return None
    value = read_claim(claims, rules.object_id_field, rules.object_id_path)
    if not value:
        return None
    return canonical_id(value, f"claim {rules.object_id_field!r} (object_id_jwt_field)")


def read_role_claims(claims: Mapping[str, Any], rules: RoleRules) -> RoleClaims:
    """Apply the role settings to one token's claims."""
    if not rules.active:
        return NO_ROLE_CLAIMS
    roles, problem = idp_roles(claims, rules)
    try:
        object_id = _object_id(claims, rules)
    except ClaimValueError as exc:
        object_id, problem = None, problem or str(exc)
    mapped_role = mapped_from = None
    held = frozenset(roles)
    for role, internal in rules.mappings:
        if role in held:
            mapped_role, mapped_from = internal, role
            break
    synced = synced_from = None
    for entry in rules.role_map:
        match = next((r for r in roles if entry.regex.match(r)), None)
        if match is not None:
            # the matched role is the token's: shown cut (explain output), never a header
            synced, synced_from = entry.role, f"{match[:200]} ~ {entry.pattern}"
            break
    return RoleClaims(mapped_role, mapped_from, object_id, problem, synced, synced_from)

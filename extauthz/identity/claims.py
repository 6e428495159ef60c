"""Read values out of verified JWT claims the way LiteLLM's field paths describe them.

A field path is dotted (``resource_access.litellm-test-client-id.roles``); ``\\.`` escapes a
literal dot, a leading ``metadata.`` is dropped (LiteLLM does this), and a key that itself
contains dots (``https://example.com/roles``) is found when it exists verbatim at the top level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_CLAIM_VALUE_CHARS = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_field_path(field: str) -> tuple[str, ...]:
    """Split a LiteLLM field path into its keys, honouring ``\\.`` escapes."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(field):
        ch = field[i]
        if ch == "\\" and i + 1 < len(field) and field[i + 1] == ".":
            current.append(".")
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    if len(parts) > 1 and parts[0] == "metadata":
        parts = parts[1:]
    return tuple(parts)


def read_claim(claims: Mapping[str, Any], field: str, path: tuple[str, ...]) -> Any:
    """Return the value at ``path`` (or at the verbatim key ``field``), or None if absent."""
    if field in claims:
        return claims[field]
    node: Any = claims
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


class ClaimValueError(ValueError):
    """A claim holds a value no header may carry (control characters, absurd length)."""


def _clean(value: str, field: str) -> str:
    if len(value) > MAX_CLAIM_VALUE_CHARS:
        raise ClaimValueError(f"claim {field!r} is longer than {MAX_CLAIM_VALUE_CHARS} characters")
    if _CONTROL.search(value) is not None:
        raise ClaimValueError(f"claim {field!r} contains control characters")
    return value


def string_claim(claims: Mapping[str, Any], field: str | None, path: tuple[str, ...]) -> str | None:
    """A single string id: a string, or the first string of a list (LiteLLM's rule); else None.

    Raises ClaimValueError when the value could not be carried safely in a header.
    """
    if field is None:
        return None
    value = read_claim(claims, field, path)
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), None)
    if not isinstance(value, str) or value == "":
        return None
    return _clean(value, field)


def string_set_claim(
    claims: Mapping[str, Any], field: str | None, path: tuple[str, ...]
) -> frozenset[str]:
    """A set of strings: a list of strings, or one string taken whole (never split per char)."""
    if field is None:
        return frozenset()
    value = read_claim(claims, field, path)
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` and ``scp`` (Entra puts them in ``scp``; LiteLLM #6793)."""
    out: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            out.update(value.split())
        elif isinstance(value, list):
            out.update(v for v in value if isinstance(v, str))
    return frozenset(out)

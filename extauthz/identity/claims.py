"""Read values out of verified JWT claims the way LiteLLM's field paths describe them.

A field path is dotted (``resource_access.litellm-test-client-id.roles``); ``\\.`` escapes a
literal dot, a leading ``metadata.`` is dropped (LiteLLM does this), and a key that itself
contains dots (``https://example.com/roles``) is found when it exists verbatim at the top level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


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
    """A value that has no canonical id form (see ``canonical_id``); the message names it."""


MAX_ID_CHARS = 1024
_INT_LIMIT = 10 ** (MAX_ID_CHARS - 1)  # longer decimal strings are refused before str()
_NOT_ID_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # controls, lone surrogates


def plain_id(value: str) -> bool:
    """True for the common id that ``canonical_id`` returns as it is, told without a regex:
    non-empty, at most ``MAX_ID_CHARS``, printable ASCII (so no control character and no
    surrogate), and not starting or ending with a space (the only printable ASCII whitespace).
    False says nothing: ask ``canonical_id``."""
    return (
        0 < len(value) <= MAX_ID_CHARS
        and value.isascii()
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
    )


def canonical_id(value: object, name: str) -> str | None:
    """The one form of an id (team, user, org, end user, email), from a claim or the admin API.

    Blocks, identity headers and metadata all see this value, so they can never disagree:
    - a string is the id as it is; it is refused, never trimmed, when it starts or ends with
      whitespace (Envoy trims header values, so the upstream would see another id than the block
      check), holds a control character, or is longer than ``MAX_ID_CHARS``;
    - an integer (not a bool) is its decimal string, as LiteLLM's ``str()`` makes it;
    - None and "" are no id (None); anything else (bool, float, list, object) is refused.

    Raises ClaimValueError naming ``name`` (never quoting the value).
    """
    if isinstance(value, str):
        if plain_id(value):
            return value
        if not value:
            return None
        if len(value) > MAX_ID_CHARS:
            raise ClaimValueError(f"{name} is longer than {MAX_ID_CHARS} characters")
        if _NOT_ID_TEXT.search(value) is not None:
            raise ClaimValueError(f"{name} contains a control character")
        if value[0].isspace() or value[-1].isspace():
            raise ClaimValueError(
                f"{name} starts or ends with whitespace; ids are compared exactly, never trimmed"
            )
        return value
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if -_INT_LIMIT < value < _INT_LIMIT:
            return str(value)
        raise ClaimValueError(f"{name} is longer than {MAX_ID_CHARS} characters")
    kind = {bool: "a boolean", float: "a fraction or float", list: "a list", dict: "an object"}
    raise ClaimValueError(
        f"{name} is {kind.get(type(value), 'not text')}; an id is a string or an integer"
    )


def string_claim(claims: Mapping[str, Any], field: str | None, path: tuple[str, ...]) -> str | None:
    """A single id in its canonical form (``canonical_id``); a list counts by its first element
    (LiteLLM's rule). None when the claim is absent, null or empty.

    Raises ClaimValueError when the value has no canonical form.
    """
    if field is None:
        return None
    value = read_claim(claims, field, path)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str) and plain_id(value):
        return value  # the common case, without formatting the name an error would need
    return canonical_id(value, f"claim {field!r}")


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


_NO_SCOPES: frozenset[str] = frozenset()


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` and ``scp`` (Entra puts them in ``scp``; LiteLLM #6793)."""
    if "scope" not in claims and "scp" not in claims:
        return _NO_SCOPES  # most tokens: no set built
    out: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            out.update(value.split())
        elif isinstance(value, list):
            out.update(v for v in value if isinstance(v, str))
    return frozenset(out)

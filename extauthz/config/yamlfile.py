"""Read a YAML file strictly: safe loader, duplicate keys refused, a mapping at the top.

Duplicate keys are refused because YAML silently keeps the last one, and a policy file where
``models:`` appears twice means one of the two lists is being ignored without anyone noticing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from extauthz.errors import ConfigError

MAX_CONFIG_BYTES = 4 * 1024 * 1024


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, str | int | float | bool) and key in seen:
            mark = key_node.start_mark
            raise ConfigError(
                f"line {mark.line + 1}: key {key!r} appears twice in the same mapping; "
                "keep one (YAML would silently use the last)"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_yaml(text: str, source: str = "config") -> dict[str, Any]:
    """Parse YAML text into a dict; raise ConfigError naming the line on any problem."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}not valid YAML ({problem})", source) from None
    if data is None:
        # An empty file is always a mistake (a truncated write, a ConfigMap key that lost its
        # content); loading it as "all defaults" would silently turn JWT auth off.
        raise ConfigError(
            "the file is empty (or only comments); a policy needs at least general_settings:",
            source,
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping (general_settings:, model_list:, ...), "
            f"not a {type(data).__name__}",
            source,
        )
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read and parse a YAML config file; raise ConfigError if it is missing, huge or invalid."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", str(p)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is larger than {MAX_CONFIG_BYTES} bytes", str(p))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("file is not UTF-8 text", str(p)) from None
    return parse_yaml(text, str(p))

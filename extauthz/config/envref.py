"""LiteLLM's ``os.environ/NAME`` convention: a config value that names an environment variable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "os.environ/"


def is_env_ref(value: object) -> bool:
    """True when ``value`` is a string of the form ``os.environ/NAME``."""
    return isinstance(value, str) and value.startswith(PREFIX)


def resolve_env_refs(value: Any, environ: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Return ``value`` with every ``os.environ/NAME`` string replaced by the variable's value.

    Walks dicts and lists. A reference to an unset variable is recorded in ``problems`` (with
    its key path) and resolves to None, so every missing variable is reported at once.
    """
    if isinstance(value, dict):
        return {k: resolve_env_refs(v, environ, f"{path}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_refs(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if is_env_ref(value):
        name = value[len(PREFIX) :]
        if not name:
            problems.append(f"{path}: 'os.environ/' names no variable; write os.environ/NAME")
            return None
        if name not in environ:
            problems.append(
                f"{path}: environment variable {name} is not set (the value is {value!r}); "
                f"export {name} or write the value directly"
            )
            return None
        return environ[name]
    return value

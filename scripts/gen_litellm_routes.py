"""Regenerate extauthz/policy/litellm_routes.py from the installed (pinned) LiteLLM.

    python scripts/gen_litellm_routes.py           # rewrite the table
    python scripts/gen_litellm_routes.py --check   # exit 1 and say what moved, write nothing

The table is LiteLLM's ``LiteLLMRoutes`` enum, group by group, templates in LiteLLM's order
(sets sorted), plus the ``LiteLLM_JWTAuth`` route defaults. tests/unit/test_litellm_routes.py
fails when the installed LiteLLM's groups differ from the table, so an upgrade of the pin is:
bump pyproject.toml, reinstall, run this script, read the diff.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent.parent / "extauthz" / "policy" / "litellm_routes.py"


def litellm_tables() -> tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(version, groups, jwt-auth route defaults) read from the installed LiteLLM."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    from litellm.proxy._types import LiteLLM_JWTAuth, LiteLLMRoutes

    groups: dict[str, tuple[str, ...]] = {}
    for member in LiteLLMRoutes:
        value: Any = member.value
        templates = sorted(value) if isinstance(value, set | frozenset) else list(value)
        if not all(isinstance(t, str) for t in templates):
            raise SystemExit(f"LiteLLMRoutes.{member.name} holds a non-string template")
        groups[member.name] = tuple(dict.fromkeys(templates))
    fields = LiteLLM_JWTAuth.model_fields
    defaults = {
        name: tuple(fields[name].default)
        for name in ("admin_allowed_routes", "team_allowed_routes", "public_allowed_routes")
    }
    return version("litellm"), groups, defaults


def _q(text: str) -> str:
    """A double-quoted Python literal (ruff format's style, so the file is format-stable)."""
    literal = json.dumps(text)
    if "\\" in literal or not text.isascii():
        raise SystemExit(f"unexpected characters in route template {text!r}")
    return literal


def _entry(name: str, templates: tuple[str, ...]) -> list[str]:
    """One dict entry, laid out as ruff format lays it out."""
    one = f"    {_q(name)}: ({_q(templates[0])},)," if len(templates) == 1 else ""
    if one and len(one) <= 100:
        return [one]
    return [f"    {_q(name)}: (", *(f"        {_q(t)}," for t in templates), "    ),"]


def render(
    litellm_version: str,
    groups: dict[str, tuple[str, ...]],
    defaults: dict[str, tuple[str, ...]],
) -> str:
    lines = [
        '"""LiteLLM\'s route groups, generated from the pinned LiteLLM: do not edit.',
        "",
        "Regenerate with ``python scripts/gen_litellm_routes.py`` after changing the pin;",
        "tests/unit/test_litellm_routes.py fails while it and the installed LiteLLM differ.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"LITELLM_VERSION = {_q(litellm_version)}",
        "",
        "# LiteLLM_JWTAuth's route defaults in that version.",
        "JWT_AUTH_ROUTE_DEFAULTS: dict[str, tuple[str, ...]] = {",
    ]
    for name, value in defaults.items():
        lines += _entry(name, value)
    lines += ["}", "", "# LiteLLMRoutes, group by group (Starlette path templates)."]
    parts = {name: _parts(templates, groups, name) for name, templates in groups.items()}
    shared = [n for n in groups if any(p == (n,) for ps in parts.values() for p in ps)]
    if shared:
        lines += ["# Groups LiteLLM builds from others are written as those groups, not copied."]
    for name in shared:
        lines += ["", f"{_const(name)}: tuple[str, ...] = ("]
        lines += [f"    {_q(t)}," for t in groups[name]] + [")"]
    lines += ["", "GROUPS: dict[str, tuple[str, ...]] = {"]
    for name, templates in groups.items():
        if name in shared:
            lines.append(f"    {_q(name)}: {_const(name)},")
        elif any(isinstance(p, tuple) for p in parts[name]):
            lines.append(f"    {_q(name)}: (")
            for p in parts[name]:
                lines.append(
                    f"        *{_const(p[0])}," if isinstance(p, tuple) else f"        {_q(p)},"
                )
            lines.append("    ),")
        else:
            lines += _entry(name, templates)
    lines.append("}")
    return "\n".join(lines) + "\n"


MIN_SHARED = 3
"""Shortest run of another group's templates written as a reference to it."""


def _const(group: str) -> str:
    return "_" + group.upper()


def _parts(
    templates: tuple[str, ...], groups: dict[str, tuple[str, ...]], name: str
) -> list[str | tuple[str]]:
    """``templates`` as literal templates and ``(group,)`` references: at each position the
    longest earlier group whose whole tuple follows there (the result is the same tuple)."""
    earlier = []
    for other, value in groups.items():
        if other == name:
            break
        if len(value) >= MIN_SHARED:
            earlier.append((other, value))
    out: list[str | tuple[str]] = []
    i = 0
    while i < len(templates):
        fits = [o for o, v in earlier if templates[i : i + len(v)] == v]
        if fits:
            best = max(fits, key=lambda o: len(groups[o]))
            out.append((best,))
            i += len(groups[best])
        else:
            out.append(templates[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    args = parser.parse_args(argv)
    text = render(*litellm_tables())
    current = TARGET.read_text() if TARGET.exists() else ""
    if args.check:
        if text != current:
            print(f"{TARGET} is out of date: run python scripts/gen_litellm_routes.py")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

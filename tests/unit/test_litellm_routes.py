"""Our route tables are the pinned LiteLLM's: fails, saying what moved, when they differ.

After upgrading the pin run ``python scripts/gen_litellm_routes.py`` and read the diff.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from extauthz.config.schema import DEFAULT_ADMIN_ROUTES, DEFAULT_TEAM_ROUTES
from extauthz.policy import litellm_routes
from extauthz.policy.routes import EXTENSIONS, ROUTE_GROUPS, compile_routes

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_litellm_routes.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_litellm_routes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def installed() -> tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pytest.importorskip("litellm.proxy._types")
    tables: tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]
    tables = _generator().litellm_tables()
    return tables


def _moves(ours: dict[str, tuple[str, ...]], theirs: dict[str, tuple[str, ...]]) -> list[str]:
    moved = []
    for name in sorted(set(ours) | set(theirs)):
        if name not in ours:
            moved.append(f"new group {name} ({len(theirs[name])} templates)")
        elif name not in theirs:
            moved.append(f"group {name} is gone")
        elif ours[name] != theirs[name]:
            added = sorted(set(theirs[name]) - set(ours[name]))
            removed = sorted(set(ours[name]) - set(theirs[name]))
            moved.append(f"{name}: +{added} -{removed}" if added or removed else f"{name}: order")
    return moved


def test_route_groups_are_the_installed_litellms(
    installed: tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]],
) -> None:
    """Every LiteLLMRoutes group, template for template, as generated for this version."""
    version, groups, _ = installed
    moved = _moves(litellm_routes.GROUPS, groups)
    assert not moved, (
        f"LiteLLM {version} route groups differ from extauthz/policy/litellm_routes.py "
        f"(generated from {litellm_routes.LITELLM_VERSION}); run "
        "python scripts/gen_litellm_routes.py. Moved: " + "; ".join(moved)
    )
    assert version == litellm_routes.LITELLM_VERSION


def test_default_routes_are_the_installed_litellms(
    installed: tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]],
) -> None:
    """admin_allowed_routes and team_allowed_routes default as LiteLLM_JWTAuth's do."""
    _, _, defaults = installed
    assert defaults == litellm_routes.JWT_AUTH_ROUTE_DEFAULTS
    assert defaults["admin_allowed_routes"] == DEFAULT_ADMIN_ROUTES
    assert defaults["team_allowed_routes"] == DEFAULT_TEAM_ROUTES


def test_the_generated_file_is_what_the_script_writes(
    installed: tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]],
) -> None:
    """Nobody edited the generated file by hand."""
    text = _generator().render(*installed)
    assert text == Path(litellm_routes.__file__).read_text()


def test_extensions_only_add_and_every_group_compiles() -> None:
    """Our EXTENSIONS add templates to LiteLLM's groups and remove none."""
    for name, templates in ROUTE_GROUPS.items():
        assert set(litellm_routes.GROUPS[name]) <= set(templates)
        extra = set(templates) - set(litellm_routes.GROUPS[name])
        assert extra == set(EXTENSIONS.get(name, ())) - set(litellm_routes.GROUPS[name])
        compile_routes([name])

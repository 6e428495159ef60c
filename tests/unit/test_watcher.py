"""Policy hot reload: edits, ConfigMap-style symlink swaps, and broken edits."""

from __future__ import annotations

import os
from pathlib import Path

from extauthz.config.loader import LoadedPolicy
from extauthz.config.watcher import PolicyWatcher

ENV = {"JWT_PUBLIC_KEY_URL": "file:///dev/null"}
V1 = "general_settings: {enable_jwt_auth: true, role_permissions: [{role: team, models: [a]}]}\n"
V2 = "general_settings: {enable_jwt_auth: true, role_permissions: [{role: team, models: [b]}]}\n"


def models(loaded: LoadedPolicy) -> tuple[str, ...]:
    return next(iter(loaded.policy.role_models.values())).entries


def test_atomic_replace_is_applied(tmp_path: Path) -> None:
    """Writing a new file and renaming it over the old one reloads the policy."""
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    applied: list[LoadedPolicy] = []
    watcher = PolicyWatcher(str(path), ENV, applied.append)
    assert watcher.check_once() is None
    tmp = tmp_path / ".new"
    tmp.write_text(V2)
    os.replace(tmp, path)
    assert watcher.check_once() is True
    assert models(applied[-1]) == ("b",)


def test_configmap_symlink_swap_is_applied(tmp_path: Path) -> None:
    """Kubernetes swaps the ..data symlink; the watcher follows it."""
    for name, text in (("v1", V1), ("v2", V2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "policy.yaml").write_text(text)
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    applied: list[LoadedPolicy] = []
    watcher = PolicyWatcher(str(tmp_path / "policy.yaml"), ENV, applied.append)
    (tmp_path / "..data_tmp").symlink_to("v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert watcher.check_once() is True
    assert models(applied[-1]) == ("b",)


def test_broken_edit_keeps_the_last_good_policy(tmp_path: Path) -> None:
    """Garbage is refused, nothing is applied, and the error is kept for /readyz."""
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    applied: list[LoadedPolicy] = []
    watcher = PolicyWatcher(str(path), ENV, applied.append)
    path.write_text("general_settings: [this is: not valid")
    assert watcher.check_once() is False
    assert applied == [] and watcher.last_error is not None and "YAML" in watcher.last_error
    path.write_text(V2)
    assert watcher.check_once() is True and watcher.last_error is None


def test_touch_without_change_does_not_reload(tmp_path: Path) -> None:
    """Same content with a new mtime is not a reload."""
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    applied: list[LoadedPolicy] = []
    watcher = PolicyWatcher(str(path), ENV, applied.append)
    os.utime(path, (1, 1))
    assert watcher.check_once() is None and applied == []


def test_reverting_a_broken_edit_clears_the_error(tmp_path: Path) -> None:
    """Writing the policy in force back after a broken edit clears the reload error."""
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    watcher = PolicyWatcher(str(path), ENV, lambda _loaded: None)
    path.write_text("general_settings: [broken")
    assert watcher.check_once() is False and watcher.last_error is not None
    path.write_text(V1)
    assert watcher.check_once() is None and watcher.last_error is None

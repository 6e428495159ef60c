"""deploy/Dockerfile: its shape (multi-stage, pinned base, non-root), and, since no image can be
built here, its build and install steps run in a fresh virtualenv."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from .kube import DEPLOY, POLICY_K8S, REPO, SETTINGS_ENV, read_env_file

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


def base_image() -> str:
    for word, rest in instructions():
        if word == "ARG" and rest.startswith("PYTHON_IMAGE="):
            return rest.partition("=")[2]
    raise AssertionError("no ARG PYTHON_IMAGE")


def build_copies() -> list[str]:
    """The paths the build stage copies from the build context (relative to the repo root)."""
    paths: list[str] = []
    for word, rest in stages()[0]:
        if word == "COPY" and "--from" not in rest:
            *sources, _dest = shlex.split(rest)
            paths.extend(sources)
    return paths


def test_dockerfile_is_multistage_pinned_and_non_root() -> None:
    all_stages = stages()
    assert len(all_stages) == 2
    image = base_image()
    name, _, tag = image.partition(":")
    assert name == "python" and tag and tag != "latest" and "slim" in tag, image
    # The image runs the Python minor version these tests run on.
    assert tag.startswith(f"{sys.version_info.major}.{sys.version_info.minor}-"), (
        f"{image}: the install test below runs Python {sys.version_info[:2]}"
    )
    for stage in all_stages:
        assert stage[0][1].split()[0] in ("${PYTHON_IMAGE}", image)
    final = all_stages[-1]
    words = [w for w, _ in final]
    assert "RUN" not in words[words.index("COPY") :], "nothing runs after the venv is copied"
    users = [rest for w, rest in final if w == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users
    assert users[-1] == "65532:65532"  # the Deployment's runAsUser / runAsGroup (test_manifests)
    assert ("ENTRYPOINT", '["extauthz"]') in final
    copies = [rest for w, rest in final if w == "COPY"]
    assert copies == ["--from=build /opt/extauthz /opt/extauthz"]
    assert "ADD" not in {w for w, _ in instructions()}, "ADD fetches URLs and unpacks; use COPY"


def test_build_context_is_what_the_build_copies() -> None:
    copied = build_copies()
    assert copied == ["pyproject.toml", "README.md", "extauthz"]
    for path in copied:
        assert (REPO / path).exists(), path
    included = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert included == set(copied)
    # Everything pyproject.toml's build needs is copied (its readme, the package).
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["readme"] in copied


@pytest.mark.slow
def test_install_steps_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """The Dockerfile's build stage, here: copy what it copies, build the wheel, install it into a
    new virtualenv, run the commands the containers run.

    Trade-off: the new virtualenv takes the project's dependencies from the development venv's
    site-packages (a .pth file), because nothing may be downloaded here. So this proves the
    wheel (contents, entry point, metadata, that its requirements are met by the versions the
    tests use, `pip check`), not that PyPI serves binary wheels for the image's platform; the
    real `docker build` does that (`--only-binary=:all:`).
    """
    src = tmp_path / "src"
    src.mkdir()
    for path in build_copies():
        origin = REPO / path
        if origin.is_dir():
            shutil.copytree(
                origin, src / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(origin, src / path)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    dist = tmp_path / "dist"
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(src)])
    (wheel,) = dist.glob("extauthz-*.whl")

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    run([base_python, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_dependencies_from_dev_venv.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    # with the `native` extra, as the Dockerfile installs it (serve --grpc-server pygrpc-native)
    install = [*pip, "--python", str(python), "install", "--no-index", "--only-binary=:all:"]
    run([*install, f"{wheel}[native]"])
    run([*pip, "--python", str(python), "check"])

    extauthz = venv / "bin" / "extauthz"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert run([str(extauthz), "--version"], cwd=tmp_path).strip() == f"extauthz {version}"
    where = run(
        [
            str(python),
            "-c",
            "import extauthz, extauthz.runtime, extauthz.mint.cli, pygrpc_native; "
            "print(extauthz.__file__)",
        ],
        cwd=tmp_path,
    ).strip()
    assert where.startswith(str(venv)), f"extauthz imported from {where}, not from the new venv"
    for command in ("serve", "mint"):
        assert "usage" in run([str(extauthz), command, "--help"], cwd=tmp_path)
    env = read_env_file(SETTINGS_ENV) | {"LITELLM_MASTER_KEY": "sk-check-config-only-1234"}
    out = run([str(extauthz), "check-config", str(POLICY_K8S)], cwd=tmp_path, env=env)
    assert f"{POLICY_K8S}: OK" in out


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd or REPO)}
    full_env |= env or {}
    done = subprocess.run(
        argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout

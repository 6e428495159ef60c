"""examples/: the user-facing Envoy config validates with the real Envoy, and the example LiteLLM
config plans exactly the files and secret names that Envoy config reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz.mint.aws import AwsCredentials
from extauthz.mint.plan import load_plan
from extauthz.mint.redact import Secret
from extauthz.mint.sinks import (
    AWS_SUFFIX,
    render_aws_credentials,
    render_sds_secret,
    write_atomic,
)

from .envoy import validate
from .proc import REPO

pytestmark = pytest.mark.envoy

EXAMPLES = REPO / "examples"
PLACEHOLDER_DIR = "/var/run/extauthz-mint"
EXAMPLE_ENV = {
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    "AZURE_CLIENT_ID": "91a43c21-cf21-4f34-9085-331015ea4f91",
    "AZURE_TENANT_ID": "f3b1cf79-eba8-40c3-8120-cb26aca169c2",
    "ANTHROPIC_API_KEY": "sk-ant-placeholder",
}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def envoy_reads(envoy: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """(files, SDS secret names, watched directories) in an Envoy bootstrap."""
    files, names, dirs = set(), set(), set()
    for node in walk(envoy):
        if "sds_config" in node:
            names.add(node["name"])
            files.add(node["sds_config"]["path_config_source"]["path"])
        if "credentials_data_source" in node:
            files.add(node["credentials_data_source"]["filename"])
        if "watched_directory" in node:
            dirs.add(node["watched_directory"]["path"])
    return files, names, dirs


def render_example(directory: Path) -> Path:
    rendered = directory / "envoy.yaml"
    text = (EXAMPLES / "envoy-mint.yaml").read_text().replace(PLACEHOLDER_DIR, str(directory))
    rendered.write_text(text)
    return rendered


def test_example_config_plans_the_files_the_example_envoy_reads() -> None:
    """Every file examples/envoy-mint.yaml reads is one the example config makes, and back."""
    plan = load_plan(EXAMPLES / "mint-config.yaml", EXAMPLE_ENV)
    envoy = yaml.safe_load((EXAMPLES / "envoy-mint.yaml").read_text())
    files, names, dirs = envoy_reads(envoy)
    assert files == {f"{PLACEHOLDER_DIR}/{spec.filename}" for spec in plan.credentials}
    assert names == {s.name for s in plan.credentials if not s.filename.endswith(AWS_SUFFIX)}
    assert dirs == {PLACEHOLDER_DIR}
    assert envoy["node"]["id"]  # file-based SDS needs a node id


def test_example_envoy_config_validates_with_the_files_present(tmp_path: Path) -> None:
    """With files in the minter's formats, `envoy --mode validate` passes."""
    plan = load_plan(EXAMPLES / "mint-config.yaml", EXAMPLE_ENV)
    for spec in plan.credentials:
        if spec.filename.endswith(AWS_SUFFIX):
            creds = AwsCredentials("ASIAPLACEHOLDER00000", Secret("x"), Secret("y"), None)
            text = render_aws_credentials(creds)
        else:
            text = render_sds_secret(spec.name, "Bearer placeholder")
        write_atomic(tmp_path, spec.filename, text)
    result = validate(render_example(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_validate_fails_without_the_files(tmp_path: Path) -> None:
    """Why `mint --once` runs before Envoy: a missing SDS file is fatal at start."""
    assert validate(render_example(tmp_path)).returncode != 0

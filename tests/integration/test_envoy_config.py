"""The shipped envoy.yaml: Envoy accepts it, and the test renderer changes only what it says."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from extauthz.dev.envoyconf import (
    EnvoyPorts,
    find_binary,
    load_config,
    render_envoy_config,
    validate,
    write_config,
)
from tests.integration.harness import ENVOY_YAML, REPO

pytestmark = pytest.mark.envoy


def test_shipped_config_validates() -> None:
    """`envoy --mode validate -c envoy.yaml` (from the repository root) passes."""
    done = subprocess.run(
        [find_binary("envoy"), "--mode", "validate", "-c", "envoy.yaml", "--use-dynamic-base-id"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout + done.stderr


def test_rendered_variants_validate(tmp_path: Path) -> None:
    """The configs the tests run (other ports, small body limit, access log) validate too."""
    config = render_envoy_config(
        load_config(ENVOY_YAML),
        EnvoyPorts(0, 0, 1, 2, 3),
        max_request_bytes=1024,
        access_log_path=str(tmp_path / "access.jsonl"),
    )
    done = validate(write_config(config, tmp_path / "variant.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_renderer_keeps_the_shipped_config() -> None:
    """Rendering with the shipped ports gives back envoy.yaml unchanged (nothing else moves)."""
    shipped = load_config(ENVOY_YAML)
    assert render_envoy_config(shipped, EnvoyPorts()) == shipped


def test_ext_authz_settings_that_matter() -> None:
    """Fail closed with 503, 1 s timeout, 8 MiB partial body sent as bytes, HTTP/2 cluster."""
    config = load_config(ENVOY_YAML)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = hcm["typed_config"]["http_filters"]
    assert [f["name"] for f in filters] == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]
    authz = filters[0]["typed_config"]
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    assert authz["grpc_service"]["timeout"] == "1s"
    assert authz["with_request_body"] == {
        "max_request_bytes": 8388608,
        "allow_partial_message": True,
        "pack_as_bytes": True,
    }
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    options = clusters["extauthz"]["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"]

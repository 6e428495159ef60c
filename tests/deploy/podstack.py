"""The gateway pod of deploy/, run on loopback: the same three programs with the same arguments,
environment and files as the rendered Deployment, with only addresses and paths swapped.

* ``extauthz mint`` and ``extauthz serve`` run as subprocesses with the container's ``args`` and
  ``env`` (ConfigMap values from settings.env, Secret values made up here), the policy being
  deploy/base/policy.yaml itself.
* Envoy runs deploy/base/envoy.yaml exactly as the ConfigMap holds it, rendered with loopback
  ports, the credentials directory swapped for a temporary one and the system CA bundle for a
  test CA.
* The clouds are the minter tests' stand-ins (tests/mint/standins.py): STS and Entra speak their
  real wire formats over HTTPS; the workload identity tokens are files as the kubelet would
  project them. One HTTPS server with a certificate for every provider host stands in for
  Anthropic, Azure OpenAI and Bedrock (checking SigV4 with botocore), a plain one for the
  OpenAI-compatible gateway behind the catch-all route.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz.dev.envoyconf import EnvoyProcess, find_binary
from extauthz.devtokens import new_private_key, sign_token
from harness.procs import free_port
from tests.integration.harness import Idp, Reply
from tests.integration.harness import request as http_request
from tests.mint.standins import EntraStandin, OidcIssuer, ServerThread, StsStandin, verify_sigv4
from tests.mint.testca import make_test_ca

from .kube import (
    POLICY_K8S,
    SETTINGS_ENV,
    container,
    flag,
    load_envoy,
    read_env_file,
)

CREDS_DIR = "/var/run/extauthz/creds"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
PROVIDER_CLUSTERS = ("anthropic", "azure_openai", "bedrock")
PROVIDER_HOSTS = [
    "api.anthropic.com",
    "example-resource.openai.azure.com",
    "bedrock-runtime.us-west-2.amazonaws.com",
]
# What the user puts in the Secret extauthz-secrets.
SECRETS = {
    "LITELLM_MASTER_KEY": "sk-master-7d1c0e5b9a2f4e61",
    "ANTHROPIC_API_KEY": "sk-ant-test-3f0b7c2e9d",
}


@dataclass
class ProviderUpstream:
    """The LLM providers (and the catch-all gateway): record what Envoy sent, check SigV4."""

    sts: StsStandin
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        record: dict[str, Any] = {
            "path": request.raw_path,
            "headers": headers,
            "body_bytes": len(body),
            "tls": request.secure,
        }
        if headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            record["sigv4"] = verify_sigv4(
                request.method, request.raw_path, headers, body, self.sts.credentials
            )
        self.seen.append(record)
        return web.json_response(record)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


class Program:
    """One container's process: its args, its environment, its log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def swap(value: str, replacements: Mapping[str, str]) -> str:
    for old, new in replacements.items():
        value = value.replace(old, new)
    return value


def container_env(
    c: Mapping[str, Any],
    configmap: Mapping[str, str],
    secrets: Mapping[str, str],
    replacements: Mapping[str, str],
) -> dict[str, str]:
    """The environment Kubernetes would give the container (envFrom, then env), paths swapped."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for source in c.get("envFrom", []):
        assert "configMapRef" in source
        env.update(configmap)
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = swap(e["value"], replacements)
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["key"]]
    return env


def render_envoy_for_loopback(
    text: str,
    *,
    creds_dir: Path,
    ca_file: Path,
    admin_port: int,
    grpc_port: int,
    http_port: int,
    provider_port: int,
    gateway_port: int,
) -> dict[str, Any]:
    """deploy/base/envoy.yaml with loopback addresses; nothing else changes."""
    config = load_envoy(text.replace(CREDS_DIR, str(creds_dir)).replace(SYSTEM_CA, str(ca_file)))
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    for name in ("ingress", "ops"):
        listener_of = next(
            ln for ln in config["static_resources"]["listeners"] if ln["name"] == name
        )
        listener_of["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
    targets = {
        "extauthz": grpc_port,
        "extauthz_http": http_port,
        "envoy_admin": admin_port,
        "upstream": gateway_port,
        **dict.fromkeys(PROVIDER_CLUSTERS, provider_port),
    }
    for c in config["static_resources"]["clusters"]:
        for group in c["load_assignment"]["endpoints"]:
            for ep in group["lb_endpoints"]:
                ep["endpoint"]["address"]["socket_address"] = {
                    "address": "127.0.0.1",
                    "port_value": targets[c["name"]],
                }
    return config


def grpc_health(port: int, service: str) -> int:
    """grpc.health.v1 Check, as the kubelet's gRPC probe sends it; the status number."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status)
        except grpc.RpcError:
            return -1


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return -1


def wait_for(what: str, check: Any, programs: Iterable[Program], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for p in programs:
            if not p.running():
                raise AssertionError(f"{p.name} exited while waiting for {what}:\n{p.log()}")
        time.sleep(0.05)
    logs = "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in programs)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


@dataclass
class PodStack:
    """Everything running; ``close`` stops it all."""

    workdir: Path
    pod: dict[str, Any]
    servers: ServerThread
    key: Any
    idp: Idp
    issuer: OidcIssuer
    sts: StsStandin
    entra: EntraStandin
    providers: ProviderUpstream
    env_settings: dict[str, str]
    creds_dir: Path
    programs: dict[str, Program] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    envoy: EnvoyProcess | None = None

    @property
    def port(self) -> int:
        return self.ports["ingress"]

    def token(self, **claims: Any) -> str:
        base = {
            "aud": self.env_settings["JWT_AUDIENCE"],
            "iss": self.env_settings["JWT_ISSUER"],
        }
        return sign_token(self.key, base | claims)

    def call(
        self,
        path: str,
        *,
        token: str | None = None,
        body: bytes | None = None,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        return http_request(self.port, method, path, h, body)

    def access_log(self) -> list[dict[str, Any]]:
        assert self.envoy is not None
        out = []
        for line in self.envoy.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def close(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        for p in self.programs.values():
            p.stop()
        with contextlib.suppress(Exception):
            self.servers.call(self.idp.stop())
        self.servers.stop()


def start_pod_stack(workdir: Path, pod: dict[str, Any], envoy_text: str) -> PodStack:
    """Start the stand-ins, the two sidecars and Envoy as the pod spec says; wait until each
    passes the probe the manifest gives it."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca = make_test_ca(workdir / "ca", ["127.0.0.1", "localhost", *PROVIDER_HOSTS])
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(ca.cert_file, ca.key_file)

    servers = ServerThread()
    issuer = OidcIssuer()
    sts, entra = StsStandin(issuer), EntraStandin(issuer)
    providers = ProviderUpstream(sts)
    try:
        sts.url = f"https://127.0.0.1:{servers.serve(sts.app(), server_ssl)}"
        entra.url = f"https://localhost:{servers.serve(entra.app(), server_ssl)}"
        provider_port = servers.serve(providers.app(), server_ssl)
        gateway_port = servers.serve(providers.app())
        key = new_private_key()
        idp = Idp(key)
        servers.call(idp.start())
    except BaseException:
        servers.stop()
        raise

    creds_dir = workdir / "creds"
    tokens_dir = workdir / "tokens"
    state_dir = workdir / "state"
    for d in (tokens_dir / "aws", tokens_dir / "azure", state_dir):
        d.mkdir(parents=True)
    # The kubelet's projected service-account tokens, issued for the audiences in the manifest.
    (tokens_dir / "aws" / "token").write_text(
        issuer.issue("https://oidc.cluster.example", "sts.amazonaws.com", "system:sa")
    )
    (tokens_dir / "azure" / "token").write_text(
        issuer.issue("https://oidc.cluster.example", "api://AzureADTokenExchange", "system:sa")
    )

    settings = read_env_file(SETTINGS_ENV)
    settings |= {
        # Site values for this machine: the IdP, the role and the Entra app of the stand-ins.
        "JWT_PUBLIC_KEY_URL": idp.discovery_url,
        "JWT_ISSUER": f"http://127.0.0.1:{idp.port}",
        "AWS_ROLE_ARN": sts.role_arn,
        "AZURE_CLIENT_ID": entra.client_id,
        "AZURE_TENANT_ID": entra.tenant_id,
    }
    grpc_port, http_port, mint_port, admin_port = (free_port() for _ in range(4))
    mint_c, serve_c, envoy_c = (container(pod, n) for n in ("mint", "extauthz", "envoy"))
    replacements = {
        "/etc/extauthz/policy.yaml": str(POLICY_K8S),
        CREDS_DIR: str(creds_dir),
        "/var/run/secrets/tokens": str(tokens_dir),
        "/var/lib/extauthz": str(state_dir),
        flag(serve_c["args"], "--grpc-address"): f"127.0.0.1:{grpc_port}",
        flag(serve_c["args"], "--http-address"): f"127.0.0.1:{http_port}",
        flag(mint_c["args"], "--http-address"): f"127.0.0.1:{mint_port}",
    }
    stack = PodStack(
        workdir, pod, servers, key, idp, issuer, sts, entra, providers, settings, creds_dir
    )
    stack.ports |= {"grpc": grpc_port, "http": http_port, "mint": mint_port, "admin": admin_port}
    extauthz = find_binary("extauthz")
    try:
        # 1. The minter (a native sidecar: "started" once /readyz says every file is written).
        env = container_env(mint_c, settings, SECRETS, replacements)
        # Outside the cluster: where STS and Entra are, and the CA their certificates chain to.
        env |= {
            "AWS_ENDPOINT_URL_STS": sts.url,
            "AZURE_AUTHORITY_HOST": entra.url,
            "SSL_CERT_FILE": str(ca.ca_file),
        }
        argv = [extauthz, *(swap(a, replacements) for a in mint_c["args"])]
        stack.programs["mint"] = Program("mint", argv, env, workdir)
        startup = mint_c["startupProbe"]["httpGet"]["path"]
        wait_for(
            "the minter's startupProbe",
            lambda: http_status(f"http://127.0.0.1:{mint_port}{startup}") == 200,
            stack.programs.values(),
        )
        # 2. The sidecar ("started" once its gRPC health answers).
        env = container_env(serve_c, settings, SECRETS, replacements)
        argv = [extauthz, *(swap(a, replacements) for a in serve_c["args"])]
        stack.programs["extauthz"] = Program("extauthz", argv, env, workdir)
        ready = serve_c["readinessProbe"]["grpc"].get("service", "")
        wait_for(
            "the sidecar's readinessProbe",
            lambda: grpc_health(grpc_port, ready) == health_pb2.HealthCheckResponse.SERVING,
            stack.programs.values(),
        )
        # 3. Envoy with the pod's arguments (its config file and log level are the test's).
        config = render_envoy_for_loopback(
            envoy_text,
            creds_dir=creds_dir,
            ca_file=ca.ca_file,
            admin_port=admin_port,
            grpc_port=grpc_port,
            http_port=http_port,
            provider_port=provider_port,
            gateway_port=gateway_port,
        )
        # Flush the access log (stdout) every 50 ms instead of every 10 s, so tests can read it.
        args = [*envoy_args_for_test(envoy_c), "--file-flush-interval-msec", "50"]
        stack.envoy = EnvoyProcess(
            config, workdir, name="envoy-k8s", concurrency=None, extra_args=args
        )
        stack.envoy.start()
        stack.envoy.wait_ready()
        with urllib.request.urlopen(
            stack.envoy.admin_url + "/listeners?format=json", timeout=2
        ) as resp:
            for status in json.loads(resp.read())["listener_statuses"]:
                address = status["local_address"]["socket_address"]
                stack.ports[status["name"]] = int(address["port_value"])
    except BaseException:
        stack.close()
        raise
    return stack


def envoy_args_for_test(envoy_c: Mapping[str, Any]) -> list[str]:
    """The Envoy container's args minus the config path and log level (EnvoyProcess sets those),
    with the Downward API's pod name filled in."""
    args = [str(a) for a in envoy_c.get("args", [])]
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-c", "--config-path", "--log-level", "-l"):
            skip = True
            continue
        out.append(a.replace("$(POD_NAME)", "extauthz-gateway-test"))
    return out


def ops_url(stack: PodStack, path: str) -> str:
    return f"http://127.0.0.1:{stack.ports['ops']}{path}"

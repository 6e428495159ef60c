"""The ext_authz filter Istio and Envoy Gateway build from deploy/istio and deploy/envoy-gateway,
run in a real Envoy in front of the real sidecar: the decisions hold there.

Envoy Gateway sends the body as a UTF-8 string, never cut (above the limit Envoy answers 413
itself); Istio's provider sends bytes and cuts long bodies (the sidecar answers 413 body_cut when
the model matters). The filter configs come from tests/deploy/mesh.py's translations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.dev import envoyconf
from tests.integration.harness import (
    ENVOY_YAML,
    LoopThread,
    Reply,
    Stack,
    chat_body,
    request,
    start_stack,
    wait_until,
)

from . import mesh
from .kube import DEPLOY

pytestmark = pytest.mark.envoy

ISTIO = yaml.safe_load((DEPLOY / "istio" / "istiod-values.yaml").read_text())
SECURITY_POLICY = yaml.safe_load((DEPLOY / "envoy-gateway" / "securitypolicy.yaml").read_text())


def with_filter(
    stack: Stack, name: str, typed: dict[str, Any], per_route: Any = None
) -> dict[str, Any]:
    """envoy.yaml on the stack's ports, its ext_authz filter replaced by ``typed`` (named
    ``name``, disabled unless a route turns it on when ``per_route`` is given)."""
    config = envoyconf.render_envoy_config(
        envoyconf.load_config(ENVOY_YAML),
        envoyconf.EnvoyPorts(0, 0, stack.grpc_port, stack.http_port, stack.upstream_port),
        access_log_path=str(stack.workdir / f"{name.replace('/', '_')}.jsonl"),
        access_log_fields={
            **envoyconf.default_access_log_fields(),
            "reason": "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%",
        },
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = hcm["typed_config"]["http_filters"]
    (i,) = [n for n, f in enumerate(filters) if f["name"] == envoyconf.EXT_AUTHZ_FILTER]
    filters[i] = {"name": name, "typed_config": typed}
    if per_route is not None:
        filters[i]["disabled"] = True
        for vhost in hcm["typed_config"]["route_config"]["virtual_hosts"]:
            for route in vhost["routes"]:
                route.setdefault("typed_per_filter_config", {}).update(per_route)
    return config


class Proxy:
    def __init__(self, stack: Stack, name: str, config: dict[str, Any]) -> None:
        self.stack = stack
        self.log = Path(
            config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
                "typed_config"
            ]["access_log"][-1]["typed_config"]["path"]
        )
        self.envoy = envoyconf.EnvoyProcess(
            config, stack.workdir, name=name, extra_args=["--file-flush-interval-msec", "50"]
        )
        self.envoy.start()
        self.envoy.wait_ready()

    def call(self, token: str | None, body: bytes, test_id: str = "") -> Reply:
        headers = [("Content-Type", "application/json"), ("x-test-id", test_id)]
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        return request(self.envoy.listener_port, "POST", "/v1/chat/completions", headers, body)

    def logged(self, test_id: str) -> dict[str, Any]:
        def find() -> list[dict[str, Any]]:
            if not self.log.exists():
                return []
            lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]
            return [x for x in lines if x.get("test_id") == test_id]

        found, _ = wait_until(find, bool, timeout=10)
        assert len(found) == 1, f"no access-log line for {test_id}"
        return found[0]


@pytest.fixture(scope="module")
def stack(
    loop_thread: LoopThread, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = start_stack(loop_thread, tmp_path_factory.mktemp("mesh"), key, envoy=False)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def istio(stack: Stack) -> Iterator[Proxy]:
    (provider,) = [p for p in ISTIO["meshConfig"]["extensionProviders"] if p["name"] == "extauthz"]
    typed = mesh.istio_ext_authz(provider, "extauthz")
    proxy = Proxy(stack, "istio", with_filter(stack, envoyconf.EXT_AUTHZ_FILTER, typed))
    yield proxy
    proxy.envoy.stop()


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[Proxy]:
    name = mesh.envoy_gateway_filter_name(SECURITY_POLICY)
    typed = mesh.envoy_gateway_ext_authz(SECURITY_POLICY, "extauthz")
    config = with_filter(stack, name, typed, mesh.envoy_gateway_route_config(SECURITY_POLICY))
    proxy = Proxy(stack, "envoy-gateway", config)
    yield proxy
    proxy.envoy.stop()


def user(stack: Stack) -> str:
    """An internal_user: its role may use gpt-4o-mini only (examples/policy.yaml)."""
    return stack.token({"sub": "alice", "roles": ["basic_user"]})


def padded(model: str, size: int) -> bytes:
    """A chat body of about ``size`` bytes with the model last, as SDKs often write it."""
    filler = "x" * size
    return json.dumps({"messages": [{"role": "user", "content": filler}], "model": model}).encode()


def test_envoy_gateway_sends_the_body_as_a_string_and_the_model_check_holds(
    stack: Stack, gateway: Proxy
) -> None:
    typed = mesh.envoy_gateway_ext_authz(SECURITY_POLICY, "extauthz")
    assert "pack_as_bytes" not in typed["with_request_body"]  # a string, not raw bytes
    ok = gateway.call(user(stack), chat_body("gpt-4o-mini"), "eg-ok")
    assert ok.status == 200, str(ok)
    assert ok.json()["headers"]["x-auth-user-id"] == "alice"
    assert "authorization" not in ok.json()["headers"]
    denied = gateway.call(user(stack), chat_body("gpt-4o"), "eg-denied")
    assert (denied.status, denied.reason) == (403, "model_not_allowed")
    # Non-ASCII text in a string body still parses as the same JSON.
    accents = json.dumps({"model": "gpt-4o", "messages": [{"content": "héllo ✓"}]}).encode()
    assert gateway.call(user(stack), accents).reason == "model_not_allowed"


def test_envoy_gateway_metadata_keeps_ext_authz_namespace_under_its_own_filter_name(
    stack: Stack, gateway: Proxy
) -> None:
    gateway.call(user(stack), chat_body("gpt-4o"), "eg-meta")
    line = gateway.logged("eg-meta")
    assert (line["decision"], line["reason"], line["user_id"]) == (
        "deny",
        "model_not_allowed",
        "alice",
    )


def test_envoy_gateway_refuses_a_body_over_its_limit_itself(stack: Stack, gateway: Proxy) -> None:
    limit = SECURITY_POLICY["spec"]["extAuth"]["bodyToExtAuth"]["maxRequestBytes"]
    reply = gateway.call(user(stack), padded("gpt-4o-mini", limit + 1024), "eg-big")
    assert reply.status == 413
    assert reply.reason is None  # Envoy's own answer: the authorizer was not asked


def test_istio_cuts_long_bodies_and_the_sidecar_refuses_them_when_the_model_matters(
    stack: Stack, istio: Proxy
) -> None:
    (provider,) = [p for p in ISTIO["meshConfig"]["extensionProviders"] if p["name"] == "extauthz"]
    limit = provider["envoyExtAuthzGrpc"]["includeRequestBodyInCheck"]["maxRequestBytes"]
    cut = istio.call(user(stack), padded("gpt-4o-mini", limit + 1024), "istio-cut")
    assert (cut.status, cut.reason) == (413, "body_cut")
    assert "max_request_bytes" in cut.json()["error"]["message"]
    # A caller without a model list is not affected by the cut: the model does not matter.
    admin = stack.token({"sub": "root", "scope": "litellm_proxy_admin"})
    assert istio.call(admin, padded("gpt-4o", limit + 1024)).status == 200
    # Within the limit, the model check holds on the bytes Istio packs.
    assert istio.call(user(stack), chat_body("gpt-4o-mini")).status == 200
    assert istio.call(user(stack), chat_body("gpt-4o")).reason == "model_not_allowed"


def test_both_answer_503_when_the_authorizer_is_down(
    stack: Stack, istio: Proxy, gateway: Proxy
) -> None:
    stack.stop_sidecar()
    for proxy in (istio, gateway):
        reply = proxy.call(user(stack), chat_body("gpt-4o-mini"))
        assert reply.status == 503, f"{proxy.envoy.name}: {reply}"

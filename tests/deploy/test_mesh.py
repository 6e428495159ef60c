"""deploy/authorizer, deploy/istio and deploy/envoy-gateway, offline: every object validates (the
Kubernetes schemas for built-in kinds; npm's @kubernetes-models types and schemas for Istio and
Gateway API objects; the transcribed structures of tests/deploy/mesh.py for Istio's mesh config
and Envoy Gateway's SecurityPolicy), and the pieces name each other consistently."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz.config.loader import compile_policy

from . import mesh, models
from .kube import (
    CORE_KINDS,
    DEPLOY,
    Doc,
    container,
    container_port,
    one,
    read_env_file,
    render,
    schema_problems,
)

pytestmark = pytest.mark.usefixtures("need_kubectl")

MESH = ["authorizer", "istio", "envoy-gateway"]
SCHEMA_VERSIONS = ["1.30.0", "1.37.0"]
ISTIO_VALUES = DEPLOY / "istio" / "istiod-values.yaml"
AMBIENT = DEPLOY / "istio" / "ambient.yaml"
AUTHORIZER_POLICY = DEPLOY / "authorizer" / "policy.yaml"


def load_all(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def builtin(docs: tuple[Doc, ...] | list[Doc]) -> list[Doc]:
    return [
        d
        for d in docs
        if "." not in d["apiVersion"].partition("/")[0]
        or d["apiVersion"].startswith(("apps/", "policy/", "networking.k8s.io/"))
    ]


def crds(docs: tuple[Doc, ...] | list[Doc]) -> list[Doc]:
    return [d for d in docs if d not in builtin(docs)]


def istio_values() -> dict[str, Any]:
    data = yaml.safe_load(ISTIO_VALUES.read_text())
    assert isinstance(data, dict)
    return data


def provider(name: str = "extauthz") -> dict[str, Any]:
    for p in istio_values()["meshConfig"]["extensionProviders"]:
        if p["name"] == name:
            return dict(p)
    raise AssertionError(f"no extension provider {name!r}")


def security_policy() -> Doc:
    return one(render("envoy-gateway"), "SecurityPolicy", "extauthz")


@pytest.mark.parametrize("name", MESH)
def test_each_renders_the_authorizer_and_its_attachment(name: str) -> None:
    kinds = sorted(d["kind"] for d in render(name))
    extra = {
        "authorizer": [],
        "istio": ["AuthorizationPolicy", "Telemetry"],
        "envoy-gateway": ["ReferenceGrant", "SecurityPolicy"],
    }[name]
    assert kinds == sorted([*CORE_KINDS, "ConfigMap", *extra])  # policy and env ConfigMaps
    assert "Secret" not in kinds


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("name", MESH)
def test_builtin_objects_validate_against_the_kubernetes_schema(name: str, version: str) -> None:
    problems = schema_problems(builtin(render(name)), version)
    assert not problems, "\n".join(problems)


def test_istio_and_gateway_api_objects_validate_with_their_models() -> None:
    docs = [
        d
        for d in [*crds(render("istio")), *crds(render("envoy-gateway")), *load_all(AMBIENT)]
        if models.supported(d)
    ]
    assert sorted(d["kind"] for d in docs) == [
        "AuthorizationPolicy",
        "AuthorizationPolicy",
        "Gateway",
        "ReferenceGrant",
        "Telemetry",
    ]
    problems = models.validate(docs)
    assert not problems, "\n".join(problems)


def test_the_model_validators_catch_mistakes() -> None:
    """The same objects with a misspelt field, a bad enum value and a missing required field."""
    policy = copy.deepcopy(one(render("istio"), "AuthorizationPolicy"))
    policy["spec"]["provder"] = policy["spec"].pop("provider")
    bad_action = copy.deepcopy(one(render("istio"), "AuthorizationPolicy"))
    bad_action["metadata"]["name"] = "bad-action"
    bad_action["spec"]["action"] = "CUSTOMISED"
    grant = copy.deepcopy(one(render("envoy-gateway"), "ReferenceGrant"))
    del grant["spec"]["to"][0]["kind"]
    problems = models.validate([policy, bad_action, grant])
    text = "\n".join(problems)
    assert "AuthorizationPolicy/extauthz" in text and "provder" in text, text
    assert "AuthorizationPolicy/bad-action" in text, text
    assert "ReferenceGrant/extauthz-from-llm-gateway" in text, text


def test_istio_mesh_config_fits_istios_api() -> None:
    assert mesh.istio_values_problems(istio_values()) == []
    broken = istio_values()
    grpc = broken["meshConfig"]["extensionProviders"][0]["envoyExtAuthzGrpc"]
    grpc["includeRequestBodyInCheck"]["maxRequestByte"] = 1
    grpc["statusOnError"] = 503
    grpc["timeout"] = "1 second"
    problems = mesh.istio_values_problems(broken)
    assert len(problems) == 3, problems


def test_security_policy_fits_envoy_gateways_api() -> None:
    assert mesh.security_policy_problems(security_policy()) == []
    broken = copy.deepcopy(security_policy())
    ext = broken["spec"]["extAuth"]
    ext["bodyToExtAuth"]["allowPartialMessage"] = True  # Istio has it, Envoy Gateway does not
    ext["statusOnError"] = 999
    ext["http"] = {"backendRefs": [{"name": "extauthz", "port": 9194}]}
    problems = mesh.security_policy_problems(broken)
    assert len(problems) == 3, problems


def test_the_istio_provider_is_safe_for_the_authorizer() -> None:
    """503 when unreachable, a timeout above the authorizer's deadline, the body in bytes, and
    the AuthorizationPolicy naming this provider and the Service it points at."""
    grpc = provider()["envoyExtAuthzGrpc"]
    assert grpc["failOpen"] is False
    assert grpc["statusOnError"] == "503"
    assert mesh._duration(grpc["timeout"]) == "1s"
    body = grpc["includeRequestBodyInCheck"]
    assert body["allowPartialMessage"] is True and body["packAsBytes"] is True
    policy = one(render("istio"), "AuthorizationPolicy")
    assert policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"]["name"] == provider()["name"]
    for ambient in load_all(AMBIENT):
        if ambient["kind"] == "AuthorizationPolicy":
            assert ambient["spec"]["provider"]["name"] == provider()["name"]
            assert ambient["spec"]["targetRefs"][0]["name"] == "waypoint"
    service = one(render("istio"), "Service", "extauthz")
    ns = service["metadata"]["namespace"]
    assert grpc["service"] == f"{service['metadata']['name']}.{ns}.svc.cluster.local"
    assert grpc["port"] == service["spec"]["ports"][0]["port"]
    log = provider("extauthz-access-log")["envoyFileAccessLog"]["logFormat"]["labels"]
    assert "envoy.filters.http.ext_authz:decision" in log["decision"]
    telemetry = one(render("istio"), "Telemetry")
    assert telemetry["spec"]["accessLogging"][0]["providers"][0]["name"] == "extauthz-access-log"


def test_the_security_policy_points_at_the_authorizer_over_grpc() -> None:
    docs = render("envoy-gateway")
    ext = security_policy()["spec"]["extAuth"]
    assert "http" not in ext, "gRPC: Envoy Gateway's HTTP ext auth leaks metadata headers"
    assert "headersToExtAuth" not in ext, "the check must see every header"
    assert ext["failOpen"] is False and ext["statusOnError"] == 503
    assert mesh._duration(ext["timeout"]) == "1s"
    (ref,) = ext["grpc"]["backendRefs"]
    service = one(docs, "Service", ref["name"])
    assert service["metadata"]["namespace"] == ref["namespace"]
    assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]
    grant = one(docs, "ReferenceGrant")
    assert grant["metadata"]["namespace"] == ref["namespace"]
    assert grant["spec"]["from"] == [
        {
            "group": "gateway.envoyproxy.io",
            "kind": "SecurityPolicy",
            "namespace": security_policy()["metadata"]["namespace"],
        }
    ]
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": ref["name"]}]


def test_the_authorizer_pod_serves_what_the_service_and_probes_name() -> None:
    docs = render("authorizer")
    pod = one(docs, "Deployment", "extauthz")["spec"]["template"]["spec"]
    c = container(pod, "extauthz")
    assert [x["name"] for x in pod["containers"]] == ["extauthz"]
    service = one(docs, "Service", "extauthz")
    assert container_port(c, service["spec"]["ports"][0]["targetPort"]) == 9191
    assert service["spec"]["ports"][0]["appProtocol"] == "grpc"
    assert c["readinessProbe"]["grpc"] == {"port": 9191, "service": "readiness"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert one(docs, "Deployment")["spec"]["replicas"] >= 2  # several replicas: a shared store
    env = {e["name"]: e for e in c["env"]}
    assert env["EXTAUTHZ_STATE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "extauthz-state"
    netpol = one(docs, "NetworkPolicy")
    assert netpol["spec"]["ingress"][0]["ports"] == [{"port": 9191, "protocol": "TCP"}]


def test_the_authorizer_policy_is_valid_and_answers_in_time() -> None:
    data = yaml.safe_load(AUTHORIZER_POLICY.read_text())
    environ = {
        **read_env_file(DEPLOY / "authorizer" / "settings.env"),  # what the pod's env has
        "LITELLM_MASTER_KEY": "sk-test-master-key",  # from the Secret the user creates
    }
    loaded = compile_policy(data, environ)
    timeouts = [
        mesh._duration(provider()["envoyExtAuthzGrpc"]["timeout"]),
        mesh._duration(security_policy()["spec"]["extAuth"]["timeout"]),
    ]
    for timeout in timeouts:
        assert loaded.settings.check_timeout < float(timeout.rstrip("s"))
    assert loaded.policy.shadow_mode is False  # never on unless the user turns it on

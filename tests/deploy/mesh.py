"""What Istio and Envoy Gateway make of deploy/istio and deploy/envoy-gateway, without a cluster.

No package registry ships the schema of Istio's mesh config (``extensionProviders`` is inside
``MeshConfig``, a proto, not a CRD; ``@kubernetes-models/istio`` has no ``IstioOperator`` spec) or
Envoy Gateway's ``SecurityPolicy`` CRD. So the fields these files use are checked against the
structures below, transcribed from the projects' API definitions (istio/api
``mesh/v1alpha1/config.proto`` ``EnvoyExternalAuthorization*``, ``EnvoyFileAccessLogProvider``;
envoyproxy/gateway ``api/v1alpha1/ext_auth_types.go``, ``securitypolicy_types.go``,
``shared_types.go``, 2026-07/08): strict (an unknown or misspelt field is an error), typed, with
the few value rules the projects enforce. Only the parts our files use are transcribed.

``istio_ext_authz`` and ``envoy_gateway_ext_authz`` turn a provider or a SecurityPolicy into the
Envoy ``ext_authz`` filter configuration the project's control plane generates from it (istio
``pilot/pkg/security/authz/builder/extauthz.go``, envoy-gateway
``internal/xds/translator/extauth.go``), so the tests can run it in a real Envoy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

EXT_AUTHZ_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_PER_ROUTE_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
)
FILTER_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
DURATION = re.compile(r"^([0-9]+(\.[0-9]*)?(ms|s|m|h))+$")
HTTP_STATUS_CODES = {400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504}

# A field's type: a Python type, "duration", a nested structure (dict), or a list of one ([t]).
Shape = Any

_REQUEST_BODY = {"maxRequestBytes": int, "allowPartialMessage": bool, "packAsBytes": bool}
_GRPC_PROVIDER = {
    "service": str,
    "port": int,
    "timeout": "duration",
    "failOpen": bool,
    "clearRouteCache": bool,
    "statusOnError": str,
    "includeRequestBodyInCheck": _REQUEST_BODY,
}
_HTTP_PROVIDER = {
    "service": str,
    "port": int,
    "timeout": "duration",
    "pathPrefix": str,
    "failOpen": bool,
    "clearRouteCache": bool,
    "statusOnError": str,
    "includeRequestHeadersInCheck": [str],
    "includeAdditionalHeadersInCheck": {"*": str},
    "includeRequestBodyInCheck": _REQUEST_BODY,
    "headersToUpstreamOnAllow": [str],
    "headersToDownstreamOnDeny": [str],
    "headersToDownstreamOnAllow": [str],
}
_FILE_ACCESS_LOG = {
    "path": str,
    "logFormat": {"text": str, "labels": {"*": str}},
}
ISTIO_VALUES = {
    "meshConfig": {
        "extensionProviders": [
            {
                "name": str,
                "envoyExtAuthzGrpc": _GRPC_PROVIDER,
                "envoyExtAuthzHttp": _HTTP_PROVIDER,
                "envoyFileAccessLog": _FILE_ACCESS_LOG,
            }
        ]
    }
}

_BACKEND_REF = {
    "group": str,
    "kind": str,
    "name": str,
    "namespace": str,
    "port": int,
    "weight": int,
    "fallback": bool,
}
_BACKEND_CLUSTER = {"backendRef": _BACKEND_REF, "backendRefs": [_BACKEND_REF]}
_EXT_AUTH = {
    "grpc": _BACKEND_CLUSTER,
    "http": {
        **_BACKEND_CLUSTER,
        "path": str,
        "pathOverride": str,
        "headersToBackend": [str],
    },
    "headersToExtAuth": [str],
    "bodyToExtAuth": {"maxRequestBytes": int},
    "timeout": "duration",
    "failOpen": bool,
    "recomputeRoute": bool,
    "includeRouteMetadata": bool,
    "statusOnError": int,
}
SECURITY_POLICY = {
    "apiVersion": str,
    "kind": str,
    "metadata": {"name": str, "namespace": str, "labels": {"*": str}, "annotations": {"*": str}},
    "spec": {
        "targetRefs": [{"group": str, "kind": str, "name": str, "sectionName": str}],
        "extAuth": _EXT_AUTH,
    },
}


def shape_problems(value: Any, shape: Shape, where: str = "") -> list[str]:
    """Where ``value`` does not fit ``shape``: unknown fields, wrong types."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where or '.'}: expected an object, got {type(value).__name__}"]
        out = []
        for key, item in value.items():
            sub = shape.get(key, shape.get("*"))
            if sub is None:
                out.append(f"{where}.{key}: unknown field")
            else:
                out.extend(shape_problems(item, sub, f"{where}.{key}"))
        return out
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [
            p
            for i, item in enumerate(value)
            for p in shape_problems(item, shape[0], f"{where}[{i}]")
        ]
    if shape == "duration":
        ok = isinstance(value, str) and DURATION.match(value) is not None
        return [] if ok else [f"{where}: not a duration ('1s', '500ms'): {value!r}"]
    if shape is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected an integer, got {value!r}"]
    return (
        [] if isinstance(value, shape) else [f"{where}: expected {shape.__name__}, got {value!r}"]
    )


def istio_values_problems(values: Mapping[str, Any]) -> list[str]:
    """istiod values (the ``meshConfig`` block): structure plus Istio's own value rules."""
    problems = shape_problems(values, ISTIO_VALUES)
    for i, provider in enumerate(values.get("meshConfig", {}).get("extensionProviders", [])):
        kinds = [k for k in provider if k != "name"]
        if len(kinds) != 1:
            problems.append(f"extensionProviders[{i}]: exactly one provider type, got {kinds}")
        for kind in ("envoyExtAuthzGrpc", "envoyExtAuthzHttp"):
            p = provider.get(kind)
            if p is None:
                continue
            if not 1 <= p.get("port", 0) <= 65535:
                problems.append(f"extensionProviders[{i}].{kind}.port: not in 1-65535")
            status = p.get("statusOnError")
            if isinstance(status, str) and not (
                status.isdigit() and int(status) in HTTP_STATUS_CODES
            ):
                problems.append(f"extensionProviders[{i}].{kind}.statusOnError: {status!r}")
    return problems


def security_policy_problems(doc: Mapping[str, Any]) -> list[str]:
    """An Envoy Gateway SecurityPolicy: structure plus the CRD's CEL and enum rules we rely on."""
    problems = shape_problems(doc, SECURITY_POLICY)
    if doc.get("apiVersion") != "gateway.envoyproxy.io/v1alpha1":
        problems.append(f"apiVersion: {doc.get('apiVersion')!r}")
    ext = doc.get("spec", {}).get("extAuth", {})
    if ("grpc" in ext) == ("http" in ext):
        problems.append("extAuth: exactly one of grpc or http")
    for kind in ("grpc", "http"):
        cluster = ext.get(kind, {})
        if kind in ext and not (cluster.get("backendRef") or cluster.get("backendRefs")):
            problems.append(f"extAuth.{kind}: backendRef or backendRefs needs to be set")
        for ref in cluster.get("backendRefs", []):
            if ref.get("kind", "Service") not in ("Service", "ServiceImport", "Backend"):
                problems.append(f"extAuth.{kind}.backendRefs: kind {ref.get('kind')!r}")
    body = ext.get("bodyToExtAuth")
    if body is not None and body.get("maxRequestBytes", 0) < 1:
        problems.append("extAuth.bodyToExtAuth.maxRequestBytes: minimum 1")
    status = ext.get("statusOnError")
    if status is not None and status not in HTTP_STATUS_CODES:
        problems.append(f"extAuth.statusOnError: {status!r} is not an allowed status")
    return problems


def _duration(text: str) -> str:
    """A Kubernetes-style duration as a protobuf JSON duration ("1s", "0.5s")."""
    seconds = 0.0
    for amount, _, unit in re.findall(r"([0-9]+(\.[0-9]*)?)(ms|s|m|h)", text):
        seconds += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return f"{seconds:g}s"


def _grpc_ext_authz(cluster: str, fail_open: bool, timeout: str) -> dict[str, Any]:
    """What both control planes set for a gRPC authorizer (the rest differs)."""
    return {
        "@type": EXT_AUTHZ_TYPE,
        "transport_api_version": "V3",
        "failure_mode_allow": fail_open,
        "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": _duration(timeout)},
    }


def istio_ext_authz(provider: Mapping[str, Any], cluster: str) -> dict[str, Any]:
    """The ext_authz filter istiod builds for an ``envoyExtAuthzGrpc`` provider.

    Left out: ``filter_enabled_metadata``, by which istiod runs the check only for requests an
    AuthorizationPolicy with action CUSTOM selects (through a shadow RBAC filter); our policy
    selects every request, so the filter runs for all of them, as here.
    """
    grpc = provider["envoyExtAuthzGrpc"]
    config = _grpc_ext_authz(cluster, grpc.get("failOpen", False), grpc.get("timeout", "600s"))
    if "statusOnError" in grpc:
        config["status_on_error"] = {"code": int(grpc["statusOnError"])}
    body = grpc.get("includeRequestBodyInCheck")
    if body is not None:
        config["with_request_body"] = {
            "max_request_bytes": body.get("maxRequestBytes", 0),
            "allow_partial_message": body.get("allowPartialMessage", False),
            "pack_as_bytes": body.get("packAsBytes", False),
        }
    return config


def envoy_gateway_filter_name(policy: Mapping[str, Any]) -> str:
    """Envoy Gateway names one ext_authz filter per SecurityPolicy."""
    meta = policy["metadata"]
    return f"envoy.filters.http.ext_authz/securitypolicy/{meta['namespace']}/{meta['name']}"


def envoy_gateway_ext_authz(policy: Mapping[str, Any], cluster: str) -> dict[str, Any]:
    """The ext_authz filter Envoy Gateway builds for a SecurityPolicy's gRPC ``extAuth``: body
    with ``max_request_bytes`` only (no partial message, no ``pack_as_bytes``), default 10 s."""
    ext = policy["spec"]["extAuth"]
    config = _grpc_ext_authz(cluster, ext.get("failOpen", False), ext.get("timeout", "10s"))
    if "bodyToExtAuth" in ext:
        config["with_request_body"] = {"max_request_bytes": ext["bodyToExtAuth"]["maxRequestBytes"]}
    if "headersToExtAuth" in ext:
        config["allowed_headers"] = {
            "patterns": [{"exact": h, "ignore_case": True} for h in ext["headersToExtAuth"]]
        }
    if "statusOnError" in ext:
        config["status_on_error"] = {"code": ext["statusOnError"]}
    return config


def envoy_gateway_route_config(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The per-route config that turns the (otherwise disabled) filter on for the policy's
    routes, as Envoy Gateway writes it (context extensions empty)."""
    return {
        envoy_gateway_filter_name(policy): {
            "@type": FILTER_CONFIG_TYPE,
            "config": {"@type": EXT_AUTHZ_PER_ROUTE_TYPE, "check_settings": {}},
        }
    }

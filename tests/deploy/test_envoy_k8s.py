"""deploy/base/envoy.yaml: the safety settings of the repository's envoy.yaml are all there, the
limits agree with the sidecar's, the credential files agree with the policy's model_list, Envoy
accepts it (`envoy --mode validate`), and it carries real requests through the real sidecar and
minter (tests/deploy/podstack.py), as the pod would."""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from extauthz.config.loader import load_policy_file
from extauthz.dev.envoyconf import validate
from extauthz.mint.plan import load_plan
from extauthz.runtime import DRAIN_DELAY_SECONDS, GRPC_MAX_RECEIVE_BYTES
from tests.integration.harness import request as http_request

from .kube import (
    ENVOY_K8S,
    POLICY_K8S,
    REPO,
    SETTINGS_ENV,
    cluster,
    cluster_endpoints,
    container,
    hcm,
    http_filter,
    listener,
    load_envoy,
    pod_and_envoy_config,
    pod_spec,
    read_env_file,
    render,
    walk,
)
from .podstack import (
    SECRETS,
    PodStack,
    grpc_health,
    http_status,
    ops_url,
    start_pod_stack,
)

EXT_AUTHZ = "envoy.filters.http.ext_authz"
LOCAL_RL = "envoy.filters.http.local_ratelimit"
ROUTER = "envoy.filters.http.router"
ANTHROPIC_PATH = "/v1/messages"
AZURE_PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
BEDROCK_PATH = "/model/anthropic.claude-3-5-haiku-20241022-v1:0/invoke"
MiB = 1024 * 1024


def k8s() -> dict[str, Any]:
    return load_envoy(ENVOY_K8S.read_text())


def local() -> dict[str, Any]:
    return load_envoy((REPO / "envoy.yaml").read_text())


def pod_env() -> dict[str, str]:
    """The environment the policy's os.environ/ references see in the pod (values made up)."""
    return (
        read_env_file(SETTINGS_ENV)
        | SECRETS
        | {
            "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/tokens/aws/token",
            "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/tokens/azure/token",
        }
    )


def seconds(duration: str) -> float:
    assert duration.endswith("s")
    return float(duration[:-1])


# -- static: what the file says ---------------------------------------------------------------


def test_keeps_every_safety_setting_of_the_local_envoy_yaml() -> None:
    ours, theirs = hcm(k8s(), "ingress"), hcm(local(), "ingress")
    for key in (
        "generate_request_id",
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
        "common_http_protocol_options",
        "codec_type",
    ):
        assert ours[key] == theirs[key], key
    authz, base = (
        http_filter(k8s(), "ingress", EXT_AUTHZ),
        http_filter(local(), "ingress", EXT_AUTHZ),
    )
    for key in ("transport_api_version", "failure_mode_allow", "status_on_error"):
        assert authz[key] == base[key], key
    # The check call and the way around a replica that cannot answer: as in envoy.yaml, plus
    # the move from the pod's own sidecar to the fleet (another priority) on a retry.
    ours_call, theirs_call = dict(authz["grpc_service"]), base["grpc_service"]
    ours_retry = dict(ours_call.pop("retry_policy"))
    priority = ours_retry.pop("retry_priority")
    assert priority["name"] == "envoy.retry_priorities.previous_priorities"
    assert ours_call == {k: v for k, v in theirs_call.items() if k != "retry_policy"}
    assert ours_retry == theirs_call["retry_policy"]
    for key in ("health_checks", "outlier_detection", "circuit_breakers"):
        assert cluster(k8s(), "extauthz")[key] == cluster(local(), "extauthz")[key], key
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    assert authz["with_request_body"]["allow_partial_message"] is True
    assert authz["with_request_body"]["pack_as_bytes"] is True
    # ext_authz decides first; the rate limit counts only what was allowed, by verified team.
    names = [f["name"] for f in hcm(k8s(), "ingress")["http_filters"]]
    assert names == [EXT_AUTHZ, LOCAL_RL, ROUTER]
    admin = k8s()["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"
    http2 = cluster(k8s(), "extauthz")["typed_extension_protocol_options"]
    assert (
        "http2_protocol_options"
        in http2["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
    )
    # The admin API and Envoy's own stay on the pod's loopback; checks go to the pod's own
    # sidecar first (priority 0) and only then to the fleet's (the headless Service).
    for name in ("extauthz_http", "envoy_admin"):
        assert {e["address"] for e in cluster_endpoints(cluster(k8s(), name))} == {"127.0.0.1"}
    groups = cluster(k8s(), "extauthz")["load_assignment"]["endpoints"]
    assert [(g.get("priority", 0), len(g["lb_endpoints"])) for g in groups] == [(0, 1), (1, 1)]
    own = groups[0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert own["address"] == "127.0.0.1"


def test_checks_find_a_sidecar_that_can_answer() -> None:
    """What routes around a replica that is draining or dead: readiness health checks, outlier
    detection, retries of undecided checks on another host, and enough retries in flight."""
    c = cluster(k8s(), "extauthz")
    (check,) = c["health_checks"]
    assert check["grpc_health_check"] == {"service_name": "readiness"}
    # Noticed within the sidecar's drain delay (SIGTERM: NOT_SERVING that long before closing).
    assert seconds(check["interval"]) + seconds(check["interval_jitter"]) < DRAIN_DELAY_SECONDS
    assert seconds(check["timeout"]) <= seconds(check["interval"])
    # Envoy's default (60 s) applies to checks scheduled before the cluster's first traffic.
    assert seconds(check["no_traffic_interval"]) <= seconds(check["interval"])
    outlier = c["outlier_detection"]
    assert outlier["enforcing_consecutive_gateway_failure"] == 100
    assert c["circuit_breakers"]["thresholds"][0]["max_retries"] > 3  # Envoy's default: 3
    call = http_filter(k8s(), "ingress", EXT_AUTHZ)["grpc_service"]
    retry = call["retry_policy"]
    # Envoy makes max_interval each try's timeout (measured: 50 ms failed every check slower
    # than that, e.g. any body over 128 KiB, which a worker process reads).
    assert seconds(retry["retry_back_off"]["max_interval"]) >= seconds(call["timeout"])
    retry_on = set(retry["retry_on"].split(","))
    assert {"cancelled", "unavailable", "reset", "connect-failure"} <= retry_on
    assert not retry_on & {"deadline-exceeded", "5xx", "internal"}, "decisions are never retried"
    assert [p["name"] for p in retry["retry_host_predicate"]] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]


def test_routes_management_to_the_sidecar_and_keep_long_timeouts() -> None:
    routes = hcm(k8s(), "ingress")["route_config"]["virtual_hosts"][0]["routes"]
    by_prefix = {r["match"].get("prefix"): r["route"]["cluster"] for r in routes}
    for prefix in ("/team/", "/user/", "/customer/"):
        assert by_prefix[prefix] == "extauthz_http"
    assert routes[-1]["match"] == {"prefix": "/"}, "the catch-all route must come last"
    for r in routes:
        if r["route"]["cluster"] != "extauthz_http":
            assert seconds(r["route"]["timeout"]) >= 300, r
    # The ops listener exposes nothing of the admin API but the metrics page.
    ops_routes = hcm(k8s(), "ops")["route_config"]["virtual_hosts"][0]["routes"]
    assert [(r["match"], r["route"]["cluster"]) for r in ops_routes] == [
        ({"path": "/stats/prometheus"}, "envoy_admin")
    ]


def test_body_limits_agree_with_the_sidecar() -> None:
    """Large enough for real requests (images, audio), below the sidecar's gRPC message limit,
    and within the listener's buffer (else Envoy answers 413 itself before any check)."""
    body = http_filter(k8s(), "ingress", EXT_AUTHZ)["with_request_body"]
    local_limit = http_filter(local(), "ingress", EXT_AUTHZ)["with_request_body"]
    limit = body["max_request_bytes"]
    assert limit >= 32 * MiB > local_limit["max_request_bytes"]
    assert limit + MiB <= GRPC_MAX_RECEIVE_BYTES  # room for the rest of the CheckRequest
    assert listener(k8s(), "ingress")["per_connection_buffer_limit_bytes"] > limit


def test_sidecar_deadline_is_below_envoys_timeout() -> None:
    settings = load_policy_file(str(POLICY_K8S), pod_env()).settings
    envoy_timeout = seconds(http_filter(k8s(), "ingress", EXT_AUTHZ)["grpc_service"]["timeout"])
    assert 0 < settings.check_timeout < envoy_timeout
    assert envoy_timeout - settings.check_timeout >= 0.1


def test_credential_files_agree_with_the_policys_model_list() -> None:
    """Every file Envoy reads is one the minter writes from policy.yaml, and the reverse."""
    plan = load_plan(POLICY_K8S, pod_env())
    minted = {spec.filename: spec for spec in plan.credentials}
    read: dict[str, str] = {}
    for c in k8s()["static_resources"]["clusters"]:
        for key, value in walk(c):
            if key in ("path", "filename") and isinstance(value, str) and "/creds/" in value:
                read[Path(value).name] = c["name"]
    assert set(read) == set(minted)
    kinds = {read[name]: minted[name].kind for name in read}
    assert kinds == {
        "anthropic": "static",
        "azure_openai": "azure_entra",
        "bedrock": "aws_web_identity",
    }
    # The SDS secret's name inside each file is the file's NAME.
    for key, value in walk(k8s()):
        if key == "credential" and isinstance(value, dict) and "sds_config" in value:
            path = Path(value["sds_config"]["path_config_source"]["path"])
            assert path.name == value["name"] + ".sds.yaml"


def test_team_rate_limit_is_keyed_on_the_verified_team() -> None:
    rl = http_filter(k8s(), "ingress", LOCAL_RL)
    (action,) = rl["rate_limits"][0]["actions"]
    meta = action["metadata"]
    assert meta["source"] == "DYNAMIC"
    assert meta["metadata_key"] == {"key": EXT_AUTHZ, "path": [{"key": "team_id"}]}
    assert rl["descriptors"][0]["entries"] == [{"key": meta["descriptor_key"]}]
    for key in ("filter_enabled", "filter_enforced"):
        assert rl[key]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}


def test_envoy_memory_fits_the_container(need_kubectl: None) -> None:
    """The overload manager sheds load before the container's memory limit kills Envoy."""
    heap = k8s()["overload_manager"]["resource_monitors"][0]["typed_config"]["max_heap_size_bytes"]
    limit = container(pod_spec(render("base")), "envoy")["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    assert heap < int(limit[:-2]) * 1024 * MiB


# -- live: the pod on loopback ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pod_and_config() -> tuple[dict[str, Any], str]:
    return pod_and_envoy_config()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pod_and_config: tuple[dict[str, Any], str]
) -> Iterator[PodStack]:
    pod, text = pod_and_config
    running = start_pod_stack(tmp_path_factory.mktemp("pod"), pod, text)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.envoy
def test_configmap_config_validates(
    stack: PodStack, pod_and_config: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    """`envoy --mode validate` on the ConfigMap's envoy.yaml as it is, with only the credentials
    directory pointing at the files the minter just wrote."""
    path = tmp_path / "envoy.yaml"
    path.write_text(pod_and_config[1].replace("/var/run/extauthz/creds", str(stack.creds_dir)))
    done = validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(os.listdir(stack.creds_dir)) == [
        "claude-3-5-haiku.aws_credentials",
        "claude-sonnet-4-5.sds.yaml",
        "gpt-4o.sds.yaml",
    ]


def _chat(model: str, **extra: Any) -> bytes:
    return json.dumps(
        {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], **extra}
    ).encode()


@pytest.mark.envoy
def test_anthropic_with_the_minted_static_key(stack: PodStack) -> None:
    token = stack.token(sub="svc-a", client_id="team-a")
    reply = stack.call(
        ANTHROPIC_PATH,
        token=token,
        body=_chat("claude-sonnet-4-5"),
        headers={"x-request-id": "k8s-anthropic"},
    )
    assert reply.status == 200, reply
    seen = reply.json()
    assert seen["tls"] and seen["path"] == ANTHROPIC_PATH
    headers = seen["headers"]
    assert headers["host"] == "api.anthropic.com"
    assert headers["x-api-key"] == SECRETS["ANTHROPIC_API_KEY"]
    assert "authorization" not in headers  # the caller's token never reaches the provider
    assert headers["x-auth-team-id"] == "team-a"
    assert headers["x-auth-user-role"] == "team"


@pytest.mark.envoy
def test_azure_with_the_entra_token_minted_from_the_pod_identity(stack: PodStack) -> None:
    token = stack.token(sub="svc-a", client_id="team-a")
    reply = stack.call(
        AZURE_PATH, token=token, body=_chat("gpt-4o"), headers={"x-request-id": "k8s-azure"}
    )
    assert reply.status == 200, reply
    headers = reply.json()["headers"]
    assert headers["host"] == "example-resource.openai.azure.com"
    bearer = headers["authorization"].removeprefix("Bearer ")
    assert bearer in stack.entra.issued
    # The internal user's allow-list has no gpt-4o: the sidecar refuses before any provider call.
    user = stack.token(sub="alice", roles=["basic_user"], email="alice@example.com")
    seen = len(stack.providers.seen)
    denied = stack.call(AZURE_PATH, token=user, body=_chat("gpt-4o"))
    assert denied.status == 403, denied
    assert denied.headers["x-extauthz-reason"] == "model_not_allowed"
    assert denied.json()["error"]["type"] == "auth_error"
    assert len(stack.providers.seen) == seen


@pytest.mark.envoy
def test_bedrock_signed_with_the_sts_credentials(stack: PodStack) -> None:
    admin = stack.token(sub="ops", scope="litellm_proxy_admin")
    body = json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()
    reply = stack.call(BEDROCK_PATH, token=admin, body=body)
    assert reply.status == 200, reply
    sig = reply.json()["sigv4"]
    assert sig["valid"], sig
    assert sig["access_key_id"] in stack.sts.issued
    assert (sig["service"], sig["region"]) == ("bedrock", "us-west-2")
    assert sig["session_token_matches"] and sig["payload_hash_matches"]
    # Teams may not call Bedrock here (its path names the model, which no allow-list can check).
    team = stack.token(sub="svc-a", client_id="team-a")
    denied = stack.call(BEDROCK_PATH, token=team, body=body)
    assert (denied.status, denied.headers["x-extauthz-reason"]) == (403, "route_not_allowed")


@pytest.mark.envoy
def test_unauthenticated_is_refused(stack: PodStack) -> None:
    reply = stack.call(ANTHROPIC_PATH, body=_chat("claude-sonnet-4-5"))
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.envoy
def test_large_body_reaches_the_sidecar_whole(stack: PodStack) -> None:
    """12 MiB (an image in base64) with the model written last, as SDSs often do: with the
    local config's 8 MiB the body would be cut and refused (413 body_cut); here it is decided."""
    token = stack.token(sub="svc-a", client_id="team-big")
    image = "iVBORw0KGgo" * (12 * MiB // 11)
    body = json.dumps(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": image},
                        }
                    ],
                }
            ],
            "max_tokens": 8,
            "model": "claude-sonnet-4-5",
        }
    ).encode()
    assert len(body) > 12 * MiB
    reply = stack.call(ANTHROPIC_PATH, token=token, body=body)
    assert reply.status == 200, reply
    assert reply.json()["body_bytes"] == len(body)


@pytest.mark.envoy
def test_access_log_carries_the_decision(stack: PodStack) -> None:
    token = stack.token(sub="svc-log", client_id="team-log", org_id="org-1")
    path = AZURE_PATH
    reply = stack.call(path, token=token, body=_chat("gpt-4o"), headers={"x-request-id": "k8s-log"})
    assert reply.status == 200
    record = _log_record(stack, "k8s-log")
    assert record["team_id"] == "team-log" and record["org_id"] == "org-1"
    assert (record["role"], record["model"], record["decision"]) == ("team", "gpt-4o", "allow")
    assert record["upstream_cluster"] == "azure_openai"
    assert record["path"] == path.partition("?")[0], "the query string stays out of the log"
    assert record["status"] == 200


@pytest.mark.envoy
def test_management_routes_reach_the_sidecars_admin_api(stack: PodStack) -> None:
    reply = stack.call(
        "/team/list",
        method="GET",
        token=SECRETS["LITELLM_MASTER_KEY"],
        headers={"x-request-id": "k8s-admin"},
    )
    # The answer comes from the sidecar's HTTP side (200, or 401 while ext_authz strips the
    # credential before routing: docs/state.md "Through Envoy").
    assert reply.status in (200, 401), reply
    assert _log_record(stack, "k8s-admin")["upstream_cluster"] == "extauthz_http"


@pytest.mark.envoy
def test_team_rate_limit(stack: PodStack) -> None:
    """Each team has its own bucket (here 120 requests per minute per Envoy): once team-rl's
    is empty it gets 429 with an OpenAI-style error, while another team still passes."""
    rl = http_filter(k8s(), "ingress", LOCAL_RL)
    bucket = rl["descriptors"][0]["token_bucket"]["max_tokens"]
    busy = stack.token(sub="svc-rl", client_id="team-rl")
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    statuses = []
    try:
        for _ in range(bucket + 20):
            r = http_request(
                stack.port, "GET", "/v1/models", {"Authorization": f"Bearer {busy}"}, conn=conn
            )
            statuses.append(r.status)
            if r.status != 200:
                break
    finally:
        conn.close()
    assert statuses[-1] == 429, statuses[-3:]
    assert statuses.count(200) >= bucket - 5
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert r.headers["x-ratelimit-remaining"] == "0"
    other = stack.token(sub="svc-other", client_id="team-other")
    assert stack.call("/v1/models", method="GET", token=other).status == 200


@pytest.mark.envoy
def test_probe_endpoints_answer(stack: PodStack) -> None:
    """What the manifest's probes ask for, on the ports the manifest names."""
    serving = health_pb2.HealthCheckResponse.SERVING
    assert grpc_health(stack.ports["grpc"], "") == serving
    assert grpc_health(stack.ports["grpc"], "readiness") == serving
    for path in ("/healthz", "/readyz"):
        assert http_status(f"http://127.0.0.1:{stack.ports['mint']}{path}") == 200
    assert http_status(ops_url(stack, "/ready")) == 200
    with urllib.request.urlopen(ops_url(stack, "/stats/prometheus"), timeout=5) as resp:
        assert b"envoy_cluster_upstream_rq" in resp.read()
    for path in ("/clusters", "/config_dump", "/quitquitquit", "/stats"):
        assert http_status(ops_url(stack, path)) == 404, path


@pytest.mark.envoy
def test_sidecar_down_fails_closed_with_503(stack: PodStack) -> None:
    """Last: stop `extauthz serve`; Envoy answers 503 and lets nothing through."""
    stack.programs["extauthz"].stop()
    seen = len(stack.providers.seen)
    token = stack.token(sub="svc-a", client_id="team-a")
    reply = stack.call(ANTHROPIC_PATH, token=token, body=_chat("claude-sonnet-4-5"))
    assert reply.status == 503
    assert len(stack.providers.seen) == seen


def _log_record(stack: PodStack, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for record in stack.access_log():
            if record.get("request_id") == request_id:
                return record
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {request_id}")

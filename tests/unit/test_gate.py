"""Issue 16's caller-gating keys: allowed_ips (with use_x_forwarded_for), allowed_routes,
public_routes, admin_only_routes and litellm_key_header_name — the config's errors, the pure
gate, the pipeline, the adapters and what is removed before the upstream. Hostile inputs
included: odd addresses, spoofed x-forwarded-for, header-name case, public wildcards."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from envoy.config.core.v3 import address_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2

from extauthz.authorizer import Authorizer, explain_request
from extauthz.cli import main
from extauthz.config.loader import compile_policy
from extauthz.envoy import grpc_service, http_service
from extauthz.envoy.responder import shadow
from extauthz.errors import ConfigError
from extauthz.identity.credentials import extract_credential
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import (
    CLIENT_ADDRESS_HEADER,
    JWT,
    PUBLIC,
    Allow,
    Deny,
    Identity,
    Reason,
    RequestView,
    Role,
)
from extauthz.policy.compiled import Policy
from extauthz.policy.gate import Gate, PublicRoutes, check_gate, client_address, parse_address
from extauthz.policy.verdict import render
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk

MASTER = "sk-master-key-1234"
USER = {"sub": "alice"}
TEAM = {"sub": "svc", "client_id": "team-a"}
ADMIN = {"sub": "root", "scope": "litellm_proxy_admin"}


def policy_of(general: dict[str, Any], ours: dict[str, Any] | None = None) -> Policy:
    data = {
        "general_settings": {
            "enable_jwt_auth": True,
            "master_key": MASTER,
            "litellm_jwtauth": {
                "user_id_jwt_field": "sub",
                "team_id_jwt_field": "client_id",
                "admin_allowed_routes": ["openai_routes", "management_routes"],
            },
            **general,
        },
        "extauthz": {"missing_team_claim": "as_user", **(ours or {})},
    }
    return compile_policy(data, {"JWT_PUBLIC_KEY_URL": "u"}).policy


def problems_of(general: dict[str, Any], ours: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        policy_of(general, ours)
    return err.value.problems


def warnings_of(general: dict[str, Any]) -> list[str]:
    general = dict(general)
    ours = general.pop("extauthz", {})
    data = {"general_settings": {"master_key": MASTER, **general}, "extauthz": ours}
    return list(compile_policy(data, {}).warnings)


async def authorizer(policy: Policy) -> Authorizer:
    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    return Authorizer(policy, TokenVerifier(source, TokenRules(), clock=lambda: NOW))


def req(
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
    client: str = "127.0.0.1",
    token: dict[str, Any] | None = None,
) -> RequestView:
    all_headers = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {rs_token(token)}"
    body = json.dumps({"model": "m"}).encode()
    return RequestView("POST", path, all_headers, body, client_address=client)


# -- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),  # one address, however written
        ("::ffff:127.0.0.1", "127.0.0.1"),  # what a dual-stack listener reports for IPv4
        ("::FFFF:7f00:1", "127.0.0.1"),
        ("fe80::1%eth0", "fe80::1%eth0"),  # the zone id is kept: part of the address
    ],
)
def test_addresses_that_parse(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "[::1]",  # brackets belong to URLs, not addresses
        "127.0.0.1:8080",
        "[::1]:443",
        "10.0.0.0/8",
        "0127.0.0.1",  # leading zeros: octal to some parsers, refused
        "localhost",
        "unix:/var/run/envoy.sock",
        "@abstract",
        "1.2.3.4, 5.6.7.8",
        "1" * 200,
        "127.0.0.1\x00",
    ],
)
def test_addresses_that_do_not_parse(text: str) -> None:
    assert parse_address(text) is None


def test_zone_id_is_not_the_bare_address() -> None:
    assert parse_address("fe80::1%eth0") != parse_address("fe80::1")


XFF = Gate(
    allowed_ips=frozenset({ipaddress.ip_address("203.0.113.7")}),
    use_x_forwarded_for=True,
)


@pytest.mark.parametrize(
    ("xff", "hops", "expected"),
    [
        ("203.0.113.7", 0, "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7", 0, "203.0.113.7"),  # the rightmost: what the proxy saw
        ("203.0.113.7, 198.51.100.1", 1, "203.0.113.7"),  # one trusted proxy appended its peer
        ("6.6.6.6,203.0.113.7,198.51.100.1", 1, "203.0.113.7"),  # the client's own entry unused
    ],
)
def test_xff_entry_by_trusted_hops(xff: str, hops: int, expected: str) -> None:
    gate = Gate(use_x_forwarded_for=True, xff_num_trusted_hops=hops)
    view = RequestView("GET", "/", {"x-forwarded-for": xff}, client_address="127.0.0.1")
    assert str(client_address(view, gate)) == expected


@pytest.mark.parametrize(
    ("headers", "hops", "message"),
    [
        ({}, 0, "no x-forwarded-for"),
        ({"x-forwarded-for": ""}, 0, "no x-forwarded-for"),
        ({"x-forwarded-for": "203.0.113.7"}, 1, "fewer than 2 entries"),
        ({"x-forwarded-for": "203.0.113.7, junk"}, 0, "'junk' is not an IP address"),
        ({"x-forwarded-for": "203.0.113.7, "}, 0, "'' is not an IP address"),
    ],
)
def test_xff_refusals(headers: dict[str, str], hops: int, message: str) -> None:
    gate = Gate(allowed_ips=XFF.allowed_ips, use_x_forwarded_for=True, xff_num_trusted_hops=hops)
    decision = check_gate(RequestView("GET", "/", headers, client_address="203.0.113.7"), "/", gate)
    assert isinstance(decision, Deny) and decision.reason is Reason.CLIENT_IP_NOT_ALLOWED
    assert message in decision.message


def test_spoofed_xff_is_ignored_without_use_x_forwarded_for() -> None:
    gate = Gate(allowed_ips=XFF.allowed_ips)
    view = RequestView("GET", "/", {"x-forwarded-for": "203.0.113.7"}, client_address="10.0.0.9")
    decision = check_gate(view, "/", gate)
    assert isinstance(decision, Deny) and "client 10.0.0.9 is not in" in decision.message


@pytest.mark.parametrize("client", ["", "not-an-ip", "[::1]", "127.0.0.1:5"])
def test_missing_or_odd_peer_address_is_refused(client: str) -> None:
    gate = Gate(allowed_ips=frozenset({ipaddress.ip_address("127.0.0.1")}))
    decision = check_gate(RequestView("GET", "/", {}, client_address=client), "/", gate)
    assert isinstance(decision, Deny) and decision.status == 403
    assert decision.reason is Reason.CLIENT_IP_NOT_ALLOWED


def test_public_route_matching_is_litellms() -> None:
    routes = PublicRoutes.of(["/health/readiness", "/api*", "/ui/*"])
    assert routes.matches("/health/readiness")
    assert not routes.matches("/health/readiness/x")
    assert routes.matches("/apix")  # a plain string prefix, as LiteLLM's startswith
    assert routes.matches("/ui/")
    assert not routes.matches("/ui")


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("general", "fragment"),
    [
        ({"allowed_ips": ["10.0.0.0/8"]}, "allowed_ips[0]: '10.0.0.0/8' is a network"),
        ({"allowed_ips": ["127.0.0.1:80"]}, "allowed_ips[0]: '127.0.0.1:80' is not an IP"),
        ({"allowed_ips": "127.0.0.1"}, "allowed_ips: Input should be a valid list"),
        ({"public_routes": ["/v1/*"]}, "public_routes[0]: '/v1/*' covers the LLM API route"),
        ({"public_routes": ["*"]}, "public_routes[0]: '*' covers the LLM API route"),
        ({"public_routes": ["/chat/completions"]}, "covers the LLM API route /chat/completions"),
        ({"public_routes": ["/bedrock/*"]}, "covers the LLM API route"),
        ({"public_routes": ["/bedrock/model/x*"]}, "covers the LLM API route"),
        ({"public_routes": ["/openai*"]}, "covers the LLM API route"),
        ({"public_routes": ["/v1/threads/abc*"]}, "covers the LLM API route"),
        ({"litellm_key_header_name": "x_my_key"}, "has '_'"),
        ({"litellm_key_header_name": "x my key"}, "is not an HTTP header name"),
        ({"litellm_key_header_name": ":authority"}, "is not an HTTP header name"),
        ({"litellm_key_header_name": "Content-Type"}, "carries something else"),
        ({"litellm_key_header_name": "x-auth-user-id"}, "carries something else"),
    ],
)
def test_config_errors_name_the_key(general: dict[str, Any], fragment: str) -> None:
    problems = problems_of(general)
    assert any(fragment in p and "general_settings." in p for p in problems), problems


def test_xff_hops_bounds() -> None:
    problems = problems_of({}, {"xff_num_trusted_hops": -1})
    assert any("xff_num_trusted_hops" in p for p in problems)


@pytest.mark.parametrize(
    ("general", "fragment"),
    [
        ({"allowed_routes": ["openai_routes"]}, "'openai_routes' is compared with the request"),
        ({"allowed_routes": ["/v1/*"]}, "matches only the path '/v1/*'"),
        ({"allowed_routes": []}, "an empty list admits no request"),
        ({"allowed_ips": []}, "an empty list admits no client"),
        ({"admin_only_routes": ["management_routes"]}, "admin_only_routes: 'management_routes'"),
        ({"public_routes": ["/key/*"]}, "covers the management route"),
        ({"public_routes": ["/a*b"]}, "only a final '*' is a wildcard"),
        ({"use_x_forwarded_for": True}, "use_x_forwarded_for: no effect here without"),
        ({"extauthz": {"xff_num_trusted_hops": 1}}, "xff_num_trusted_hops: no effect without"),
    ],
)
def test_config_warnings(general: dict[str, Any], fragment: str) -> None:
    warnings = warnings_of(general)
    assert any(fragment in w for w in warnings), warnings


def test_keys_are_no_longer_refused_and_compile() -> None:
    gate = policy_of(
        {
            "allowed_ips": ["127.0.0.1", "::ffff:10.0.0.2"],
            "allowed_routes": ["/v1/chat/completions"],
            "public_routes": ["/health/*"],
            "admin_only_routes": ["/v1/models"],
            "litellm_key_header_name": "X-My-Key",
            "use_x_forwarded_for": True,
        },
        {"xff_num_trusted_hops": 2},
    ).gate
    assert gate.allowed_ips == frozenset(map(ipaddress.ip_address, ["127.0.0.1", "10.0.0.2"]))
    assert gate.key_header == "x-my-key"
    assert gate.use_x_forwarded_for and gate.xff_num_trusted_hops == 2
    assert gate.public_routes == PublicRoutes(frozenset(), ("/health/",))


def test_check_config_says_what_each_key_does(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "general_settings:\n  master_key: sk-1234567890\n  allowed_ips: ['10.0.0.1']\n"
        "  public_routes: ['/health/readiness']\n  admin_only_routes: ['/v1/models']\n"
        "  allowed_routes: ['/v1/models', '/health/readiness']\n"
        "  litellm_key_header_name: X-My-Key\n"
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "allowed_ips: 10.0.0.1 (client address: the peer address Envoy reports)" in out
    assert "public_routes (no credential, no identity headers): /health/readiness" in out
    assert "admin_only_routes (exact, refused to non-admins): /v1/models" in out
    assert "allowed_routes (exact, every caller): /health/readiness, /v1/models" in out
    assert "credential header: x-my-key" in out


# -- the pipeline -------------------------------------------------------------------------------


async def test_gate_order_ips_then_routes_then_public() -> None:
    auth = await authorizer(
        policy_of(
            {
                "allowed_ips": ["127.0.0.1"],
                "allowed_routes": ["/health/readiness", "/v1/chat/completions"],
                "public_routes": ["/health/*"],
            }
        )
    )
    outside = await auth.authorize(req("/health/readiness", client="10.0.0.1"))
    assert isinstance(outside, Deny) and outside.reason is Reason.CLIENT_IP_NOT_ALLOWED
    assert "client 10.0.0.1 is not in general_settings.allowed_ips" in outside.message
    unlisted = await auth.authorize(req("/health/liveliness", token=ADMIN))
    assert isinstance(unlisted, Deny) and unlisted.reason is Reason.ROUTE_NOT_LISTED
    public = await auth.authorize(req("/health/readiness"))
    assert isinstance(public, Allow) and public.reason is Reason.PUBLIC_ROUTE
    assert public.identity.kind == PUBLIC and public.role is None
    # The master key is gated too (LiteLLM runs these checks before any credential).
    master = await auth.authorize(
        req("/v1/chat/completions", {"authorization": f"Bearer {MASTER}"}, client="::1")
    )
    assert isinstance(master, Deny) and master.reason is Reason.CLIENT_IP_NOT_ALLOWED


async def test_public_route_ignores_the_token_and_sends_no_identity() -> None:
    policy = policy_of({"public_routes": ["/health/readiness"]})
    auth = await authorizer(policy)
    headers = {"authorization": "Bearer a.b.c", "x-auth-user-id": "mallory"}
    decision = await auth.authorize(req("/health/readiness", headers))
    assert isinstance(decision, Allow) and decision.reason is Reason.PUBLIC_ROUTE
    verdict = render(decision, policy)
    assert verdict.headers == ()
    assert {"x-auth-user-id", "x-auth-user-role", "authorization"} <= set(verdict.remove)
    assert verdict.reason is Reason.PUBLIC_ROUTE
    # Elsewhere the same bad token is refused.
    other = await auth.authorize(req("/v1/models", headers))
    assert isinstance(other, Deny) and other.status == 401


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [(TEAM, False), (USER, False), (ADMIN, True), ("master", True)],
)
async def test_admin_only_routes_refuse_non_admins(caller: Any, allowed: bool) -> None:
    auth = await authorizer(policy_of({"admin_only_routes": ["/v1/embeddings"]}))
    if caller == "master":
        view = req("/v1/embeddings", {"authorization": f"Bearer {MASTER}"})
    else:
        view = req("/v1/embeddings", token=caller)
    decision = await auth.authorize(view)
    assert isinstance(decision, Allow) is allowed, decision
    if isinstance(decision, Deny):
        assert decision.reason is Reason.ADMIN_ONLY_ROUTE and decision.status == 403
        assert "general_settings.admin_only_routes" in decision.message
    # Exact paths: the unlisted neighbour is not admin-only.
    near = await auth.authorize(
        req("/embeddings", token=caller) if caller != "master" else view._replace(path="/x")
    )
    if caller in (TEAM, USER):
        assert isinstance(near, Allow) and near.role in (Role.TEAM, Role.INTERNAL_USER)


# -- the credential header ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-my-key": "Bearer k1"}, "k1"),
        ({"x-my-key": "bearer   k1 "}, "k1"),
        ({"x-my-key": "k1", "authorization": "Bearer k2"}, None),  # no fallback, as LiteLLM
        ({"x-my-key": "", "authorization": "Bearer k2"}, None),
        ({"x-my-key": "Basic k1"}, None),
        ({"x-my-key": "Bearer "}, None),
        ({"authorization": "Bearer k2"}, "k2"),  # without the custom header: the usual ones
        ({"x-api-key": "k3"}, "k3"),
    ],
)
def test_custom_key_header(headers: dict[str, str], expected: str | None) -> None:
    credential = extract_credential(headers, "x-my-key")
    assert (credential.value if credential else None) == expected


async def test_custom_header_carries_a_jwt_and_is_stripped_any_case() -> None:
    policy = policy_of({"litellm_key_header_name": "X-My-KEY"})
    auth = await authorizer(policy)
    view = req(headers={"x-my-key": f"Bearer {rs_token(USER)}"})
    decision = await auth.authorize(view)
    assert isinstance(decision, Allow) and decision.identity.user_id == "alice"
    assert "x-my-key" in render(decision, policy).remove
    missing = await auth.authorize(req())
    assert isinstance(missing, Deny) and "send 'x-my-key: Bearer <token>'" in missing.message
    # Shadow mode removes it too for an unverified caller.
    assert "x-my-key" in shadow(missing, policy).remove


# -- adapters -----------------------------------------------------------------------------------


def _check(address: address_pb2.Address) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/")
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            source=attribute_context_pb2.AttributeContext.Peer(address=address),
            request=attribute_context_pb2.AttributeContext.Request(http=http),
        )
    )


def test_grpc_adapter_reads_the_source_address() -> None:
    socket = address_pb2.Address(socket_address=address_pb2.SocketAddress(address="::1"))
    assert grpc_service.to_request_view(_check(socket)).client_address == "::1"
    pipe = address_pb2.Address(pipe=address_pb2.Pipe(path="/run/envoy.sock"))
    assert grpc_service.to_request_view(_check(pipe)).client_address == ""
    # A client's header is not the address in gRPC mode.
    request = _check(pipe)
    request.attributes.request.http.headers["x-extauthz-client-address"] = "127.0.0.1"
    assert grpc_service.to_request_view(request).client_address == ""


def test_http_adapter_reads_envoys_header() -> None:
    headers = {CLIENT_ADDRESS_HEADER: "127.0.0.1"}
    view = http_service.to_request_view("GET", "/extauthz/x", headers, b"", "/extauthz")
    assert view is not None and view.client_address == "127.0.0.1"


async def test_public_allow_is_counted_under_its_reason() -> None:
    from extauthz.metrics import CHECKS

    auth = await authorizer(policy_of({"public_routes": ["/health/readiness"]}))
    server = http_service.AuthzHttpServer(auth)
    labels = ("allow", "public_route", "200")
    before = CHECKS.decisions.get(labels, 0)
    response = await server.respond(req("/health/readiness"))
    assert response.head.startswith(b"HTTP/1.1 200")
    assert CHECKS.decisions.get(labels, 0) == before + 1


async def test_explain_takes_the_client_address_from_its_header() -> None:
    """The admin API's Explain (and the CLI) name the client in x-extauthz-client-address."""
    auth = await authorizer(policy_of({"allowed_ips": ["10.0.0.1"]}))
    token = rs_token(USER)
    inside = explain_request(
        token, "GET", "/v1/models", headers={CLIENT_ADDRESS_HEADER: "10.0.0.1"}
    )
    assert isinstance(await auth.authorize(inside), Allow)
    outside = explain_request(
        token, "GET", "/v1/models", headers={CLIENT_ADDRESS_HEADER: "10.0.0.2"}
    )
    decision = await auth.authorize(outside)
    assert isinstance(decision, Deny) and "client 10.0.0.2 is not in" in decision.message
    nowhere = await auth.authorize(explain_request(token, "GET", "/v1/models"))
    assert isinstance(nowhere, Deny) and "Envoy reported no client IP" in nowhere.message


def test_readme_example_compiles() -> None:
    """The README's example for these keys is a working policy, and does what it says."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("### Who may connect") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    loaded = compile_policy(yaml.safe_load(block.group(1)), {"JWT_PUBLIC_KEY_URL": "u"})
    gate = loaded.policy.gate
    assert gate.key_header == "x-gateway-key"
    assert gate.public_routes is not None and gate.public_routes.matches("/health/readiness")
    assert gate.allowed_routes is not None and "/v1/models" in gate.allowed_routes
    assert gate.admin_only_routes == {"/v1/models"}
    assert ipaddress.ip_address("10.0.0.17") in (gate.allowed_ips or ())


def test_an_allow_strips_the_custom_key_header_with_litellms_credential_headers() -> None:
    """The headers a credential may come in are derived once per policy (Gate), not per allow."""
    allow = Allow(Identity(kind=JWT, user_id="u"), Role.INTERNAL_USER)
    custom = render(allow, Policy(gate=Gate(key_header="x-my-key"))).remove
    assert {"authorization", "x-litellm-api-key", "api-key", "x-my-key"} <= set(custom)
    plain = render(allow, Policy(gate=Gate())).remove
    assert "x-my-key" not in plain and "authorization" in plain
    again = Gate(key_header="authorization").credential_headers
    assert again.count("authorization") == 1

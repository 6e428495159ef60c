"""The email-domain gate: a real address (parsed by email-validator, no DNS), not said to be
unverified, whose domain is one of ``user_allowed_email_domain``."""

from __future__ import annotations

import socket
import sys
import types
from typing import Any

import email_validator
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.authorizer import Authorizer
from extauthz.config.loader import compile_policy
from extauthz.config.yamlfile import parse_yaml
from extauthz.errors import ConfigError
from extauthz.identity import emails
from extauthz.identity.fields import identity_from_claims
from extauthz.identity.jwks import JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import Allow, Deny, Identity, Reason, RequestView
from extauthz.policy.decide import decide
from extauthz.state.protocol import StateSnapshot
from tests.unit.keys import NOW, jwks, rs_token, rsa_jwk

POLICY_YAML = """
general_settings:
  enable_jwt_auth: True
  litellm_jwtauth:
    user_id_jwt_field: sub
    user_email_jwt_field: email
    user_allowed_email_domain: %s
"""
ENV = {"JWT_PUBLIC_KEY_URL": "u"}
CHAT = "/v1/chat/completions"


def policy(domains: str = '["good.example", "@Corp.io", "bücher.example"]') -> Any:
    return compile_policy(parse_yaml(POLICY_YAML % domains), ENV).policy


POLICY = policy()
OK = None  # admitted

# (id, claims besides sub, None if admitted or a fragment of the deny message)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("plain", {"email": "a@good.example"}, OK),
    ("domain-any-case", {"email": "a@GOOD.Example"}, OK),
    ("second-domain", {"email": "a.b+tag@corp.io"}, OK),
    ("idn-unicode", {"email": "a@Bücher.example"}, OK),
    ("idn-ascii", {"email": "a@xn--bcher-kva.example"}, OK),
    ("verified-true", {"email": "a@good.example", "email_verified": True}, OK),
    ("verified-string-true", {"email": "a@good.example", "email_verified": "true"}, OK),
    ("verified-string-True", {"email": "a@good.example", "email_verified": "True"}, OK),
    # not an address at all, whatever follows the last @
    ("query-and-second-at", {"email": "a@evil.com?@good.example"}, "not a valid email address"),
    ("two-ats", {"email": "a@evil.com@good.example"}, "not a valid email address"),
    ("quoted-local", {"email": '"a@evil.com"@good.example'}, "not a valid email address"),
    ("display-name", {"email": "Eve <a@good.example>"}, "not a valid email address"),
    ("trailing-dot", {"email": "a@good.example."}, "not a valid email address"),
    ("ip-literal", {"email": "a@[192.0.2.1]"}, "not a valid email address"),
    ("no-at", {"email": "good.example"}, "not a valid email address"),
    ("empty-local", {"email": "@good.example"}, "not a valid email address"),
    ("inner-space", {"email": "a b@good.example"}, "not a valid email address"),
    ("integer", {"email": 4242}, "not a valid email address"),
    # said to be unverified (some IdPs send strings)
    ("unverified", {"email": "a@good.example", "email_verified": False}, "not verified"),
    ("unverified-string", {"email": "a@good.example", "email_verified": "false"}, "not verified"),
    ("unverified-String", {"email": "a@good.example", "email_verified": "False"}, "not verified"),
    ("verified-null", {"email": "a@good.example", "email_verified": None}, "email_verified"),
    ("verified-zero", {"email": "a@good.example", "email_verified": 0}, "email_verified"),
    ("verified-yes", {"email": "a@good.example", "email_verified": "yes"}, "email_verified"),
    # a real, verified address on another domain
    ("other-domain", {"email": "a@evil.com"}, "evil.com"),
    ("subdomain", {"email": "a@mail.good.example"}, "mail.good.example"),
    ("suffix", {"email": "a@evilgood.example"}, "evilgood.example"),
    ("no-email", {}, "no email"),
]


def decision(claims: dict[str, Any], pol: Any = POLICY, path: str = CHAT) -> Allow | Deny:
    identity = identity_from_claims({"sub": "u", **claims}, pol)
    assert isinstance(identity, Identity), identity
    request = RequestView("POST", path, {"content-type": "application/json"}, b'{"model": "m"}')
    return decide(request, path, "", identity, pol, StateSnapshot())


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup, or email-validator's deliverability check, fails the test."""

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the email gate looked something up")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    lookups = types.ModuleType("email_validator.deliverability")
    lookups.validate_email_deliverability = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "email_validator.deliverability", lookups)


@pytest.mark.usefixtures("no_dns")
@pytest.mark.parametrize("claims,refusal", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_email_gate(claims: dict[str, Any], refusal: str | None) -> None:
    """Each row: admitted, or 403 email_domain_not_allowed with a message saying why."""
    result = decision(claims)
    if refusal is OK:
        assert isinstance(result, Allow), result
    else:
        assert isinstance(result, Deny), result
        assert (result.status, result.reason) == (403, Reason.EMAIL_DOMAIN_NOT_ALLOWED)
        assert refusal in result.message, result.message


def test_admins_pass_the_gate_as_before() -> None:
    """proxy_admin is not subject to the email gate (LiteLLM's order)."""
    claims = {"email": "a@evil.com?@good.example", "scope": "litellm_proxy_admin"}
    assert isinstance(decision(claims, path="/team/list"), Allow)  # an admin route


def test_no_gate_no_judgement() -> None:
    """Without user_allowed_email_domain an odd email is just an attribute, as before."""
    pol = compile_policy(
        parse_yaml(POLICY_YAML.replace("    user_allowed_email_domain: %s\n", "")), ENV
    ).policy
    assert isinstance(decision({"email": "not an address", "email_verified": False}, pol), Allow)


@pytest.mark.parametrize("domain", ['"*.corp.io"', '"corp io"', '"a@corp.io@x"'])
def test_configured_domains_must_be_domains(domain: str) -> None:
    """A configured domain no address can have is a config error, not a gate that never opens."""
    with pytest.raises(ConfigError, match="user_allowed_email_domain"):
        policy(domain)


async def test_through_the_authorizer_once_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidecar refuses an unverified address; the address is parsed once per token, not
    per request (identity is derived once and cached with the verified token)."""
    calls = 0
    real = emails.check_email

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr("extauthz.identity.fields.check_email", counting)

    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    source = JwksSource(("u",), fetch=fetch)
    await source.refresh()
    authorizer = Authorizer(POLICY, TokenVerifier(source, TokenRules(), clock=lambda: NOW))

    def request(token: str, path: str = CHAT) -> RequestView:
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        return RequestView("POST", path, headers, b"{}")

    unverified = rs_token({"sub": "a", "email": "a@good.example", "email_verified": False})
    denied = await authorizer.authorize(request(unverified))
    assert isinstance(denied, Deny), denied
    assert (denied.status, denied.reason) == (403, Reason.EMAIL_DOMAIN_NOT_ALLOWED)
    assert "not verified" in denied.message
    good = rs_token({"sub": "b", "email": "b@good.example", "email_verified": "true"})
    calls = 0
    for _ in range(3):
        for path in (CHAT, "/v1/embeddings", "/v1/completions"):
            assert isinstance(await authorizer.authorize(request(good, path)), Allow)
    assert calls == 1  # one parse for the token, whatever the number of requests and paths


def _library_domain(address: str) -> str | None:
    try:
        parsed = email_validator.validate_email(
            address, check_deliverability=False, globally_deliverable=False
        )
    except email_validator.EmailNotValidError:
        return None
    return parsed.ascii_domain.lower()


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(emails.PLAIN_ADDRESS, fullmatch=True))
def test_the_fast_path_accepts_only_what_email_validator_accepts(address: str) -> None:
    """Where the regex fast path answers, email-validator gives the same domain (a subset)."""
    fast = emails.plain_domain(address)
    if fast is not None:
        assert fast == _library_domain(address)


@pytest.mark.parametrize(
    "address",
    [
        "a@x.local",
        "a@corp.localhost",
        "a@x.test",
        "a@x.invalid",
        "a@x.onion",
        "a@in-addr.arpa",
        "a@xn--bcher-kva.ch",
        "a@ab--cd.com",
        "l" * 65 + "@example.com",
        "a@" + ".".join(["d" * 63] * 4) + ".com",
        "a@x.c0m",
        "A.B+c@Sub.Example.COM",
    ],
)
def test_edge_addresses_agree_with_email_validator(address: str) -> None:
    """Special-use names, IDNA labels and length limits: the gate answers as the library does."""
    check = emails.check_email({}, address)
    assert check.domain == _library_domain(address)

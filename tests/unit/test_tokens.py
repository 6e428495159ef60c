"""Token verification: algorithms, keys, time and audience claims (identity.tokens, keyring)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwt

from extauthz.identity.keyring import KeyRing
from extauthz.identity.tokens import (
    Header,
    TokenFailure,
    TokenRules,
    UnknownKid,
    read_header,
    verify_token,
)
from extauthz.model import Reason
from tests.unit.keys import (
    NOW,
    ec_key,
    ec_public_jwk,
    pem_of,
    raw_token,
    rs_token,
    rsa_jwk,
    rsa_key,
)

RULES = TokenRules(leeway=30)


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _manual(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _verify(token: str, ring: KeyRing, rules: TokenRules = RULES, now: float = NOW) -> Any:
    header = read_header(token, rules)
    if isinstance(header, TokenFailure):
        return header
    return verify_token(token, header, ring, rules, now)


def _reason(result: Any) -> Reason | str:
    if isinstance(result, TokenFailure):
        return result.reason
    if isinstance(result, UnknownKid):
        return "unknown_kid"
    return "ok"


RING = KeyRing.from_jwks([{"keys": [rsa_jwk("a")]}])


class TestAlgorithms:
    def test_rs256_token_verifies_and_returns_claims(self) -> None:
        """A well-formed RS256 token signed by a published key yields its claims."""
        result = _verify(rs_token({"sub": "alice"}), RING)
        assert isinstance(result, dict) and result["sub"] == "alice"

    @pytest.mark.parametrize("alg", ["RS384", "RS512"])
    def test_other_rsa_hashes_verify_with_the_same_key(self, alg: str) -> None:
        """A JWK without 'alg' serves every RSA PKCS#1 hash."""
        claims = {"sub": "a", "exp": NOW + 60}
        token = jwt.encode(claims, pem_of("a"), algorithm=alg, headers={"kid": rsa_jwk()["kid"]})
        assert _reason(_verify(token, RING)) == "ok"

    @pytest.mark.parametrize("alg,bits", [("PS256", 256), ("PS384", 384), ("PS512", 512)])
    def test_rsa_pss_verifies(self, alg: str, bits: int) -> None:
        """PS* (which python-jose lacks) verifies with salt length = hash length."""
        h = {256: hashes.SHA256(), 384: hashes.SHA384(), 512: hashes.SHA512()}[bits]

        def sign(msg: bytes) -> bytes:
            return rsa_key("a").sign(
                msg, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h
            )

        token = _manual({"alg": alg, "kid": rsa_jwk()["kid"]}, {"exp": NOW + 60}, sign)
        assert _reason(_verify(token, RING)) == "ok"

    @pytest.mark.parametrize(
        "alg,crv,h",
        [
            ("ES256", "P-256", hashes.SHA256()),
            ("ES384", "P-384", hashes.SHA384()),
            ("ES512", "P-521", hashes.SHA512()),
        ],
    )
    def test_ecdsa_verifies(self, alg: str, crv: str, h: hashes.HashAlgorithm) -> None:
        """ES* tokens (raw r||s signatures) verify against EC JWKs of the matching curve."""
        key = ec_key(crv)
        size = (key.curve.key_size + 7) // 8

        def sign(msg: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(h)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        ring = KeyRing.from_jwks([{"keys": [ec_public_jwk(key, "ec1", crv)]}])
        token = _manual({"alg": alg, "kid": "ec1"}, {"exp": NOW + 60}, sign)
        assert _reason(_verify(token, ring)) == "ok"

    @pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "EdDSA", "", None, 5])
    def test_symmetric_and_none_algorithms_are_refused(self, alg: Any) -> None:
        """Only asymmetric algorithms are accepted; 'none' and HMAC never are."""
        token = raw_token({"alg": alg, "kid": rsa_jwk()["kid"]}, {"exp": NOW + 60})
        assert _reason(_verify(token, RING)) == Reason.ALGORITHM_NOT_ALLOWED

    def test_hmac_keyed_with_the_public_key_is_refused(self) -> None:
        """The classic confusion attack: HS256 with the RSA public key as secret."""
        from cryptography.hazmat.primitives import serialization

        public_pem = (
            rsa_key("a")
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        import hashlib
        import hmac

        def sign(msg: bytes) -> bytes:
            return hmac.new(public_pem, msg, hashlib.sha256).digest()

        token = _manual({"alg": "HS256", "kid": rsa_jwk()["kid"]}, {"exp": NOW + 60}, sign)
        assert _reason(_verify(token, RING)) == Reason.ALGORITHM_NOT_ALLOWED

    def test_oct_keys_in_the_jwks_are_never_used(self) -> None:
        """A symmetric key published in a JWKS is dropped from the ring."""
        ring = KeyRing.from_jwks([{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "o"}]}])
        assert len(ring) == 0

    def test_key_pinned_to_another_alg_cannot_verify(self) -> None:
        """A JWK with alg RS256 does not verify an RS512 token."""
        pinned = {**rsa_jwk("a"), "alg": "RS256"}
        ring = KeyRing.from_jwks([{"keys": [pinned]}])
        token = jwt.encode(
            {"exp": NOW + 60}, pem_of("a"), algorithm="RS512", headers={"kid": pinned["kid"]}
        )
        assert _reason(_verify(token, ring)) == Reason.BAD_SIGNATURE

    def test_rsa_token_against_an_ec_key_fails(self) -> None:
        """Key type must match the algorithm family."""
        ring = KeyRing.from_jwks([{"keys": [ec_public_jwk(ec_key("P-256"), "k", "P-256")]}])
        token = rs_token({"sub": "a"}, kid="k")
        assert _reason(_verify(token, ring)) == Reason.BAD_SIGNATURE


class TestKeys:
    def test_unknown_kid_asks_for_a_refetch(self) -> None:
        """A kid the ring lacks is reported as such (the caller may refetch)."""
        assert _reason(_verify(rs_token({}, kid="other"), RING)) == "unknown_kid"

    def test_no_kid_with_a_single_key_uses_it(self) -> None:
        """LiteLLM accepts a token without kid when the IdP publishes one key."""
        token = jwt.encode({"exp": NOW + 60}, pem_of("a"), algorithm="RS256")
        assert _reason(_verify(token, RING)) == "ok"

    def test_no_kid_with_several_keys_is_refused(self) -> None:
        """With several keys, a token must say which one signed it."""
        ring = KeyRing.from_jwks([{"keys": [rsa_jwk("a"), rsa_jwk("b")]}])
        token = jwt.encode({"exp": NOW + 60}, pem_of("a"), algorithm="RS256")
        assert _reason(_verify(token, ring)) == Reason.UNKNOWN_KEY

    def test_signature_by_another_key_fails(self) -> None:
        """A token claiming our kid but signed by another key is refused."""
        token = rs_token({}, name="b", kid=rsa_jwk("a")["kid"])
        assert _reason(_verify(token, RING)) == Reason.BAD_SIGNATURE

    @pytest.mark.parametrize(
        "extra",
        [
            {"jku": "https://attacker.example/jwks.json"},
            {"x5u": "https://attacker.example/cert.pem"},
            {"jwk": rsa_jwk("b")},
        ],
    )
    def test_key_location_headers_are_ignored(self, extra: dict[str, Any]) -> None:
        """jku/x5u/jwk in the header never supply a key: attacker-signed tokens fail."""
        headers = {"kid": rsa_jwk("a")["kid"], **extra}
        token = jwt.encode({"exp": NOW + 60}, pem_of("b"), algorithm="RS256", headers=headers)
        assert _reason(_verify(token, RING)) == Reason.BAD_SIGNATURE

    def test_tampered_payload_fails(self) -> None:
        """Changing one claim after signing breaks the signature."""
        h, _, s = rs_token({"sub": "alice"}).split(".")
        forged = _b64(json.dumps({"sub": "admin", "exp": NOW + 60}).encode())
        assert _reason(_verify(f"{h}.{forged}.{s}", RING)) == Reason.BAD_SIGNATURE

    def test_several_keys_with_the_same_kid_are_all_tried(self) -> None:
        """Two IdPs may reuse a kid; each key with that kid is tried."""
        other = {**rsa_jwk("b"), "kid": rsa_jwk("a")["kid"]}
        ring = KeyRing.from_jwks([{"keys": [other]}, {"keys": [rsa_jwk("a")]}])
        assert _reason(_verify(rs_token({}), ring)) == "ok"


class TestClaims:
    @pytest.mark.parametrize(
        "claims,rules,expected",
        [
            ({"exp": NOW - 10}, RULES, "ok"),  # within leeway
            ({"exp": NOW - 31}, RULES, Reason.TOKEN_EXPIRED),
            ({"exp": NOW + 60, "nbf": NOW + 31}, RULES, Reason.TOKEN_NOT_YET_VALID),
            ({"exp": NOW + 60, "nbf": NOW + 29}, RULES, "ok"),
            ({"exp": NOW + 60, "iat": NOW + 300}, RULES, Reason.TOKEN_NOT_YET_VALID),
            ({"iat": NOW, "exp": None}, RULES, Reason.MALFORMED_TOKEN),
            ({"exp": "tomorrow"}, RULES, Reason.MALFORMED_TOKEN),
            ({"exp": True}, RULES, Reason.MALFORMED_TOKEN),
            ({"aud": "api", "exp": NOW + 60}, TokenRules(audiences=frozenset({"api"})), "ok"),
            (
                {"aud": ["x", "api"], "exp": NOW + 60},
                TokenRules(audiences=frozenset({"api"})),
                "ok",
            ),
            (
                {"aud": "other", "exp": NOW + 60},
                TokenRules(audiences=frozenset({"api"})),
                Reason.AUDIENCE_MISMATCH,
            ),
            (
                {"aud": [{"x": 1}], "exp": NOW + 60},
                TokenRules(audiences=frozenset({"api"})),
                Reason.AUDIENCE_MISMATCH,
            ),
            ({"exp": NOW + 60}, TokenRules(audiences=frozenset({"api"})), Reason.AUDIENCE_MISMATCH),
            (
                {"iss": "https://idp", "exp": NOW + 60},
                TokenRules(issuers=frozenset({"https://idp"})),
                "ok",
            ),
            (
                {"iss": "https://evil", "exp": NOW + 60},
                TokenRules(issuers=frozenset({"https://idp"})),
                Reason.ISSUER_MISMATCH,
            ),
        ],
        ids=[
            "exp-within-leeway",
            "expired",
            "nbf-future",
            "nbf-within-leeway",
            "iat-future",
            "exp-null",
            "exp-string",
            "exp-bool",
            "aud-ok",
            "aud-list-ok",
            "aud-wrong",
            "aud-unhashable",
            "aud-missing",
            "iss-ok",
            "iss-wrong",
        ],
    )
    def test_time_and_audience_rules(
        self, claims: dict[str, Any], rules: TokenRules, expected: Any
    ) -> None:
        """exp/nbf/iat honour the leeway; aud and iss are checked only when configured."""
        body = {k: v for k, v in claims.items()}
        token = jwt.encode(body, pem_of("a"), algorithm="RS256", headers={"kid": rsa_jwk()["kid"]})
        assert _reason(_verify(token, RING, rules)) == expected

    def test_missing_exp_is_refused_by_default(self) -> None:
        """Tokens without an expiry are refused unless require_exp is turned off."""
        token = jwt.encode(
            {"sub": "a"}, pem_of("a"), algorithm="RS256", headers={"kid": rsa_jwk()["kid"]}
        )
        assert _reason(_verify(token, RING)) == Reason.MISSING_EXPIRY
        assert _reason(_verify(token, RING, TokenRules(require_exp=False))) == "ok"


class TestMalformed:
    @pytest.mark.parametrize(
        "token,expected",
        [
            ("a.b.c", Reason.MALFORMED_TOKEN),
            ("..", Reason.MALFORMED_TOKEN),
            ("e30.e30.e30", Reason.ALGORITHM_NOT_ALLOWED),  # {} header: no alg
            ("W10.e30.AA", Reason.MALFORMED_TOKEN),  # header is a JSON list
            ("eyJhbGciOiJSUzI1NiJ9!.e30.AA", Reason.MALFORMED_TOKEN),
            ("x" * 9000, Reason.TOKEN_TOO_LARGE),
        ],
        ids=["garbage", "empty-parts", "no-alg", "header-list", "bad-b64", "huge"],
    )
    def test_malformed_tokens_fail_cleanly(self, token: str, expected: Reason) -> None:
        """Garbage never raises; each shape gets a specific reason."""
        assert _reason(_verify(token, RING)) == expected

    def test_crit_header_is_refused(self) -> None:
        """RFC 7515 §4.1.11: a critical extension we do not understand must be refused."""
        token = jwt.encode(
            {"exp": NOW + 60},
            pem_of("a"),
            algorithm="RS256",
            headers={"kid": rsa_jwk()["kid"], "crit": ["exp"]},
        )
        assert _reason(_verify(token, RING)) == Reason.MALFORMED_TOKEN

    def test_payload_that_is_not_an_object_is_refused(self) -> None:
        """A validly signed payload must still be a JSON object."""

        def sign(msg: bytes) -> bytes:
            return rsa_key("a").sign(msg, padding.PKCS1v15(), hashes.SHA256())

        signing_input = (
            f"{_b64(json.dumps({'alg': 'RS256', 'kid': rsa_jwk()['kid']}).encode())}.{_b64(b'[1]')}"
        )
        token = f"{signing_input}.{_b64(sign(signing_input.encode()))}"
        assert _reason(_verify(token, RING)) == Reason.MALFORMED_TOKEN

    @pytest.mark.parametrize(
        "payload",
        [b'{"exp": NaN}', b'{"exp": Infinity}', b'{"exp": 1' + b"0" * 400 + b"}",
         b'{"sub": "\\ud800", "exp": 1}', '{"sub": "a"}'.encode("utf-16")],
        ids=["nan-exp", "infinite-exp", "number-beyond-double", "lone-surrogate", "utf-16"],
    )  # fmt: skip
    def test_signed_payload_json_is_read_strictly(self, payload: bytes) -> None:
        """What Python's json would accept but RFC 8259/7515 do not (NaN never expires, a lone
        surrogate cannot be forwarded) is a malformed token even when the signature is good."""

        def sign(msg: bytes) -> bytes:
            return rsa_key("a").sign(msg, padding.PKCS1v15(), hashes.SHA256())

        header = _b64(json.dumps({"alg": "RS256", "kid": rsa_jwk()["kid"]}).encode())
        signing_input = f"{header}.{_b64(payload)}"
        token = f"{signing_input}.{_b64(sign(signing_input.encode()))}"
        assert _reason(_verify(token, RING)) == Reason.MALFORMED_TOKEN

    def test_header_helper_reports_kid(self) -> None:
        """read_header returns alg and kid for a good token."""
        assert read_header(rs_token({}), RULES) == Header("RS256", rsa_jwk()["kid"])

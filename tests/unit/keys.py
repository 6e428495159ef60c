"""Signing keys and token factories shared by unit tests (generated once per process)."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from extauthz.devtokens import new_private_key, private_pem, public_jwk, sign_token

NOW = 1_900_000_000.0


@functools.cache
def rsa_key(name: str = "a") -> rsa.RSAPrivateKey:
    """A cached RSA key per name (key generation is the slow part of these tests)."""
    return new_private_key()


@functools.cache
def ec_key(curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
    return ec.generate_private_key(curves[curve])


def ec_public_jwk(key: ec.EllipticCurvePrivateKey, kid: str, crv: str) -> dict[str, Any]:
    nums = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": crv, "x": b64(nums.x), "y": b64(nums.y), "kid": kid}


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}


def rs_token(claims: dict[str, Any], name: str = "a", **kw: Any) -> str:
    """An RS256 token signed by ``rsa_key(name)``, iat/exp around NOW unless given."""
    kw.setdefault("now", NOW)
    return sign_token(rsa_key(name), claims, **kw)


def rsa_jwk(name: str = "a") -> dict[str, str]:
    """The public JWK of ``rsa_key(name)`` without an 'alg' pin (serves RS* and PS*)."""
    return {k: v for k, v in public_jwk(rsa_key(name)).items() if k != "alg"}


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"sig") -> str:
    """A token with arbitrary header and an arbitrary (invalid) signature."""

    def enc(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    return ".".join(
        (enc(json.dumps(header).encode()), enc(json.dumps(claims).encode()), enc(signature))
    )


def pem_of(name: str = "a") -> str:
    return private_pem(rsa_key(name)).decode()


def sign_with(alg: str, key_pem: str, claims: dict[str, Any], kid: str) -> str:
    return str(jwt.encode(claims, key_pem, algorithm=alg, headers={"kid": kid}))


def write_policy(tmp_path: Path, data: dict[str, Any]) -> Path:
    """``data`` (a policy) with signing keys of its own: a JWKS file in ``tmp_path`` that
    ``data``'s ``extauthz.public_key_url`` now names, and the policy written beside it."""
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(rsa_jwk("g"))))
    data["extauthz"]["public_key_url"] = keys.as_uri()
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path

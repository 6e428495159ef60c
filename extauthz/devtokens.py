"""Local development keys and tokens (``extauthz dev-key`` / ``extauthz token``).

Not for production identity: a real IdP signs production tokens. The key id is the RFC 7638
thumbprint, so the JWKS written here and the tokens signed here always agree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_private_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: str | Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public JWK with its RFC 7638 thumbprint as ``kid``."""
    numbers = key.public_key().public_numbers()
    members = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
    thumb = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    kid = base64.urlsafe_b64encode(thumb.digest()).rstrip(b"=").decode()
    return {**members, "kid": kid, "alg": "RS256", "use": "sig"}


def jwks_of(*keys: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {"keys": [public_jwk(k) for k in keys]}


def write_dev_key(key_path: str | Path, jwks_path: str | Path) -> rsa.RSAPrivateKey:
    """Create (or reuse) a PEM key and write its JWKS next to it."""
    kp = Path(key_path)
    if kp.exists():
        key = load_private_key(kp)
    else:
        key = new_private_key()
        kp.parent.mkdir(parents=True, exist_ok=True)
        kp.write_bytes(private_pem(key))
        kp.chmod(0o600)
    Path(jwks_path).write_text(json.dumps(jwks_of(key), indent=2) + "\n")
    return key


def sign_token(
    key: rsa.RSAPrivateKey,
    claims: dict[str, Any],
    *,
    ttl: int = 3600,
    now: float | None = None,
    kid: str | None = None,
    algorithm: str = "RS256",
) -> str:
    """An RS256 token with ``iat``/``exp`` filled in unless the claims set them."""
    issued = int(now if now is not None else time.time())
    body = {"iat": issued, "exp": issued + ttl, **claims}
    pem = private_pem(key).decode()
    headers = {"kid": kid if kid is not None else public_jwk(key)["kid"]}
    return str(jwt.encode(body, pem, algorithm=algorithm, headers=headers))

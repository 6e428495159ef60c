"""An immutable set of verification keys, indexed by ``kid``, with key objects built once.

Building a python-jose key object costs more than verifying with it (envoy-notes: 31 µs with a
prepared key, 64 µs from a dict), so objects are made once per (key, algorithm) and memoized.
Only asymmetric keys are accepted: an ``oct`` key in a JWKS is dropped, never used, so an HMAC
token can never be checked against a public key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jwk

RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGS = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
ALLOWED_ALGS = RSA_ALGS | frozenset(EC_ALGS)
_RSA_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
    "PS256": hashes.SHA256,
    "PS384": hashes.SHA384,
    "PS512": hashes.SHA512,
}
_PUBLIC_MEMBERS = {"RSA": ("kty", "kid", "n", "e"), "EC": ("kty", "kid", "crv", "x", "y")}


class Verifier(Protocol):
    """Checks one signature; python-jose's key objects already have this shape."""

    def verify(self, msg: bytes, sig: bytes) -> bool: ...


class _RsaVerifier:
    """RS256/384/512 (PKCS#1 v1.5) and PS256/384/512 (RSASSA-PSS, RFC 7518 §3.5, which
    python-jose lacks; salt length = hash length) straight on cryptography's key, with padding
    and hash built once (immutable, shared by threads). python-jose's ``verify`` builds a new key
    object per call: ~10 µs of a ~30 µs check. ``refusals``: the exceptions that mean "does not
    verify" (PKCS#1: only InvalidSignature, as in jose; PSS: ValueError too)."""

    __slots__ = ("_hash", "_key", "_padding", "_refusals")

    def __init__(self, key: rsa.RSAPublicKey, alg: str) -> None:
        self._key = key
        self._hash = _RSA_HASH[alg]()
        if alg.startswith("PS"):
            self._padding: padding.AsymmetricPadding = padding.PSS(
                mgf=padding.MGF1(self._hash), salt_length=self._hash.digest_size
            )
            self._refusals: tuple[type[Exception], ...] = (InvalidSignature, ValueError)
        else:
            self._padding = padding.PKCS1v15()
            self._refusals = (InvalidSignature,)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._key.verify(sig, msg, self._padding, self._hash)
        except self._refusals:
            return False
        return True


def _public_jwk(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """Keep only the public members of a usable signing key; None for anything else."""
    kty = raw.get("kty")
    if kty not in _PUBLIC_MEMBERS:
        return None
    if raw.get("use", "sig") != "sig":
        return None
    alg = raw.get("alg")
    if alg is not None and alg not in ALLOWED_ALGS:
        return None
    members = {k: raw[k] for k in _PUBLIC_MEMBERS[kty] if k in raw}
    required = [k for k in _PUBLIC_MEMBERS[kty] if k != "kid"]
    if any(not isinstance(members.get(k), str) for k in required):
        return None
    if "kid" in members and not isinstance(members["kid"], str):
        return None
    if alg is not None:
        members["alg"] = alg
    return members


def _compatible(key: Mapping[str, Any], alg: str) -> bool:
    if key.get("alg") not in (None, alg):
        return False
    if alg in RSA_ALGS:
        return bool(key["kty"] == "RSA")
    return key["kty"] == "EC" and key.get("crv") == EC_ALGS.get(alg)


@dataclass(slots=True)
class KeyRing:
    """Keys from one or more JWKS documents. Treat as immutable; only the memo table grows."""

    keys: tuple[dict[str, Any], ...]
    fingerprint: str
    _by_kid: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _built: dict[tuple[int, str], Verifier | None] = field(default_factory=dict)

    @classmethod
    def from_jwks(cls, documents: Iterable[Mapping[str, Any]]) -> KeyRing:
        """Build from parsed JWKS documents; unusable entries are skipped, not fatal."""
        keys: list[dict[str, Any]] = []
        seen: set[str] = set()  # a list test per key was quadratic: seconds for a 1 MB JWKS
        for doc in documents:
            entries = doc.get("keys")
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if isinstance(entry, Mapping):
                    key = _public_jwk(entry)
                    if key is None:
                        continue
                    canonical = json.dumps(key, sort_keys=True)
                    if canonical not in seen:
                        seen.add(canonical)
                        keys.append(key)
        fingerprint = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
        ring = cls(tuple(keys), fingerprint)
        by_kid: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if "kid" in key:
                by_kid.setdefault(key["kid"], []).append(i)
        ring._by_kid = {k: tuple(v) for k, v in by_kid.items()}
        return ring

    def __len__(self) -> int:
        return len(self.keys)

    def has_kid(self, kid: str) -> bool:
        """True when some key carries this ``kid``."""
        return kid in self._by_kid

    def candidates(self, kid: str | None, alg: str) -> list[Verifier] | None:
        """Verifiers that may have signed a token with this header.

        None means the ``kid`` is unknown (worth a refetch); an empty list means keys exist but
        none can verify ``alg`` (or the token has no ``kid`` and the ring has several keys).
        """
        if kid is not None:
            idx = self._by_kid.get(kid)
            if idx is None:
                return None
        elif len(self.keys) == 1:
            idx = (0,)
        else:
            return []
        out: list[Verifier] = []
        for i in idx:
            verifier = self._verifier(i, alg)
            if verifier is not None:
                out.append(verifier)
        return out

    def _verifier(self, i: int, alg: str) -> Verifier | None:
        memo = (i, alg)
        if memo in self._built:
            return self._built[memo]
        key = self.keys[i]
        built: Verifier | None = None
        if _compatible(key, alg):
            try:
                if alg in _RSA_HASH:
                    rsa_key = jwk.construct(key, "RS256").prepared_key
                    if isinstance(rsa_key, rsa.RSAPublicKey):
                        built = _RsaVerifier(rsa_key, alg)
                else:
                    built = jwk.construct(key, alg)
            except Exception:  # a malformed key in the JWKS must not break verification
                built = None
        self._built[memo] = built
        return built

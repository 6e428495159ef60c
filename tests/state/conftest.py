"""Fixtures of the state tests: stores of every kind, PostgreSQL schemas, a signed-token IdP.

PostgreSQL: ``EXTAUTHZ_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Each test gets its own schema (``extauthz_t_<random>``, dropped afterwards), so parallel runs
never collide; the store is pointed at it with libpq's ``options=-csearch_path%3D...``.
When PostgreSQL is not reachable the PostgreSQL cases are skipped, except under CI (``CI`` set),
where they fail.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.devtokens import jwks_of, new_private_key, sign_token

PG_BASE_URL = os.environ.get("EXTAUTHZ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MASTER_KEY = "sk-state-test-master-1234"


@functools.cache
def pg_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(PG_BASE_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def require_pg() -> None:
    problem = pg_available()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_BASE_URL} is required under CI: {problem}")
        pytest.skip(f"PostgreSQL at {PG_BASE_URL} not reachable: {problem}")


def schema_url(schema: str, base: str = PG_BASE_URL) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema in the test database, dropped after the test."""
    require_pg()
    name = f"extauthz_t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    return schema_url(pg_schema)


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    return new_private_key()


def token(claims: dict[str, Any], ttl: int = 600) -> str:
    """A valid RS256 token for the test IdP."""
    return sign_token(signing_key(), claims, ttl=ttl)


@dataclass(frozen=True, slots=True)
class PolicyFiles:
    """A policy YAML and its JWKS on disk (``JWT_PUBLIC_KEY_URL=file://...``)."""

    policy: Path
    jwks_url: str

    @property
    def env(self) -> dict[str, str]:
        return {"JWT_PUBLIC_KEY_URL": self.jwks_url}


POLICY = """
extauthz:
  missing_team_claim: as_user   # users (sub only) and teams (client_id) side by side
%(ours)s
general_settings:
  enable_jwt_auth: true
  master_key: %(master)s
  litellm_jwtauth:
    user_id_jwt_field: sub
    team_id_jwt_field: client_id
    user_email_jwt_field: email
    end_user_id_jwt_field: end_user
    user_id_upsert: %(upsert)s
"""


def write_policy(
    directory: Path, *, upsert: bool = True, extra: str = "", ours: str = ""
) -> PolicyFiles:
    """The state tests' policy; ``extra`` continues litellm_jwtauth, ``ours`` extauthz."""
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps(jwks_of(signing_key())))
    policy = directory / "policy.yaml"
    policy.write_text(
        POLICY % {"master": MASTER_KEY, "upsert": "true" if upsert else "false", "ours": ours}
        + extra
    )
    return PolicyFiles(policy, f"file://{jwks}")


@pytest.fixture
def policy_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PolicyFiles:
    files = write_policy(tmp_path)
    for k, v in files.env.items():
        monkeypatch.setenv(k, v)
    return files

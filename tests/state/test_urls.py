"""``--state`` URLs: the ones that cannot work fail at start with a message saying why."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from extauthz.admin.state import StateOptions, StateRuntime
from extauthz.config.loader import load_policy_file
from extauthz.errors import ConfigError
from extauthz.runtime import ServeOptions, Sidecar
from extauthz.state.memory import MemoryStore
from extauthz.state.postgres import PostgresStore
from extauthz.state.sqlite import SqliteStore
from extauthz.state.urls import StoreSettings, store_from_url
from harness.procs import free_port
from tests.state.conftest import PG_BASE_URL, PolicyFiles, require_pg


@pytest.mark.parametrize(
    "url,needle",
    [
        ("", "empty"),
        ("extauthz-state.db", "no scheme"),
        ("mysql://u@h/db", "unknown scheme 'mysql'"),
        ("sqlite://state.db", "three slashes"),
        ("sqlite:///", "no database file"),
        ("sqlite:///dir/", "no database file"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite:///x.db?mode=ro", "no query string"),
        ("memory://x", "nothing after"),
        ("postgresql:///db", "no host"),
        ("postgresql://u@h:port/db", "port is not a number"),
        ("postgresql://u@h/db?nonsense=1", "not a valid PostgreSQL URL"),
    ],
)
def test_bad_urls_fail_with_the_reason(url: str, needle: str) -> None:
    """Each unusable URL is refused with a message naming the problem and examples."""
    with pytest.raises(ConfigError) as info:
        store_from_url(url)
    message = str(info.value)
    assert needle in message and "--state" in message and "\n" not in message


def test_passwords_never_appear_in_messages() -> None:
    """A password in a bad URL is redacted in the error and in the store's display URL."""
    with pytest.raises(ConfigError) as info:
        store_from_url("postgresql://u:hunter2@h:nope/db")
    assert "hunter2" not in str(info.value)
    store = store_from_url("postgresql://u:hunter2@h:5432/db")
    assert "hunter2" not in store.url and "***" in store.url


@pytest.mark.parametrize(
    "url,kind",
    [
        ("memory://", MemoryStore),
        ("sqlite:///state.db", SqliteStore),
        ("sqlite:////var/lib/x/state.db", SqliteStore),
        ("postgresql://u@h:5432/db", PostgresStore),
        ("postgres://u@h/db", PostgresStore),
        ("postgresql://u@h/db?options=-csearch_path%3Dextauthz&sslmode=disable", PostgresStore),
    ],
)
def test_good_urls_name_their_store(url: str, kind: type) -> None:
    """SQLAlchemy-style SQLite paths, both PostgreSQL schemes, and memory:// are accepted."""
    assert isinstance(store_from_url(url), kind)


def test_sqlite_paths_follow_sqlalchemy() -> None:
    """Three slashes: a relative path; four: an absolute one."""
    rel = store_from_url("sqlite:///data/state.db")
    absolute = store_from_url("sqlite:////var/lib/state.db")
    assert isinstance(rel, SqliteStore) and rel.path == "data/state.db"
    assert isinstance(absolute, SqliteStore) and absolute.path == "/var/lib/state.db"


async def test_sqlite_in_a_missing_directory_fails_at_open(tmp_path: Path) -> None:
    """The file is created on first start, but a missing directory is an error."""
    store = store_from_url(f"sqlite:///{tmp_path}/nope/state.db")
    with pytest.raises(ConfigError, match="does not exist"):
        await store.open()
    await store.close()


async def test_a_file_that_is_not_sqlite_fails_at_open(tmp_path: Path) -> None:
    """Pointing at some other file is refused with the path."""
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not a database, just text that is long enough" * 100)
    store = store_from_url(f"sqlite:///{path}")
    with pytest.raises(ConfigError, match=r"not\.db"):
        await store.open()
    await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A store migrated by a newer extauthz is not touched by an older one."""
    path = tmp_path / "state.db"
    store = store_from_url(f"sqlite:///{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE extauthz_meta SET value = 99 WHERE key = 'schema_version'")
    again = store_from_url(f"sqlite:///{path}")
    with pytest.raises(ConfigError, match="schema version 99"):
        await again.open()
    await again.close()


async def test_unreachable_postgres_fails_start_after_retrying(policy_files: PolicyFiles) -> None:
    """Nothing listening: start retries for open_timeout, then fails naming the store."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    options = ServeOptions(
        config=str(policy_files.policy),
        grpc_address="127.0.0.1:0",
        http_address=None,
        state_url=url,
        state=StateOptions(store=StoreSettings(connect_timeout=0.5), open_timeout=0.6),
    )
    car = Sidecar(options, load_policy_file(str(policy_files.policy), policy_files.env))
    with pytest.raises(ConfigError, match="cannot reach the state store"):
        await car.start()
    assert car.grpc_server is None  # no port was bound


async def test_unknown_postgres_database_fails_at_once() -> None:
    """A database that does not exist will not appear by retrying: fail without waiting."""
    require_pg()
    base = PG_BASE_URL.rsplit("/", 1)[0]
    runtime = StateRuntime(f"{base}/extauthz_no_such_db", StateOptions(open_timeout=20))
    start = asyncio.get_running_loop().time()
    with pytest.raises(ConfigError, match="does not exist"):
        await runtime.open()
    assert asyncio.get_running_loop().time() - start < 5


def test_serve_with_a_bad_state_url_exits_1_with_the_reason(policy_files: PolicyFiles) -> None:
    """`extauthz serve --state mysql://...` prints what is wrong and exits 1."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "extauthz.cli",
            "serve",
            "--config",
            str(policy_files.policy),
            "--state",
            "mysql://u@h/db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "unknown scheme 'mysql'" in proc.stderr


def test_password_query_parameter_is_redacted_too() -> None:
    """libpq also reads ?password=...; the display URL must not show it either."""
    store = store_from_url(
        "postgresql://u@h:5432/db?sslmode=require&password=hunter2&connect_timeout=3"
    )
    assert "hunter2" not in store.url
    assert "sslmode=require" in store.url and "password=***" in store.url

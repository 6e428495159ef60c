"""Fixtures for the minter's tests: a test CA, the cloud stand-ins, an HTTP client trusting them."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from extauthz.mint.transport import HttpClient, make_ssl_context

from .standins import Cloud, ServerThread, start_cloud
from .testca import TestCA, make_test_ca

UPSTREAM_HOSTS = [
    "localhost",
    "127.0.0.1",
    "bedrock-runtime.us-west-2.amazonaws.com",
    "example-resource.openai.azure.com",
    "us-central1-aiplatform.googleapis.com",
]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"), UPSTREAM_HOSTS)


@pytest.fixture(scope="session")
def server_thread() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def session_cloud(test_ca: TestCA, server_thread: ServerThread) -> Cloud:
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(test_ca.cert_file, test_ca.key_file)
    return start_cloud(server_thread, server_ssl)


@pytest.fixture
def cloud(session_cloud: Cloud) -> Cloud:
    """The stand-ins, reset to answer normally."""
    session_cloud.reset()
    return session_cloud


@pytest.fixture
async def http(test_ca: TestCA) -> AsyncIterator[HttpClient]:
    client = HttpClient(make_ssl_context(str(test_ca.ca_file)), timeout_seconds=5)
    yield client
    await client.close()


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path

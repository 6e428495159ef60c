"""Shared fixtures: one background event loop and the signing keys for the whole session.

Each test module starts its own stack (module-scoped, see ``harness.start_stack``), so Envoy
starts once per module and modules that change state (keys, policy, a stopped sidecar) do not
disturb each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from extauthz.devtokens import new_private_key
from tests.integration.harness import LoopThread


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def key() -> rsa.RSAPrivateKey:
    """The IdP's signing key."""
    return new_private_key()


@pytest.fixture(scope="session")
def rogue_key() -> rsa.RSAPrivateKey:
    """A key the IdP never publishes."""
    return new_private_key()

"""tests/deploy: the Kubernetes manifests, the image recipe and the Kubernetes Envoy config."""

from __future__ import annotations

import pytest

from tests.integration.conftest import key, loop_thread

from .kube import kubectl

__all__ = ["key", "loop_thread", "need_kubectl"]


@pytest.fixture(scope="session")
def need_kubectl() -> None:
    if kubectl() is None:
        pytest.skip("kubectl not on PATH: `kubectl kustomize` renders the manifests offline")

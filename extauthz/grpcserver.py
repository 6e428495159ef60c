"""The gRPC port's server: pygrpc-native where installed, else grpcio's own.

Both take the same handlers (generated code, ``add_registered_method_handlers``). grpcio's
synchronous server runs its own Python for every call's events under the GIL: a trivial
allow-all handler cost ~155 µs of CPU per check under load here, more than our whole decision.
pygrpc-native (Rust: tokio and the h2 crate) does HTTP/2 and the per-call work outside the GIL
and hands calls to the same thread pool; the same trivial handler cost ~47 µs, and the sidecar's
warm checks ~106 µs against ~247 µs (``python -m bench --only floor-sync,floor-native,
sidecar-warm``; 2026-11-29, README "Benchmarks"). Methods it does not serve itself (server
reflection, which is client-streaming) reach a grpcio server it runs behind it on a Unix
socket in a temporary directory (``TMPDIR``).

``serve --grpc-server grpcio`` keeps grpcio's server: same answers, slower.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI reads CHOICES without paying for grpc's import
    import grpc

log = logging.getLogger(__name__)

PYGRPC_NATIVE = "pygrpc-native"
GRPCIO = "grpcio"
CHOICES = (PYGRPC_NATIVE, GRPCIO)


def new_server(
    choice: str, pool: Executor, options: Sequence[tuple[str, Any]]
) -> tuple[grpc.Server, str]:
    """A server of the kind asked for and the name of the one made (grpcio when pygrpc-native
    is not installed: a platform without its wheels)."""
    import grpc

    if choice == PYGRPC_NATIVE:
        try:
            import pygrpc_native
        except ImportError:
            log.warning("pygrpc-native is not installed: the gRPC port runs on grpcio's server")
        else:
            return pygrpc_native.server(pool, options=options), PYGRPC_NATIVE
    elif choice != GRPCIO:
        raise ValueError(f"unknown gRPC server {choice!r}: one of {', '.join(CHOICES)}")
    return grpc.server(pool, options=options), GRPCIO


def bind(server: grpc.Server, address: str) -> int:
    """``add_insecure_port``: the bound port, or 0 when it cannot be bound (grpcio answers 0,
    pygrpc-native raises)."""
    try:
        port: int = server.add_insecure_port(address)
    except RuntimeError:
        return 0
    return port

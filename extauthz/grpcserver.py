"""The gRPC port's server: grpcio's synchronous one, or pygrpc-native's (opt-in).

Two servers take the same handlers (generated code, ``add_registered_method_handlers``):
grpcio's synchronous server (the default) and, with ``serve --grpc-server pygrpc-native``,
pygrpc-native's drop-in one (Rust: tokio and the h2 crate), which does HTTP/2 and each call's
bookkeeping outside the GIL. grpcio runs its own Python for every call under the GIL: a trivial
allow-all handler cost ~155 µs of CPU per check under load here, the sidecar's warm check ~200;
on pygrpc-native ~48 and ~72 (``python -m bench``; 2026-11-29, README "Benchmarks").

pygrpc-native is not the default because 0.5 reads a whole message into memory before it
compares its size with ``grpc.max_receive_message_length``: one peer sending a 1 GiB message
can exhaust the container's memory, where grpcio refuses it early. Behind Envoy alone (which
sends at most ``with_request_body.max_request_bytes`` of body) that cannot happen; where other
clients can reach the port, it can. Methods it does not serve itself (server reflection,
client-streaming) reach a grpcio server it runs behind it on a Unix socket in a temporary
directory (``TMPDIR``).

Light to import (grpc is imported only when a server is made): the CLI reads ``CHOICES``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI reads CHOICES without paying for grpc's import
    import grpc

log = logging.getLogger(__name__)

GRPCIO = "grpcio"
PYGRPC_NATIVE = "pygrpc-native"
CHOICES = (GRPCIO, PYGRPC_NATIVE)  # the first is serve's default


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
    """``add_insecure_port``: the bound port, or 0 when it cannot be bound (both servers raise
    RuntimeError for a port in use; older grpcio answered 0)."""
    try:
        port: int = server.add_insecure_port(address)
    except RuntimeError:
        return 0
    return port

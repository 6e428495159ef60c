"""The floors: trivial Python ext_authz servers that allow everything unread.

Three, because the gRPC servers a Python authorizer can stand on have different per-call costs:
``sync`` (grpcio's threaded server, a ThreadPoolExecutor), ``aio`` (grpc.aio) and ``native``
(pygrpc-native's drop-in server, HTTP/2 in Rust outside the GIL, on the same thread pool: what
``extauthz serve`` runs on by default, extauthz/grpcserver.py). bench/ reports the sidecar
against the faster grpcio floor (the floors issue 18 set its targets against) and against the
native floor (the same server with no decision: what our own work costs).

    python -m bench.floor [--server sync|aio|native] [ADDRESS]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import os
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

OK = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))
THREADS = 4  # as the sidecar gRPC server's threads at work (extauthz.runtime.GRPC_THREADS)


class AioFloor(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    async def Check(self, request: object, context: object) -> object:
        return OK


class SyncFloor(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def Check(self, request: object, context: object) -> object:
        return OK


async def serve_aio(address: str) -> None:
    server = grpc.aio.server()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AioFloor(), server)
    server.add_insecure_port(address)
    await server.start()
    print("floor ready", flush=True)
    await server.wait_for_termination()


def serve_threaded(address: str, server_kind: str) -> None:
    """The sync floor on grpcio's threaded server or on pygrpc-native's drop-in one."""
    if server_kind == "native":
        import pygrpc_native

        make: Any = pygrpc_native.server
    else:
        make = grpc.server
    server = make(concurrent.futures.ThreadPoolExecutor(THREADS))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(SyncFloor(), server)
    server.add_insecure_port(address)
    server.start()
    print("floor ready", flush=True)
    server.wait_for_termination()


def freeze() -> None:
    """What ``extauthz serve`` does once started: start-up objects (modules, descriptors) are
    kept out of the collector's full passes. A floor without it pays for walking them all again
    and again (grpc.aio allocates many objects per call, so it collects often): that is not
    grpcio's cost and no ceiling."""
    if os.environ.get("BENCH_FLOOR_NO_FREEZE") != "1":
        gc.collect()
        gc.freeze()


if __name__ == "__main__":
    freeze()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=("sync", "aio", "native"), default="sync")
    parser.add_argument("address", nargs="?", default="127.0.0.1:9291")
    args = parser.parse_args()
    if args.server in ("sync", "native"):
        serve_threaded(args.address, args.server)
    else:
        asyncio.run(serve_aio(args.address))

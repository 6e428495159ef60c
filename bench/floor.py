"""The floors: trivial Python ext_authz servers on the same grpcio that allow everything unread.

Two, because grpcio has two servers with different per-call costs: ``sync`` (grpcio's threaded
server, a ThreadPoolExecutor as the sidecar uses) and ``aio`` (grpc.aio). bench/ measures the
sidecar against the faster of the two in the same round. Whatever the sidecar costs above that
floor is our own work; below it is grpcio's per-call cost, which no Python authorizer can avoid.

    python -m bench.floor [--server sync|aio] [ADDRESS]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import os

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


def serve_sync(address: str) -> None:
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(THREADS))
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
    parser.add_argument("--server", choices=("sync", "aio"), default="sync")
    parser.add_argument("address", nargs="?", default="127.0.0.1:9291")
    args = parser.parse_args()
    if args.server == "sync":
        serve_sync(args.address)
    else:
        asyncio.run(serve_aio(args.address))

"""`extauthz serve` with every check answered by a constant allow, decided by nothing.

Everything else is the real sidecar (its gRPC server on the elastic pool, the event loop,
health, reflection, the admin API, the state store, the key refresher). ``bench.server_
instructions --servers floor-sync,sidecar-null,sidecar`` then splits the sidecar's cost per
check into grpcio's and the process's (sidecar-null against the floor) and the decision's
(sidecar against sidecar-null). Bench-only: the product has no such switch.

    python -m bench.null_sidecar serve --config ... (the arguments of `extauthz serve`)
"""

from __future__ import annotations

import sys
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2

from extauthz import cli
from extauthz.envoy.grpc_service import AuthorizationService

_ALLOW: bytes = external_auth_pb2.CheckResponse(status={"code": 0}).SerializeToString()


def _constant(self: AuthorizationService, request: Any, context: Any) -> bytes:
    return _ALLOW


if __name__ == "__main__":
    AuthorizationService.Check = _constant  # type: ignore[method-assign]
    sys.exit(cli.main())

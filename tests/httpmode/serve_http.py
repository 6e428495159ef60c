"""Run the sidecar with its ext_authz HTTP service, until ``extauthz serve`` has the option.

    python -m tests.httpmode.serve_http --config POLICY --authz-http-address 127.0.0.1:9194

The same ``Sidecar`` as ``extauthz serve`` (policy, keys, reload, gRPC on a free port), plus
``start_authz_http`` on the sidecar's authorizer: what runtime.py will do once wired.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

from extauthz.config.loader import load_policy_file
from extauthz.logs import setup_logging
from extauthz.server.envoy_http import DEFAULT_PATH_PREFIX, start_authz_http
from extauthz.server.runtime import ServeOptions, Sidecar


async def run(config: str, address: str, prefix: str) -> None:
    options = ServeOptions(config=config, grpc_address="127.0.0.1:0", http_address=None)
    sidecar = Sidecar(options, load_policy_file(config, os.environ))
    await sidecar.start()
    host, _, port = address.rpartition(":")
    server = await start_authz_http(sidecar.authorizer, host, int(port), path_prefix=prefix)
    print(f"authz http on {host}:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close(1.0)
    await sidecar.stop(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--authz-http-address", default="127.0.0.1:9194")
    ap.add_argument("--path-prefix", default=DEFAULT_PATH_PREFIX)
    ap.add_argument("--log-level", default=os.environ.get("EXTAUTHZ_LOG_LEVEL", "info"))
    args = ap.parse_args()
    setup_logging(args.log_level)
    asyncio.run(run(args.config, args.authz_http_address, args.path_prefix))


if __name__ == "__main__":
    main()

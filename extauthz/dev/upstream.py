"""A demo upstream that echoes each request as JSON, so the identity headers extauthz set show.

``python -m extauthz.dev.upstream --port 8081`` answers every method and path with
``{"method", "path", "headers": {...}, "body_bytes": N}``. Header names are lower-cased; a
header sent several times is joined with ", " so no copy goes unseen. Also the test upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web


def echo_headers(request: web.BaseRequest) -> dict[str, str]:
    """Every request header, names lower-cased, repeated headers joined with ', '."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


async def echo(request: web.Request) -> web.Response:
    """Describe the request; the body is counted, never stored (uploads may be large)."""
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            "headers": echo_headers(request),
            "body_bytes": size,
        },
        dumps=_pretty,
    )


def _pretty(obj: object) -> str:
    return json.dumps(obj, indent=2) + "\n"  # readable in a terminal after curl


def build_app() -> web.Application:
    """The echo application (every method, every path)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def _write_port_file(path: str, port: int) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)  # readers never see a half-written file


async def serve(host: str, port: int, port_file: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM; write the bound port to ``port_file`` (for ``--port 0``)."""
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    if sockets:
        bound = int(sockets[0].getsockname()[1])
    if port_file:
        _write_port_file(port_file, bound)
    print(f"demo upstream listening on http://{host}:{bound}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m extauthz.dev.upstream", description="echo every request as JSON"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0: any free port")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())

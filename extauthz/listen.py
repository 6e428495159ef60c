"""Where a server listens: ``HOST:PORT`` parsing and starting an aiohttp app on it.

Shared by ``extauthz serve`` (health, metrics, admin API) and ``extauthz mint`` (its status
endpoints), so both read addresses the same way and report the port actually bound.
"""

from __future__ import annotations

from aiohttp import web


def parse_address(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (port 0 picks a free one); ValueError if malformed.

    ``:port`` binds ``default_host``.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    host = host.strip("[]") or default_host
    return host, int(port_text)


async def start_http(
    app: web.Application, address: str, reuse_port: bool = False
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``address``; return the runner and the address actually bound.
    ``reuse_port``: share the port with the other ``--workers`` processes (SO_REUSEPORT)."""
    host, port = parse_address(address)
    # Request bodies are taken as sent: never decompressed by aiohttp (a Content-Encoding is
    # refused by the handlers that read a body, not inflated into memory or a parser error).
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    await site.start()
    bound = runner.addresses[0]
    return runner, f"{bound[0]}:{bound[1]}"

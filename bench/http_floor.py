"""The HTTP floor: a trivial ext_authz HTTP service that allows everything without reading it.

What Envoy's HTTP-service mode costs with Python on the other end, whatever the policy; the
HTTP-mode counterpart of ``bench/floor.py`` (gRPC). ``--parser hand`` frames requests itself
(find the blank line, skip Content-Length bytes: enough for Envoy, which always sends a
Content-Length); ``--parser httptools`` uses llhttp like the sidecar, to measure its cost. It
runs on the sidecar's event loop (uvloop where installed, extauthz/eventloop.py).

    python -m bench.http_floor 127.0.0.1:9294 [--parser hand|httptools]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import httptools

from extauthz import eventloop

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class HandFloor(asyncio.Protocol):
    """Frames requests by hand; answers each with 200."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        answers = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            if len(buf) < end + 4 + length:
                break
            buf = buf[end + 4 + length :]
            answers += 1
        self.buf = buf
        if answers:
            self.transport.write(OK * answers)


class LlhttpFloor(asyncio.Protocol):
    """Frames requests with httptools; answers each with 200."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(OK)


async def serve(address: str, parser: str) -> None:
    host, _, port = address.rpartition(":")
    factory = HandFloor if parser == "hand" else LlhttpFloor
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host or "127.0.0.1", int(port))
    print("http floor ready", flush=True)
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("address", nargs="?", default="127.0.0.1:9294")
    ap.add_argument("--parser", choices=("hand", "httptools"), default="hand")
    args = ap.parse_args()
    eventloop.run(serve(args.address, args.parser))  # the sidecar's loop (uvloop)


if __name__ == "__main__":
    main()

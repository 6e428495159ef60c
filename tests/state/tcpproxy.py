"""A loopback TCP proxy the tests can cut, hold and restore: a stand-in for PostgreSQL outages.

The machine's PostgreSQL cannot be stopped by a test (other runs share it), so the sidecar is
pointed at this proxy instead. ``cut`` closes every proxied connection and stops listening
(new connections are refused, as with a stopped server); ``restore`` listens on the same port.
``hold`` makes a server that accepts connections but never answers (a hung host, a full disk, a
network that drops packets without a reset): every byte, either way, on open and new connections
alike, is kept instead of delivered; ``release`` delivers what was held and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    await self._flowing.wait()  # held: keep the bytes, deliver nothing
                    dst.write(data)
                    await dst.drain()
            dst.close()

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def hold(self) -> None:
        """Accept and keep every byte from now on; answer nothing."""
        self._flowing.clear()

    def release(self) -> None:
        """Deliver what was held, and everything after it."""
        self._flowing.set()

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        self.release()
        await self.cut()

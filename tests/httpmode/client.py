"""A blocking raw-socket HTTP/1.1 client that shows exactly what the server sent.

Tests talk to the ext_authz HTTP server with it (no client library that would tidy up
malformed answers), and read the shipped ``envoy-http.yaml`` to interpret answers the way
Envoy is configured to.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.integration.harness import Reply

REPO = Path(__file__).resolve().parents[2]
ENVOY_HTTP_YAML = REPO / "envoy-http.yaml"


def check_request(
    method: str = "POST",
    path: str = "/v1/chat/completions",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    prefix: str = "/extauthz",
    version: str = "HTTP/1.1",
) -> bytes:
    """A check as Envoy sends it: prefix + original target, the headers, Content-Length."""
    lines = [f"{method} {prefix}{path} {version}", "host: envoy"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


class Conn:
    """One TCP connection; reads answers one by one, or waits for the server to close."""

    def __init__(self, port: int, timeout: float = 10.0, bufsize: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if bufsize is not None:  # small kernel buffers: back-pressure shows sooner
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self.buf += chunk
        return bool(chunk)

    def read_head(self) -> tuple[int, dict[str, str]] | None:
        """Status and headers of the next answer (None at EOF); the body stays buffered."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("utf-8").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            assert key not in headers, f"repeated header {key}"
            headers[key] = value.strip()
        return status, headers

    def read(self) -> Reply | None:
        """The next full answer (Content-Length framed), or None at EOF."""
        head = self.read_head()
        if head is None:
            return None
        status, headers = head
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self._fill():
                raise AssertionError("connection closed inside a body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return Reply(status, headers, body)

    def closed_by_server(self) -> bool:
        """True once the server closes (after any answers still buffered are read off)."""
        try:
            while self._fill():
                pass
        except TimeoutError:
            return False
        return True


def exchange(port: int, request: bytes) -> Reply:
    """One request on a fresh connection."""
    with Conn(port) as conn:
        conn.send(request)
        reply = conn.read()
        assert reply is not None, "server closed without answering"
        return reply


def _patterns(node: dict[str, Any]) -> list[str]:
    return [p["exact"] for p in node["patterns"]]


def shipped_ext_authz() -> dict[str, Any]:
    """The ext_authz filter config in envoy-http.yaml."""
    data = yaml.safe_load(ENVOY_HTTP_YAML.read_text())
    hcm = data["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    for f in hcm["typed_config"]["http_filters"]:
        if f["name"] == "envoy.filters.http.ext_authz":
            typed: dict[str, Any] = f["typed_config"]
            return typed
    raise AssertionError("no ext_authz filter in envoy-http.yaml")


class ShippedLists:
    """The header lists of envoy-http.yaml: what Envoy forwards, keeps and turns into metadata."""

    def __init__(self) -> None:
        typed = shipped_ext_authz()
        response = typed["http_service"]["authorization_response"]
        self.request = _patterns(typed["allowed_headers"])
        self.upstream = _patterns(response["allowed_upstream_headers"])
        # Envoy always lets these through on deny once the list is set.
        self.client = [*_patterns(response["allowed_client_headers"]), "www-authenticate"]
        self.client.append("location")
        self.metadata = _patterns(response["dynamic_metadata_from_headers"])
        self.prefix: str = typed["http_service"]["path_prefix"]

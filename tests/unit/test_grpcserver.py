"""Choosing and binding the gRPC port's server (extauthz/grpcserver.py)."""

from __future__ import annotations

import logging
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from extauthz.grpcserver import CHOICES, GRPCIO, PYGRPC_NATIVE, bind, new_server


def test_grpcio_is_the_default_of_the_cli_and_of_serve() -> None:
    """pygrpc-native reads a whole message before its size check: opt-in only."""
    from extauthz.cli import build_parser
    from extauthz.runtime import ServeOptions

    assert CHOICES[0] == GRPCIO
    args = build_parser().parse_args(["serve", "--config", "x.yaml"])
    assert args.grpc_server == GRPCIO == ServeOptions(config="x.yaml").grpc_server


@pytest.mark.parametrize("choice", CHOICES)
def test_each_choice_makes_its_server(choice: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        server, made = new_server(choice, pool, [])
        assert made == choice
        expected = "pygrpc_native" if made == PYGRPC_NATIVE else "grpc"
        assert type(server).__module__.split(".")[0] == expected
        server.stop(None)


def test_without_pygrpc_native_grpcio_serves_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pygrpc_native", None)  # import raises ImportError
    with ThreadPoolExecutor(1) as pool, caplog.at_level(logging.WARNING):
        server, made = new_server(PYGRPC_NATIVE, pool, [])
        server.stop(None)
    assert made == GRPCIO
    assert "pygrpc-native is not installed" in caplog.text


def test_an_unknown_server_is_refused() -> None:
    refused = pytest.raises(ValueError, match="one of grpcio, pygrpc-native")
    with ThreadPoolExecutor(1) as pool, refused:
        new_server("twisted", pool, [])


@pytest.mark.parametrize("choice", CHOICES)
def test_a_port_in_use_binds_to_zero(choice: str) -> None:
    """Both servers report a port they cannot bind as 0 (grpcio answers 0, pygrpc-native
    raises): serve turns that into one clear start-up error."""
    with socket.socket() as taken, ThreadPoolExecutor(1) as pool:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server, _ = new_server(choice, pool, [("grpc.so_reuseport", 0)])
        try:
            assert bind(server, f"127.0.0.1:{port}") == 0
        finally:
            server.stop(None)


@pytest.mark.parametrize("choice", CHOICES)
def test_a_free_port_binds(choice: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        server, _ = new_server(choice, pool, [("grpc.so_reuseport", 0)])
        try:
            assert bind(server, "127.0.0.1:0") > 0
        finally:
            server.stop(None)


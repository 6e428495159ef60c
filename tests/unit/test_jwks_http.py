"""Key documents fetched over real HTTP: big ones load whole, over-cap ones are refused by name.

The IdP here is an aiohttp server on 127.0.0.1 that sends its documents in pieces (chunked, or
with a Content-Length), pausing after the first piece, the way a real IdP's bytes arrive.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from extauthz.errors import KeySourceError
from extauthz.identity.jwks import MAX_DOCUMENT_BYTES, HttpFetcher, JwksSource
from extauthz.identity.tokens import TokenRules
from extauthz.identity.verifier import TokenVerifier, Verified
from tests.unit.keys import NOW, rs_token, rsa_jwk

PIECE = 16 * 1024
CAP = f"{MAX_DOCUMENT_BYTES}-byte cap"


def big_jwks(count: int = 1000) -> bytes:
    """``count`` RSA keys with ``x5c`` chains (about 600 KB); the real key "a" comes last."""
    real = rsa_jwk("a")
    x5c = base64.b64encode(os.urandom(128)).decode()  # stands in for a certificate
    keys: list[dict[str, Any]] = [
        {**real, "kid": f"filler-{i:04d}", "use": "sig", "x5c": [x5c]} for i in range(count - 1)
    ]
    keys.append({**real, "use": "sig", "x5c": [x5c]})
    return json.dumps({"keys": keys}).encode()


def over_cap() -> bytes:
    """A valid JWKS padded to one byte over the cap: only its size is wrong with it."""
    doc = json.dumps({"keys": [rsa_jwk("a")]}).encode()
    return doc[:-1] + b" " * (MAX_DOCUMENT_BYTES + 1 - len(doc)) + b"}"


async def send_in_pieces(
    request: web.Request, body: bytes, *, length: bool, endless: bool = False
) -> web.StreamResponse:
    """Send ``body`` in 16 KB pieces, with a pause after the first (``endless``: repeat it)."""
    resp = web.StreamResponse(headers={"content-type": "application/json"})
    if length:
        resp.content_length = len(body)
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0
    try:
        while True:
            for start in range(0, len(body), PIECE):
                await resp.write(body[start : start + PIECE])
                sent += 1
                await asyncio.sleep(0.05 if sent == 1 else 0)
            if not endless or sent * PIECE > 16 * MAX_DOCUMENT_BYTES:
                break
    except ConnectionError:  # the client hung up: what a capped reader does
        return resp
    await resp.write_eof()
    return resp


@pytest.fixture
async def idp() -> AsyncIterator[TestServer]:
    big = big_jwks()
    assert 512 * 1024 < len(big) < MAX_DOCUMENT_BYTES
    huge = over_cap()

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response({"jwks_uri": str(request.url.with_path("/jwks-chunked"))})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks-chunked", partial(send_in_pieces, body=big, length=False))
    app.router.add_get("/jwks-length", partial(send_in_pieces, body=big, length=True))
    app.router.add_get("/huge-chunked", partial(send_in_pieces, body=huge, length=False))
    app.router.add_get("/huge-length", partial(send_in_pieces, body=huge, length=True))
    app.router.add_get("/endless", partial(send_in_pieces, body=big, length=False, endless=True))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def fetcher() -> AsyncIterator[HttpFetcher]:
    f = HttpFetcher(timeout=10)
    yield f
    await f.close()


@pytest.mark.parametrize("path", ["/jwks-chunked", "/jwks-length"])
async def test_big_jwks_loads_whole(idp: TestServer, fetcher: HttpFetcher, path: str) -> None:
    """A 600 KB JWKS of 1,000 keys (under the cap) is read to its end, chunked or not."""
    doc = await fetcher(str(idp.make_url(path)))
    assert len(doc["keys"]) == 1000
    assert doc["keys"][-1]["kid"] == rsa_jwk("a")["kid"]


async def test_big_jwks_behind_discovery_verifies_tokens(
    idp: TestServer, fetcher: HttpFetcher
) -> None:
    """Discovery → a big chunked JWKS → a key ring in which the last key verifies a token."""
    source = JwksSource((str(idp.make_url("/.well-known/openid-configuration")),), fetch=fetcher)
    assert await source.refresh(), source.last_error
    assert source.ring is not None and len(source.ring) == 1000
    verifier = TokenVerifier(source, TokenRules(), clock=lambda: NOW)
    assert isinstance(await verifier.verify(rs_token({"sub": "alice"})), Verified)


@pytest.mark.parametrize("path", ["/huge-length", "/huge-chunked", "/endless"])
async def test_over_cap_document_is_refused_naming_the_cap(
    idp: TestServer, fetcher: HttpFetcher, path: str
) -> None:
    """One byte over the cap (announced or not), or a stream without end, is refused as too big."""
    url = str(idp.make_url(path))
    with pytest.raises(KeySourceError, match=CAP) as caught:
        await fetcher(url)
    assert url in str(caught.value)


async def test_over_cap_error_reaches_readiness_and_the_log(
    idp: TestServer, fetcher: HttpFetcher, caplog: pytest.LogCaptureFixture
) -> None:
    """/readyz shows ``last_error``; the log line says the same."""
    source = JwksSource((str(idp.make_url("/huge-chunked")),), fetch=fetcher)
    with caplog.at_level(logging.WARNING, logger="extauthz.jwks"):
        assert not await source.refresh()
    assert source.ring is None
    assert source.last_error is not None and CAP in source.last_error
    logged = [getattr(r, "error", "") for r in caplog.records]
    assert any(CAP in e for e in logged), logged


async def test_over_cap_file_is_refused_naming_the_cap(
    tmp_path: Path, fetcher: HttpFetcher
) -> None:
    """file:// documents answer to the same cap, in the same words."""
    path = tmp_path / "jwks.json"
    path.write_bytes(over_cap())
    with pytest.raises(KeySourceError, match=CAP):
        await fetcher(f"file://{path}")
    path.write_bytes(big_jwks())
    assert len((await fetcher(f"file://{path}"))["keys"]) == 1000

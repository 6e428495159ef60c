"""An RFC 7662 token introspection endpoint for the differential test: both LiteLLM's
``Oauth2Handler.check_oauth2_token`` and our ``identity.introspection`` ask it over HTTP.

It answers what each token asks for: the (unverified) ``introspection`` claim of the JWT posted
as ``token=…``, the JSON object an opaque token ``opaque-<base64url JSON>`` (``opaque_token``)
carries, ``{"active": false}`` for anything else; it insists on the client credentials it hands
out, as a real endpoint does. Why a stand-in: the real ``oidc-provider`` (tests/oidc) refuses to
introspect JWT access tokens, and ``routing_overrides`` only ever apply to JWTs; for opaque
tokens (``enable_oauth2_auth``), the oracle needs tokens whose answer each case chooses.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from tests.unit.standins import serving

CLIENT_ID, CLIENT_SECRET = "extauthz-test", "introspection-secret"
_ENV = ("OAUTH_TOKEN_INFO_ENDPOINT", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET")


OPAQUE_PREFIX = "opaque-"


def opaque_token(answer: dict[str, Any]) -> str:
    """A non-JWT token (no dots) the stand-in answers ``answer`` for."""
    raw = base64.urlsafe_b64encode(json.dumps(answer).encode()).decode().rstrip("=")
    return OPAQUE_PREFIX + raw


def _opaque_answer(token: str) -> Any:
    raw = token[len(OPAQUE_PREFIX) :]
    try:
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        return None


def _claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return payload if isinstance(payload, dict) else {}


async def _introspect(request: web.Request) -> web.Response:
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        return web.json_response({"error": "invalid_client"}, status=401)
    form = await request.post()
    token = str(form.get("token", ""))
    answer = (
        _opaque_answer(token)
        if token.startswith(OPAQUE_PREFIX)
        else _claims(token).get("introspection")
    )
    return web.json_response(answer if isinstance(answer, dict) else {"active": False})


@asynccontextmanager
async def introspection_standin() -> AsyncIterator[dict[str, str]]:
    """Serve the endpoint; yields the environment LiteLLM reads (also set in ``os.environ``,
    where LiteLLM reads it, for the duration)."""
    app = web.Application()
    app.router.add_post("/oauth2/introspect", _introspect)
    async with serving(app) as base:
        environ = dict(
            zip(_ENV, (f"{base}/oauth2/introspect", CLIENT_ID, CLIENT_SECRET), strict=True)
        )
        saved = {k: os.environ.get(k) for k in _ENV}
        os.environ.update(environ)
        try:
            yield environ
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

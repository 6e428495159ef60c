"""URLs as /readyz, logs and messages show them: no credential a URL carries (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.errors import KeySourceError
from extauthz.identity.jwks import HttpFetcher, JwksSource, fetch_jwks
from extauthz.redact import UNPARSEABLE, redact_url, scrub_url, url_secrets

# (url, as shown, what must not show)
CASES = [
    ("https://idp.example.com/jwks.json", "https://idp.example.com/jwks.json", []),
    ("http://user:pass-1@idp:8080/jwks", "http://***@idp:8080/jwks", ["pass-1", "user"]),
    ("https://tok-2@idp/jwks", "https://***@idp/jwks", ["tok-2"]),  # a token as the user name
    ("https://u:p%40ss-3@idp/jwks", "https://***@idp/jwks", ["p%40ss-3", "p@ss-3"]),
    (
        "https://idp/.well-known/openid-configuration?p=B2C_1&token=t-4&key=k-5&api-version=2",
        "https://idp/.well-known/openid-configuration?p=B2C_1&token=***&key=***&api-version=2",
        ["t-4", "k-5"],
    ),
    (
        "https://idp/jwks?X-Amz-Signature=s%2B6&X-Amz-Credential=c-7&Access_Token=a-8&sig=s-9",
        "https://idp/jwks?X-Amz-Signature=***&X-Amz-Credential=***&Access_Token=***&sig=***",
        ["s%2B6", "s+6", "c-7", "a-8", "s-9"],
    ),
    ("https://idp/jwks#access_token=f-10", "https://idp/jwks#***", ["f-10"]),
    ("http://[::1/jwks?code=c-11", UNPARSEABLE, ["c-11", "::1"]),
    ("file:///etc/extauthz/jwks.json", "file:///etc/extauthz/jwks.json", []),
    # the state store: the role name is shown, its password is not (as before)
    ("postgresql://app:pw-12@db:5432/x", "postgresql://app:***@db:5432/x", ["pw-12"]),
    (
        "postgresql://app@db/x?sslmode=require&password=pw-13&sslpassword=pw-14",
        "postgresql://app@db/x?sslmode=require&password=***&sslpassword=***",
        ["pw-13", "pw-14"],
    ),
]


@pytest.mark.parametrize(("url", "shown", "hidden"), CASES)
def test_redact_url(url: str, shown: str, hidden: list[str]) -> None:
    assert redact_url(url) == shown
    for secret in hidden:
        assert secret not in shown
    quoted = f"GET {url} failed: 401 for url='{url}'"
    scrubbed = scrub_url(quoted, url)
    assert not [s for s in hidden if s in scrubbed], scrubbed
    for secret in url_secrets(url):  # and a text quoting only a piece of it
        assert secret not in scrub_url(f"password was {secret}!", url)


class Quoting:
    """A fetcher whose failures quote the URL they were given, as aiohttp's errors do."""

    def __init__(self, exc: type[Exception]) -> None:
        self.exc = exc

    async def __call__(self, url: str) -> dict[str, Any]:
        raise self.exc(f"cannot fetch {url!r}")


SECRET_URL = "https://client:s3cret-pw@idp.example.com/jwks.json?api_key=k3y-value"


@pytest.mark.parametrize("exc", [KeySourceError, ValueError, OSError])
async def test_key_fetch_errors_never_quote_a_secret(exc: type[Exception]) -> None:
    """What ends up in /readyz and the log: the URL redacted, whatever the failure said."""
    source = JwksSource((SECRET_URL,), fetch=Quoting(exc))
    assert not await source.refresh()
    assert source.last_error is not None
    assert "s3cret-pw" not in source.last_error and "k3y-value" not in source.last_error
    assert "idp.example.com" in source.last_error


async def test_a_discovery_documents_jwks_uri_is_redacted_too() -> None:
    discovery = "https://idp.example.com/.well-known/openid-configuration"
    jwks_uri = "https://svc:jwks-pw@keys.example.com/jwks?token=jwks-token"
    docs: dict[str, dict[str, Any]] = {discovery: {"jwks_uri": jwks_uri}, jwks_uri: {}}

    async def fetch(url: str) -> dict[str, Any]:
        return docs[url]

    with pytest.raises(KeySourceError) as info:
        await fetch_jwks(discovery, fetch)
    assert "jwks-pw" not in str(info.value) and "jwks-token" not in str(info.value)
    assert "keys.example.com" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://u:ftp-pw@idp/jwks.json",  # an unsupported scheme
        "http://u:conn-pw@127.0.0.1:1/jwks.json?token=conn-token",  # nothing listens
        "http://u:v6-pw@[::1/jwks.json",  # cannot be parsed
        "file:///nonexistent/jwks.json?token=file-token",
    ],
)
async def test_http_fetcher_errors_never_quote_a_secret(url: str) -> None:
    fetcher = HttpFetcher(timeout=2.0)
    try:
        with pytest.raises(KeySourceError) as info:
            await fetcher(url)
    finally:
        await fetcher.close()
    message = str(info.value)
    assert not [s for s in url_secrets(url) if s in message], message

"""The one HTTP client the minter uses: TLS from the system store plus an optional CA file,
a timeout on every call, no redirects, no netrc, the ``HTTPS_PROXY`` tunnel when one is set (see
``proxy.py``), and a cap on response size.

Every aiohttp failure becomes a ``TransportError`` naming the service and what to check, so callers
handle one exception type. Request bodies and headers are never part of an error message: they
carry tokens.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from extauthz.errors import ConfigError
from extauthz.mint.errors import TransportError
from extauthz.mint.proxy import ProxySettings
from extauthz.redact import scrub_url

MAX_RESPONSE_BYTES = 64 * 1024


def make_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system trust store (which honours ``SSL_CERT_FILE``), plus ``ca_file`` when given."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"extauthz.mint.ca_file: cannot load CA certificates from {ca_file!r} ({exc})"
            ) from None
    return context


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What a service answered: status, lower-cased headers and the (size-capped) body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class HttpClient:
    """A thin, strict wrapper over one ``aiohttp.ClientSession``."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        timeout_seconds: float,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        proxy: ProxySettings | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max = max_response_bytes
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=16),
                timeout=self._timeout,
                # aiohttp's own environment reading is off: it would read ~/.netrc, which could
                # attach credentials to the metadata server or STS. The proxy is ours (proxy.py).
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole answer.

        ``what`` names the service in error messages ("STS at https://…"). Raises
        ``TransportError`` for connection, TLS, timeout and size problems; any HTTP status is
        returned, not raised, because services put their error codes in the body.
        """
        session = self._session_or_new()
        target = URL(url)
        proxy = self._proxy.for_url(target) if self._proxy is not None else None
        proxy_headers = None
        if proxy is not None and self._proxy is not None and self._proxy.authorization:
            proxy_headers = {"Proxy-Authorization": self._proxy.authorization.reveal()}
        try:
            async with session.request(
                method,
                target,
                headers=headers,
                data=form,
                json=json_body,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as resp:
                if resp.content_length is not None and resp.content_length > self._max:
                    raise TransportError(
                        f"{what} answered {resp.content_length} bytes, more than the "
                        f"{self._max}-byte limit"
                    )
                body = bytearray()
                async for chunk in resp.content.iter_chunked(16 * 1024):
                    body += chunk
                    if len(body) > self._max:
                        raise TransportError(
                            f"{what} answered more than the {self._max}-byte limit"
                        )
                return HttpResponse(
                    status=resp.status,
                    headers={k.lower(): v for k, v in resp.headers.items()},
                    body=bytes(body),
                )
        except TransportError:
            raise
        except aiohttp.ClientProxyConnectionError as exc:
            raise TransportError(
                f"{what}: cannot connect to the proxy {self._proxy} "
                f"({exc.os_error.strerror or exc})"
            ) from None
        except aiohttp.ClientHttpProxyError as exc:
            raise TransportError(
                f"{what}: the proxy {self._proxy} answered CONNECT with HTTP {exc.status} "
                f"{exc.message}"
                + ("; check the user and password in it" if exc.status == 407 else "")
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError(
                f"{what}: TLS certificate not trusted ({exc.certificate_error}); add its CA with "
                "extauthz.mint.ca_file or SSL_CERT_FILE"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                f"{what}: cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
            ) from None
        except TimeoutError:
            raise TransportError(
                f"{what}: no answer within {self._timeout.total} s (extauthz.mint.timeout_seconds)"
            ) from None
        except aiohttp.ClientResponseError as exc:
            # Its str() carries the full URL, whose query may be a secret (a signed URL).
            reason = str(exc.message).splitlines()[0] if exc.message else ""
            raise TransportError(f"{what}: a malformed HTTP answer ({reason})") from None
        except aiohttp.ClientError as exc:
            # Some (InvalidURL, NonHttpUrlClientError) quote the URL: shown without its query
            # and user-info, which may be secrets (a signed URL), as ClientResponseError above.
            shown = str(target.with_user(None).with_query(None).with_fragment(None))
            text = scrub_url(str(exc).replace(str(target), shown), str(target))
            raise TransportError(f"{what}: {type(exc).__name__}: {text}") from None

"""Envoy ext_authz in HTTP-service mode ⇄ the protocol-free request view and verdict.

Why a second adapter: grpcio's per-call cost caps a Python sidecar near 10k checks/s on one
Envoy worker; Envoy's HTTP-service mode over HTTP/1.1 keep-alive costs far less per check.
Decisions come from the same ``Authorizer`` and the same ``render`` as gRPC mode, so both
modes answer alike. What Envoy 1.40 does in this mode (each point checked with a real Envoy):

* It sends the original method and request target with ``http_service.path_prefix`` in
  front, the headers listed in ``allowed_headers`` (plus Host, Content-Length, Authorization,
  ``x-envoy-auth-partial-body`` when a body is buffered, and a few ``x-envoy-*``), repeated
  headers joined by ``,``, and the buffered body with a Content-Length (never chunked).
* 200 allows: headers matched by ``allowed_upstream_headers`` overwrite the upstream's copies;
  ``x-envoy-auth-headers-to-remove`` (comma-separated) removes headers. Any other status denies
  with that status, the body and the headers matched by ``allowed_client_headers``. A 5xx
  counts as an authorizer failure: the client gets ``status_on_error`` and no body.
* ``dynamic_metadata_from_headers`` stores each matched response header under its own name in
  namespace ``envoy.filters.http.ext_authz`` (on allow and deny), so headers named ``user_id``,
  ``decision``, ... give exactly gRPC mode's metadata keys. Values keep UTF-8 as sent; leading
  and trailing blanks are trimmed (HTTP header syntax).

The HTTP/1.1 server itself is ``httpserver``; this module maps its requests to checks.
"""

from __future__ import annotations

import logging

from extauthz.envoy.httpserver import (
    HttpLimits,
    HttpServer,
    Response,
    UnsafeHeader,
    header_line,
    status_line,
)
from extauthz.envoy.responder import PARTIAL_BODY_HEADER, AuthorizerLike, Responder
from extauthz.model import (
    CLIENT_ADDRESS_HEADER,
    INTERNAL_VERDICT,
    Deny,
    Reason,
    RequestView,
    Verdict,
    deny_verdict,
)

REMOVE_HEADER = "x-envoy-auth-headers-to-remove"
DEFAULT_PATH_PREFIX = "/extauthz"
log = logging.getLogger("extauthz.http")


def encode_verdict(verdict: Verdict) -> Response:
    """A verdict as Envoy's HTTP-service protocol expects it.

    Allow: 200, identity headers (Envoy: ``allowed_upstream_headers``), removals in
    ``x-envoy-auth-headers-to-remove``. Deny: the status, JSON body and client headers
    (``allowed_client_headers``). Both: one header per metadata key, named as the key, for
    ``dynamic_metadata_from_headers``. A metadata value that cannot be a header is left out
    (metadata is informational); an unsafe identity or client header raises UnsafeHeader.
    """
    lines = [status_line(verdict.status)]
    lines.extend(header_line(k, v) for k, v in verdict.headers)
    if verdict.allowed and verdict.remove:
        lines.append(header_line(REMOVE_HEADER, ",".join(verdict.remove)))
    for key, value in verdict.metadata.items():
        try:
            lines.append(header_line(key, value))
        except UnsafeHeader:
            log.warning("metadata value left out: not a safe header value", extra={"key": key})
    body = b"" if verdict.allowed else verdict.body.encode("utf-8")
    lines.append(b"content-length: %d\r\n" % len(body))
    return Response(b"".join(lines), body)


def _fixed_deny(status: int, reason: Reason, message: str) -> Response:
    return encode_verdict(deny_verdict(Deny(status, reason, message)))


INTERNAL_DENY = encode_verdict(INTERNAL_VERDICT)


# -- requests -----------------------------------------------------------------------------------


def strip_prefix(target: str, prefix: str) -> str | None:
    """The original request target, or None when ``target`` does not carry ``prefix``.

    Strict: Envoy prepends ``path_prefix`` to a target that starts with ``/``, so anything
    else (another prefix, a bare prefix, ``/extauthzX``) is not a check this sidecar expects.
    """
    if not target.startswith(prefix):
        return None
    rest = target[len(prefix) :]
    return rest if rest.startswith("/") else None


def to_request_view(
    method: str, target: str, headers: dict[str, str], body: bytes, prefix: str
) -> RequestView | None:
    """Read a check the way gRPC mode reads a CheckRequest; None if the prefix is missing."""
    path = strip_prefix(target, prefix)
    if path is None:
        return None
    return RequestView(
        method=method,
        path=path,
        headers=headers,
        body=body,
        body_cut=headers.get(PARTIAL_BODY_HEADER, "") == "true",
        request_id=headers.get("x-request-id", ""),
        # Envoy sets it on each check (authorization_request.headers_to_add with
        # %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%, replacing any client copy): the peer
        # address gRPC mode reads from the CheckRequest's source (general_settings.allowed_ips).
        client_address=headers.get(CLIENT_ADDRESS_HEADER, ""),
    )


class AuthzHttpServer:
    """Envoy's ext_authz HTTP-service protocol on one listening socket.

    ``start`` binds; ``port`` is the bound port; ``close`` stops accepting, lets checks in
    flight finish within a grace period, then closes every connection. Never raises per
    request: anything unexpected becomes a 500 deny (Envoy turns it into ``status_on_error``).
    """

    def __init__(
        self,
        authorizer: AuthorizerLike,
        *,
        path_prefix: str = DEFAULT_PATH_PREFIX,
        limits: HttpLimits | None = None,
        allow_cache_size: int = 8192,
    ) -> None:
        if path_prefix and (not path_prefix.startswith("/") or path_prefix.endswith("/")):
            raise ValueError(f"path prefix {path_prefix!r} must start and not end with '/'")
        self.authorizer = authorizer
        self.path_prefix = path_prefix
        self.http = HttpServer(self.handle, INTERNAL_DENY, limits)
        self._responder = Responder(authorizer, encode_verdict, INTERNAL_DENY, allow_cache_size)
        self._no_prefix = _fixed_deny(
            500,
            Reason.INTERNAL,
            f"the check's path does not start with {path_prefix!r}: Envoy's "
            "http_service.path_prefix and the sidecar's path prefix must match",
        )
        self._warned_prefix = False

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def limits(self) -> HttpLimits:
        return self.http.limits

    @property
    def connections(self) -> int:
        return self.http.connections

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Bind ``host:port`` (port 0: any free port; ``reuse_port``: shared by workers)."""
        await self.http.start(host, port, reuse_port)

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; wait up to ``grace`` s for checks in flight; close all connections."""
        await self.http.close(grace)

    async def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Response:
        """One check: the request Envoy forwarded, decided and encoded. Never raises."""
        view = to_request_view(method, target, headers, body, self.path_prefix)
        if view is None:
            return self.refuse_no_prefix(target)
        return await self._responder.respond(view)

    def refuse_no_prefix(self, target: str) -> Response:
        """A check without the configured prefix: Envoy and sidecar disagree (fail closed)."""
        if not self._warned_prefix:
            self._warned_prefix = True
            log.warning(
                "check without the configured path prefix refused (logged once)",
                extra={"path_prefix": self.path_prefix, "path": target.partition("?")[0][:128]},
            )
        return self._no_prefix

    async def respond(self, view: RequestView) -> Response:
        """Decide and encode one check. Never raises."""
        return await self._responder.respond(view)


async def start_authz_http(
    authorizer: AuthorizerLike,
    host: str,
    port: int,
    *,
    path_prefix: str = DEFAULT_PATH_PREFIX,
    limits: HttpLimits | None = None,
    reuse_port: bool = False,
) -> AuthzHttpServer:
    """Serve ext_authz HTTP-service checks on ``host:port``; returns the running server."""
    server = AuthzHttpServer(authorizer, path_prefix=path_prefix, limits=limits)
    await server.start(host, port, reuse_port)
    return server

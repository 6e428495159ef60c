"""Envoy ext_authz v3 (gRPC) ⇄ the protocol-free request view and verdict.

The only module that knows CheckRequest/CheckResponse. Conversions are total: any
CheckRequest, however odd, becomes a RequestView (missing parts become empty values).

``Check`` runs on a thread of grpcio's synchronous server (its per-call cost is about two
thirds of grpc.aio's, measured in bench/), deciding there; only a check that must wait for I/O
has its rest run on the sidecar's event loop (``Responder.respond_blocking``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as ext_authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_authz_grpc
from google.rpc import code_pb2

from extauthz.envoy.responder import PARTIAL_BODY_HEADER, Responder, SplitAuthorizerLike
from extauthz.model import INTERNAL_VERDICT, RequestView, Verdict

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
log = logging.getLogger("extauthz.grpc")


def to_request_view(request: ext_authz.CheckRequest, client: bool = True) -> RequestView:
    """Read method, raw path, headers and body as Envoy sent them; with ``client``, the peer's
    address too (~0.5 µs of nested protobuf reads, so only when allowed_ips needs it)."""
    http = request.attributes.request.http
    headers: Mapping[str, str] = http.headers  # protobuf map: read in place, not copied
    if not headers and http.header_map.headers:  # encode_raw_headers mode
        headers = {}
        for h in http.header_map.headers:
            value = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
            key = h.key.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    body = http.raw_body or http.body.encode("utf-8", "surrogateescape")
    # Positional, in RequestView's field order: keywords cost a NamedTuple ~3k instructions more.
    return RequestView(
        http.method,
        http.path or headers.get(":path", ""),
        headers,
        body,
        headers.get(PARTIAL_BODY_HEADER, "") == "true",  # body_cut
        headers.get("x-request-id", "") or http.id,  # request_id
        # client_address: the downstream peer Envoy saw (a pipe or internal address: "").
        request.attributes.source.address.socket_address.address if client else "",
    )


def _set_headers(target: Any, headers: Sequence[tuple[str, str]]) -> None:
    for key, value in headers:
        # In place (no copy of nested messages); ``add()`` then a set: add's keyword path costs
        # ~0.2 µs more per header (timeit).
        option = target.add()
        option.append_action = _OVERWRITE
        header = option.header
        header.key = key
        header.value = value


def _set_metadata(response: ext_authz.CheckResponse, metadata: Mapping[str, str]) -> None:
    if metadata:
        fields = response.dynamic_metadata.fields  # Struct.update's Python type dispatch costs more
        for key, value in metadata.items():
            fields[key].string_value = value


# An allow's fixed parts by (header names, headers removed): status, ok_response, the names
# with their append action, the removals. Every new caller's allow is one of a few shapes per
# policy, and copying one in C costs less than building its messages (~10k instructions
# of an allow's ~60k). Bounded: a policy has at most 2**6 shapes.
MAX_SHAPES = 256
_shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], ext_authz.CheckResponse] = {}


def _allow_shape(verdict: Verdict) -> ext_authz.CheckResponse:
    """An allow without header values and metadata (shared: only read, never changed)."""
    names = tuple([key for key, _ in verdict.headers])
    shape = _shapes.get((names, verdict.remove))
    if shape is None:
        shape = ext_authz.CheckResponse()
        shape.status.code = code_pb2.OK
        ok = shape.ok_response
        ok.SetInParent()  # present even with nothing to set, as Envoy's own servers send it
        _set_headers(ok.headers, [(name, "") for name in names])
        ok.headers_to_remove.extend(verdict.remove)
        if len(_shapes) >= MAX_SHAPES:
            _shapes.clear()
        _shapes[(names, verdict.remove)] = shape
    return shape


def to_check_response(verdict: Verdict) -> ext_authz.CheckResponse:
    """Allow → OK status with header mutations; deny → the HTTP status, headers and JSON body."""
    response = ext_authz.CheckResponse()
    if verdict.allowed:
        response.CopyFrom(_allow_shape(verdict))  # before the metadata: CopyFrom replaces all
        headers = response.ok_response.headers  # the shape has one option per header, in order
        for option, (_, value) in zip(headers, verdict.headers, strict=True):
            option.header.value = value
        _set_metadata(response, verdict.metadata)
        return response
    _set_metadata(response, verdict.metadata)
    response.status.code = (
        code_pb2.UNAUTHENTICATED if verdict.status == 401 else code_pb2.PERMISSION_DENIED
    )
    denied = response.denied_response
    denied.status.code = verdict.status
    _set_headers(denied.headers, verdict.headers)
    denied.body = verdict.body
    return response


def encode_check_response(verdict: Verdict) -> bytes:
    """A verdict as the serialised CheckResponse that goes on the wire."""
    encoded: bytes = to_check_response(verdict).SerializeToString()
    return encoded


_INTERNAL_DENY = encode_check_response(INTERNAL_VERDICT)
_SERVICE = ext_authz.DESCRIPTOR.services_by_name["Authorization"].full_name


class AuthorizationService(ext_authz_grpc.AuthorizationServicer):  # type: ignore[misc]
    """``Authorization/Check`` on a sync server's thread: convert, decide, convert back.
    Never raises. ``loop`` runs the rest of checks that must wait (None: none may wait).

    ``Check`` answers the serialised CheckResponse: allow answers are reused, so each is
    serialised once, not per call (:func:`add_authorization_to_server` sends the bytes as
    they are)."""

    def __init__(
        self,
        authorizer: SplitAuthorizerLike[Any],
        loop: asyncio.AbstractEventLoop | None = None,
        cache_size: int = 8192,
    ) -> None:
        self._authorizer = authorizer
        self._loop = loop
        self._responder = Responder(authorizer, encode_check_response, _INTERNAL_DENY, cache_size)

    def Check(  # the gRPC method name
        self, request: ext_authz.CheckRequest, context: grpc.ServicerContext | None
    ) -> bytes:
        try:
            gate = self._authorizer.policy.gate
            view = to_request_view(request, gate.allowed_ips is not None)
        except Exception:  # a CheckRequest we cannot read is refused, never an RPC error
            view = RequestView(method="", path="", headers={})
        return self._responder.respond_blocking(view, self._authorizer, self._loop)


def add_authorization_to_server(service: AuthorizationService, server: grpc.Server) -> None:
    """Register ``service`` as the generated ``add_AuthorizationServicer_to_server`` does, but
    with no response serializer: ``Check`` already answers the CheckResponse's bytes."""
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            service.Check,
            request_deserializer=ext_authz.CheckRequest.FromString,
            response_serializer=None,  # grpcio sends bytes as they are
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_registered_method_handlers(_SERVICE, handlers)

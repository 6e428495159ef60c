"""LiteLLM's ``general_settings`` checks that come before any credential is read.

LiteLLM 1.108.7 runs, for every request and every caller (master key, JWT, virtual key, public
route alike), ``pre_db_read_auth_checks``: the client's address must be in ``allowed_ips``
(exact addresses) and the route in ``allowed_routes`` (exact paths); then a route in
``public_routes`` (exact, or ``prefix*``: a plain string prefix) is let in without a credential.
``admin_only_routes`` (exact paths) is checked later, for non-admins only (``decide.admit``).

The client address is the one Envoy reports (``RequestView.client_address``), or with
``use_x_forwarded_for`` the ``x-forwarded-for`` entry Envoy's trusted-hops rule picks: the
(N+1)-th from the right, N = ``extauthz.xff_num_trusted_hops``. Missing or unparsable: refused.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from extauthz.identity.credentials import CREDENTIAL_HEADERS
from extauthz.model import PUBLIC, Allow, Deny, Identity, Reason, RequestView

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_ADDRESS_CHARS = 64
"""Longest address text parsed or shown (an IPv6 address with a zone id fits)."""
XFF_HEADER = "x-forwarded-for"
PUBLIC_IDENTITY = Identity(kind=PUBLIC)


def parse_address(text: str) -> IPAddress | None:
    """One IP address as LiteLLM's ``allowed_ips`` lists it; None when it is not one.

    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, what a dual-stack listener reports for an
    IPv4 client) is that IPv4 address. A zone id (``fe80::1%eth0``) is part of the address.
    """
    text = text.strip()
    if not text or len(text) > MAX_ADDRESS_CHARS:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class PublicRoutes:
    """``general_settings.public_routes``: LiteLLM's ``route_in_additonal_public_routes``.

    An entry is an exact path, or ends in ``*``: then every path starting with the rest, as a
    plain string (``/api*`` matches ``/apix``, as in LiteLLM).
    """

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, entries: list[str]) -> PublicRoutes:
        return cls(
            frozenset(e for e in entries if not e.endswith("*")),
            tuple(e[:-1] for e in entries if e.endswith("*")),
        )

    def matches(self, path: str) -> bool:
        return path in self.exact or path.startswith(self.prefixes)


@dataclass(frozen=True, slots=True)
class Gate:
    """The compiled keys. The defaults check nothing (a policy without these keys)."""

    allowed_ips: frozenset[IPAddress] | None = None
    use_x_forwarded_for: bool = False
    xff_num_trusted_hops: int = 0
    allowed_routes: frozenset[str] | None = None
    public_routes: PublicRoutes | None = None
    admin_only_routes: frozenset[str] = frozenset()
    key_header: str | None = None  # litellm_key_header_name, lower-case
    enforce_user_param: bool = False  # checked on the body (policy.userparam), not here
    # Whether check_gate has anything to check: one attribute read on every request.
    before_credential: bool = field(init=False, default=False)
    # Every header a credential may come in: LiteLLM's, and key_header (policy.verdict).
    credential_headers: tuple[str, ...] = field(init=False, default=CREDENTIAL_HEADERS)

    def __post_init__(self) -> None:
        checks = (self.allowed_ips, self.allowed_routes, self.public_routes)
        object.__setattr__(self, "before_credential", any(c is not None for c in checks))
        if self.key_header is not None and self.key_header not in CREDENTIAL_HEADERS:
            object.__setattr__(self, "credential_headers", (*CREDENTIAL_HEADERS, self.key_header))


def client_address(request: RequestView, gate: Gate) -> IPAddress | str:
    """The client's address, or why there is none (a message naming what was missing)."""
    if gate.use_x_forwarded_for:
        header = request.headers.get(XFF_HEADER)
        if not header:
            return "no x-forwarded-for header (general_settings.use_x_forwarded_for)"
        wanted = gate.xff_num_trusted_hops + 1
        entries = header.rsplit(",", wanted)  # only the entries needed: a long header is cheap
        if len(entries) < wanted:
            return (
                f"x-forwarded-for has fewer than {wanted} entries "
                f"(extauthz.xff_num_trusted_hops: {gate.xff_num_trusted_hops})"
            )
        text = entries[-wanted]
    else:
        text = request.client_address
        if not text:
            return (
                "Envoy reported no client IP address (a pipe or internal listener; in HTTP mode "
                "Envoy must set x-extauthz-client-address, as envoy-http.yaml does)"
            )
    address = parse_address(text)
    if address is None:
        return f"the client address {text.strip()[:MAX_ADDRESS_CHARS]!r} is not an IP address"
    return address


def check_gate(request: RequestView, path: str, gate: Gate) -> Deny | Allow | None:
    """LiteLLM's order: allowed_ips, allowed_routes, then public routes. None: go on to the
    credential. ``path`` is the decoded path, without the query (LiteLLM's route)."""
    if gate.allowed_ips is not None:
        address = client_address(request, gate)
        if isinstance(address, str):
            return Deny(
                403,
                Reason.CLIENT_IP_NOT_ALLOWED,
                f"{address}; general_settings.allowed_ips admits only the addresses it lists",
            )
        if address not in gate.allowed_ips:
            return Deny(
                403,
                Reason.CLIENT_IP_NOT_ALLOWED,
                f"client {address} is not in general_settings.allowed_ips",
            )
    if gate.allowed_routes is not None and path not in gate.allowed_routes:
        return Deny(
            403,
            Reason.ROUTE_NOT_LISTED,
            f"route {path[:200]} is not in general_settings.allowed_routes (exact paths)",
        )
    if gate.public_routes is not None and gate.public_routes.matches(path):
        return Allow(PUBLIC_IDENTITY, None, reason=Reason.PUBLIC_ROUTE)
    return None

"""Compile LiteLLM's caller-gating ``general_settings`` keys into a ``Gate``.

``allowed_ips``, ``use_x_forwarded_for``, ``allowed_routes``, ``public_routes``,
``admin_only_routes`` and ``litellm_key_header_name``, read with LiteLLM 1.108.7's semantics
(exact addresses, exact paths, ``prefix*`` public routes). What LiteLLM would silently read as
"matches nothing" (a network in ``allowed_ips``) is an error here; what would open a model route
to callers without a credential (a public route covering an LLM API route) is an error too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from extauthz.config.schema import ExtauthzSettings, GeneralSettings
from extauthz.policy.gate import Gate, IPAddress, PublicRoutes, parse_address
from extauthz.policy.routes import ROUTE_GROUPS, compile_routes

_WHERE = "general_settings"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,100}")  # an HTTP field name (RFC 9110 token)
# Headers a decision or Envoy itself needs as they are: not a credential's place.
_NOT_A_KEY_HEADER = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "x-request-id",
        "x-forwarded-for",
        "x-litellm-model",
        "x-litellm-team-id",
        "x-extauthz-client-address",
    }
)
# Routes where the upstream runs a model: a public route here would skip every model check.
_MODEL_GROUPS = ("llm_api_routes", "passthrough_routes_wildcard", "mapped_pass_through_routes")
# Routes that manage the gateway: public is allowed (LiteLLM allows it) but worth a warning.
_MANAGEMENT_GROUPS = (
    "management_routes",
    "key_management_routes",
    "master_key_only_routes",
    "spend_tracking_routes",
    "global_spend_tracking_routes",
)


def compile_gate(
    general: GeneralSettings,
    ours: ExtauthzSettings,
    identity_headers: Iterable[str],
    problems: list[str],
    warnings: list[str],
) -> Gate:
    """The Gate of one policy; every problem and warning names its key."""
    if general.use_x_forwarded_for and general.allowed_ips is None:
        warnings.append(
            f"{_WHERE}.use_x_forwarded_for: no effect here without {_WHERE}.allowed_ips"
        )
    if ours.xff_num_trusted_hops and not general.use_x_forwarded_for:
        warnings.append(
            "extauthz.xff_num_trusted_hops: no effect without "
            f"{_WHERE}.use_x_forwarded_for: true (the address is Envoy's peer)"
        )
    return Gate(
        allowed_ips=_allowed_ips(general.allowed_ips, problems, warnings),
        use_x_forwarded_for=general.use_x_forwarded_for,
        xff_num_trusted_hops=ours.xff_num_trusted_hops,
        allowed_routes=_allowed_routes(general.allowed_routes, warnings),
        public_routes=_public_routes(general.public_routes, problems, warnings),
        admin_only_routes=frozenset(
            _exact_paths(general.admin_only_routes or [], "admin_only_routes", warnings)
        ),
        key_header=_key_header(general.litellm_key_header_name, identity_headers, problems),
        enforce_user_param=general.enforce_user_param,
    )


def _allowed_ips(
    entries: list[str] | None, problems: list[str], warnings: list[str]
) -> frozenset[IPAddress] | None:
    if entries is None:
        return None
    if not entries:
        warnings.append(f"{_WHERE}.allowed_ips: an empty list admits no client (as in LiteLLM)")
    addresses = set()
    for i, entry in enumerate(entries):
        address = parse_address(entry)
        if address is not None:
            addresses.add(address)
        elif "/" in entry:
            problems.append(
                f"{_WHERE}.allowed_ips[{i}]: {entry!r} is a network; LiteLLM compares the "
                "client's address with each entry exactly, so it would match no client. List "
                "the addresses one by one"
            )
        else:
            problems.append(
                f"{_WHERE}.allowed_ips[{i}]: {entry[:80]!r} is not an IP address "
                "(IPv4 like 10.0.0.1 or IPv6 like ::1, without port or brackets)"
            )
    return frozenset(addresses)


def _allowed_routes(entries: list[str] | None, warnings: list[str]) -> frozenset[str] | None:
    if entries is None:
        return None
    if not entries:
        warnings.append(f"{_WHERE}.allowed_routes: an empty list admits no request (as in LiteLLM)")
    return frozenset(_exact_paths(entries, "allowed_routes", warnings))


def _exact_paths(entries: list[str], key: str, warnings: list[str]) -> list[str]:
    for entry in entries:
        if not entry.startswith("/") or "*" in entry or "{" in entry:
            warnings.append(
                f"{_WHERE}.{key}: {entry!r} is compared with the request path exactly, as "
                "LiteLLM does (no route groups, wildcards or templates), so it matches "
                + ("no request" if not entry.startswith("/") else f"only the path {entry!r}")
            )
    return entries


def _covered(entry: str, groups: Iterable[str]) -> str | None:
    """A route of ``groups`` that public entry ``entry`` would admit, if any."""
    if not entry.endswith("*"):
        return entry if compile_routes(list(groups)).matches(entry) else None
    prefix = entry[:-1]
    for group in groups:
        for template in ROUTE_GROUPS[group]:
            literal = re.split(r"[{*]", template, maxsplit=1)[0]
            if literal == template:  # an exact path
                if template.startswith(prefix):
                    return template
            elif literal.startswith(prefix) or prefix.startswith(literal):
                return template
    return None


def _public_routes(
    entries: list[str] | None, problems: list[str], warnings: list[str]
) -> PublicRoutes | None:
    if entries is None:
        return None
    for i, entry in enumerate(entries):
        where = f"{_WHERE}.public_routes[{i}]"
        if "*" in entry[:-1]:
            warnings.append(
                f"{where}: {entry!r}: only a final '*' is a wildcard (as in LiteLLM); the others "
                "are literal characters"
            )
        model_route = _covered(entry, _MODEL_GROUPS)
        if model_route is not None:
            problems.append(
                f"{where}: {entry!r} covers the LLM API route {model_route}: a request there "
                "would run a model with no credential and no model check. Remove it (public "
                "routes are for health, info and UI paths)"
            )
            continue
        managed = _covered(entry, _MANAGEMENT_GROUPS)
        if managed is not None:
            warnings.append(
                f"{where}: {entry!r} covers the management route {managed}: the upstream gets "
                "such requests without any credential checked here"
            )
    return PublicRoutes.of(entries)


def _key_header(
    name: str | None, identity_headers: Iterable[str], problems: list[str]
) -> str | None:
    if name is None:
        return None
    lowered = name.strip().lower()
    where = f"{_WHERE}.litellm_key_header_name"
    if not _TOKEN.fullmatch(lowered):
        problems.append(f"{where}: {name[:80]!r} is not an HTTP header name")
        return None
    if lowered in _NOT_A_KEY_HEADER or lowered in set(identity_headers):
        problems.append(
            f"{where}: {lowered!r} carries something else the sidecar or Envoy reads (or sets); "
            "name a header of its own, e.g. x-my-litellm-key"
        )
        return None
    if "_" in lowered:
        problems.append(
            f"{where}: {lowered!r} has '_': the example Envoy configs drop such headers "
            "(headers_with_underscores_action: DROP_HEADER, against x_auth_* smuggling); use '-'"
        )
        return None
    return lowered


def describe_gate(gate: Gate) -> list[str]:
    """What each key does under this policy, one line each (``check-config``)."""
    lines = []
    if gate.allowed_ips is not None:
        source = (
            f"x-forwarded-for entry {gate.xff_num_trusted_hops + 1} from the right"
            if gate.use_x_forwarded_for
            else "the peer address Envoy reports"
        )
        shown = (
            ", ".join(sorted(str(a) for a in gate.allowed_ips)) or "(none: every client refused)"
        )
        lines.append(f"allowed_ips: {shown} (client address: {source}); every caller")
    if gate.allowed_routes is not None:
        shown = ", ".join(sorted(gate.allowed_routes)) or "(none: every request refused)"
        lines.append(f"allowed_routes (exact, every caller): {shown}")
    if gate.public_routes is not None:
        entries = sorted(gate.public_routes.exact) + [f"{p}*" for p in gate.public_routes.prefixes]
        lines.append(f"public_routes (no credential, no identity headers): {', '.join(entries)}")
    if gate.admin_only_routes:
        shown = ", ".join(sorted(gate.admin_only_routes))
        lines.append(f"admin_only_routes (exact, refused to non-admins): {shown}")
    if gate.key_header is not None:
        lines.append(
            f"credential header: {gate.key_header} ('Bearer <key>'; when present it is the only "
            "one read), removed before the upstream with the others"
        )
    if gate.enforce_user_param:
        lines.append(
            "enforce_user_param: every caller's POST to an LLM API route (not MCP) must name "
            "`user` in its body or query, else 401 user_param_missing"
        )
    return lines

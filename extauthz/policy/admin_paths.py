"""The sidecar's own admin API: its route table, and the rule for keeping a caller's credential.

The admin API (``extauthz.admin``) builds its router from ``ADMIN_API_ROUTES``, so the paths on
which the credential is kept cannot drift from the paths served. The decision core reads it here,
below the admin layer.
"""

from __future__ import annotations

ADMIN_API_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/team/new"),
    ("POST", "/team/update"),
    ("POST", "/team/delete"),
    ("POST", "/team/block"),
    ("POST", "/team/unblock"),
    ("GET", "/team/info"),
    ("GET", "/team/list"),
    ("GET", "/user/info"),
    ("GET", "/user/list"),
    ("POST", "/customer/block"),
    ("POST", "/customer/unblock"),
    ("GET", "/customer/list"),
)
"""(method, path) of every admin API call (served on --http-address, routed there by Envoy)."""

# The sidecar authenticates these calls again itself, so the caller's credential must reach it:
# it is not stripped on these paths (see ``routes_to_admin_api``).
ADMIN_API_PATHS = frozenset(path for _, path in ADMIN_API_ROUTES)

def routes_to_admin_api(target: str) -> bool:
    """Whether Envoy sends this request target (``:path`` as the client sent it) to the admin API.

    Envoy routes on the raw path, so only a path that is an admin API path byte for byte, before
    any query, goes there. A percent-escaped spelling (``/%74eam/info``) decodes to the same route
    for the policy, but Envoy sends it to the upstream, which must not get the credential.
    """
    return target.partition("?")[0] in ADMIN_API_PATHS

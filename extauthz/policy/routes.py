"""LiteLLM's route groups and a compiled, anchored matcher for allowed-route lists.

The groups are generated from the pinned LiteLLM (``litellm_routes.py``, by
scripts/gen_litellm_routes.py), with our few ``EXTENSIONS``.

LiteLLM matches a group's templates with Starlette's ``compile_path`` (``{p}`` is one segment,
``{p:path}`` any depth, everything else literal) and any other entry by string equality. We keep
the group semantics exactly, and add ``/prefix/*`` wildcards for our own entries, because an
allow-list that is only exact strings cannot name a pass-through provider.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from extauthz.policy.litellm_routes import GROUPS


class RouteError(ValueError):
    """An allowed-route entry cannot be compiled; the message says what to change."""


# Our additions to LiteLLM's groups, each for a path the sidecar itself serves: the admin API's
# end-user (customer) calls (extauthz.policy.admin_paths), which LiteLLM 1.108 keeps out of
# management_routes. Everything else is LiteLLM's table as generated.
EXTENSIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "management_routes": (
            "/customer/block",
            "/customer/unblock",
            "/customer/info",
            "/customer/list",
        ),
    }
)

ROUTE_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        name: tuple(dict.fromkeys(templates + EXTENSIONS.get(name, ())))
        for name, templates in GROUPS.items()
    }
)
"""Every LiteLLM route group and its Starlette path templates: ``litellm_routes.GROUPS``
(generated from the pinned LiteLLM by scripts/gen_litellm_routes.py) plus ``EXTENSIONS``."""

# Group templates whose trailing "/*" is a wildcard; in every other group template '*' is literal.
# (LiteLLM compiles every group template with Starlette, so its "/bedrock/*" is literal and
# names no request; here it means every path below /bedrock/, as our own "/prefix/*" entries do.)
_WILDCARD_GROUP_TEMPLATES = frozenset(GROUPS["passthrough_routes_wildcard"])

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _template_regex(template: str, *, wildcard: bool, entry: str) -> str | None:
    """Regex source for one template, or None when it has no parameter or wildcard (exact).

    ``wildcard`` selects our ``/prefix/*`` meaning of a final ``/*``; otherwise '*' is literal.
    At most one param per segment and one ``:path`` per template keep matching linear-time.
    """
    body = template
    tail = ""
    if wildcard and "*" in template:
        if not template.endswith("/*") or template.count("*") != 1:
            raise RouteError(
                f"route {entry!r}: '*' is only allowed as a final '/*' (e.g. '/bedrock/*', "
                "which matches everything below '/bedrock/')"
            )
        body = template[:-2]
        tail = "/.+"
    parts: list[str] = []
    names: set[str] = set()
    path_params = 1 if tail else 0
    has_param = bool(tail)
    i = 0
    segment_params = 0
    while i < len(body):
        ch = body[i]
        if ch == "{":
            close = body.find("}", i + 1)
            reopen = body.find("{", i + 1)
            if close < 0 or (0 <= reopen < close):
                raise RouteError(
                    f"route {entry!r}: '{{' at position {i} is not closed; "
                    "write a parameter as '{name}' or '{name:path}'"
                )
            name, _, conv = body[i + 1 : close].partition(":")
            if not _PARAM_NAME.fullmatch(name):
                raise RouteError(
                    f"route {entry!r}: parameter name {name!r} is not an identifier; "
                    "write a parameter as '{name}' or '{name:path}'"
                )
            if conv not in ("", "path"):
                raise RouteError(
                    f"route {entry!r}: convertor ':{conv}' is not supported; "
                    "use '{name}' (one segment) or '{name:path}' (any depth)"
                )
            if name in names:
                raise RouteError(f"route {entry!r}: parameter {name!r} appears twice; rename one")
            names.add(name)
            segment_params += 1
            if segment_params > 1:
                raise RouteError(
                    f"route {entry!r}: two parameters in one path segment; "
                    "put each parameter in its own segment"
                )
            if conv == "path":
                path_params += 1
                if path_params > 1:
                    raise RouteError(
                        f"route {entry!r}: more than one '{{name:path}}' or '/*'; "
                        "keep at most one any-depth part per route"
                    )
            parts.append(".+" if conv == "path" else "[^/]+")
            has_param = True
            i = close + 1
            continue
        if ch == "}":
            raise RouteError(
                f"route {entry!r}: '}}' at position {i} has no matching '{{'; "
                "write a parameter as '{name}' or '{name:path}'"
            )
        if ch == "/":
            segment_params = 0
        parts.append(re.escape(ch))
        i += 1
    if not has_param:
        return None
    return "".join(parts) + tail


def _first_segment(path: str) -> str:
    """The text between the leading '/' and the next '/', the bucket key for a path."""
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


def _literal_first_segment(template: str, *, wildcard: bool) -> str | None:
    """The template's first segment when it is plain literal text (so it can pick a bucket)."""
    first = _first_segment(template)
    if "{" in first or (wildcard and first == "*") or "/" not in template[1:]:
        return None
    return first


@dataclass(frozen=True, slots=True)
class RouteSet:
    """A compiled allowed-route list; build it with :func:`compile_routes`.

    Exact paths are a set lookup; templates are one combined regex per literal first segment
    (plus one for templates starting with a parameter), so a check costs a dict lookup and at
    most two anchored regex runs whatever the list size.
    """

    entries: tuple[str, ...]
    _exact: frozenset[str] = field(compare=False, repr=False)
    _buckets: Mapping[str, re.Pattern[str]] = field(compare=False, repr=False)
    _fallback: re.Pattern[str] | None = field(compare=False, repr=False)

    def matches(self, path: str) -> bool:
        """Whether the decoded request path is allowed by any entry (anchored, no prefixing)."""
        if path in self._exact:
            return True
        if self._buckets:
            bucket = self._buckets.get(_first_segment(path))
            if bucket is not None and bucket.fullmatch(path) is not None:
                return True
        fallback = self._fallback
        return fallback is not None and fallback.fullmatch(path) is not None

    def describe(self) -> tuple[str, ...]:
        """The entries as configured, for error messages and ``explain`` output."""
        return self.entries

    def __iter__(self) -> Iterator[str]:
        """Iterate the configured entries (group names stay group names)."""
        return iter(self.entries)

    def __len__(self) -> int:
        """How many entries were configured."""
        return len(self.entries)


def _unknown_group(entry: str) -> RouteError:
    """The error for an entry that is neither a group nor a path, with a best-guess hint."""
    names = sorted(ROUTE_GROUPS)
    hint = ""
    close = difflib.get_close_matches(entry.strip(), names, n=1, cutoff=0.6)
    if close:
        hint = f" did you mean {close[0]!r}?"
    elif "/" in entry and not entry.startswith("/"):
        hint = f" did you mean '/{entry.lstrip()}'?"
    return RouteError(
        f"unknown route group {entry!r};{hint} use one of: {', '.join(names)}, "
        "or a path starting with '/'"
    )


def compile_routes(entries: Iterable[str]) -> RouteSet:
    """Compile allowed-route entries (group names, exact paths, templates, ``/prefix/*``).

    Raises :class:`RouteError` naming the bad entry and how to fix it; call this when a policy
    is loaded so a typo fails the load instead of silently denying every request.
    """
    if isinstance(entries, str | bytes):
        raise RouteError(
            f"routes must be a list of entries, not the single string {entries!r}; "
            "write it as a one-item list"
        )
    listed = tuple(entries)
    exact: set[str] = set()
    bucketed: dict[str, list[str]] = {}
    fallback: list[str] = []
    for entry in listed:
        if not isinstance(entry, str):
            raise RouteError(f"route entry {entry!r} is not a string; write a group name or path")
        if entry == "" or entry.isspace():
            raise RouteError(
                "empty route entry; write a group name (e.g. 'openai_routes') or a path "
                "starting with '/'"
            )
        if entry.startswith("/"):
            templates: tuple[tuple[str, bool], ...] = ((entry, True),)
        elif entry in ROUTE_GROUPS:
            templates = tuple((t, t in _WILDCARD_GROUP_TEMPLATES) for t in ROUTE_GROUPS[entry])
        else:
            raise _unknown_group(entry)
        for template, wildcard in templates:
            source = _template_regex(template, wildcard=wildcard, entry=entry)
            if source is None:
                exact.add(template)
                continue
            first = _literal_first_segment(template, wildcard=wildcard)
            if first is None:
                fallback.append(source)
            else:
                bucketed.setdefault(first, []).append(source)
    return RouteSet(
        entries=listed,
        _exact=frozenset(exact),
        _buckets=MappingProxyType({k: _combine(v) for k, v in bucketed.items()}),
        _fallback=_combine(fallback) if fallback else None,
    )


def _combine(sources: list[str]) -> re.Pattern[str]:
    """One alternation of de-duplicated template regexes; callers ``fullmatch`` it."""
    unique = dict.fromkeys(sources)
    return re.compile("|".join(f"(?:{s})" for s in unique), re.DOTALL)

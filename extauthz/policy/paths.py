"""Validate and decode the request target before any route or model decision.

Route checks are only sound if we see the path exactly as LiteLLM will route it. Anything a
proxy or framework might normalise differently (dot-segments, encoded separators, empty segments,
backslashes) is refused rather than guessed at, so the path we match is the path upstream serves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MAX_PATH_LENGTH = 8192
"""Longest request target (path plus query) we accept."""

# Anything outside printable ASCII: control characters, DEL, and every non-ASCII character.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_ENCODED_NAMES = {0x2F: "'/' (%2F)", 0x5C: "'\\' (%5C)", 0x2E: "'.' (%2E)"}


@dataclass(frozen=True, slots=True)
class PathError:
    """Why the request target is refused with 400; ``message`` is safe to show the client."""

    message: str


def check_path(raw: str) -> tuple[str, str] | PathError:
    """Split Envoy's ``:path`` into (percent-decoded path, raw query), or refuse it.

    Never raises: every odd input is either a clean (path, query) or a :class:`PathError`.
    """
    if len(raw) > MAX_PATH_LENGTH:
        return PathError(
            f"the request target is longer than {MAX_PATH_LENGTH} characters; shorten it"
        )
    if not raw.startswith("/"):
        return PathError("the path must start with '/'; send an origin-form request target")
    bad = _NOT_PRINTABLE_ASCII.search(raw)
    if bad is not None:
        code = ord(bad.group())
        if code < 0x20 or code == 0x7F:
            return PathError(
                f"the request target contains a control character (0x{code:02x}); remove it"
            )
        return PathError(
            "the request target contains a raw non-ASCII character; percent-encode it as UTF-8"
        )
    if "#" in raw:
        return PathError("the request target contains '#'; fragments are never sent to a server")
    path, _, query = raw.partition("?")
    if "\\" in path:
        return PathError("the path contains a backslash; use '/' to separate segments")
    if "//" in path:
        return PathError("the path contains an empty segment ('//'); send a normalized path")
    decoded = path
    if "%" in path:
        if _BAD_ESCAPE.search(path) is not None:
            return PathError(
                "the path contains a malformed percent-escape; write '%' as '%25' and "
                "escapes as '%' plus two hex digits"
            )
        for match in _ESCAPE.finditer(path):
            byte = int(match.group(1), 16)
            name = _ENCODED_NAMES.get(byte)
            if name is not None:
                return PathError(
                    f"the path contains a percent-encoded {name}; send the path unencoded "
                    "and normalized"
                )
            if byte < 0x20 or byte == 0x7F:
                return PathError(
                    f"the path contains a percent-encoded control character (%{byte:02X}); "
                    "remove it"
                )
        try:
            decoded = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return PathError("the path's percent-escapes do not decode as UTF-8; fix the encoding")
    for segment in decoded.split("/"):
        if segment in (".", ".."):
            return PathError(
                f"the path contains a dot-segment ('/{segment}/'); send a normalized path"
            )
    return decoded, query

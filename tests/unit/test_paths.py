"""Request-target validation and decoding."""

from __future__ import annotations

import pytest

from extauthz.policy.paths import MAX_PATH_LENGTH, PathError, check_path

ACCEPTED: list[tuple[str, str, str, str]] = [
    # (id, raw, path, query)
    ("root", "/", "/", ""),
    ("plain", "/v1/chat/completions", "/v1/chat/completions", ""),
    ("query", "/v1/realtime?model=gpt-4o", "/v1/realtime", "model=gpt-4o"),
    ("empty-query", "/v1/models?", "/v1/models", ""),
    ("query-kept-raw", "/a?x=%2F%00&y=../", "/a", "x=%2F%00&y=../"),
    ("second-question-mark", "/a?b?c", "/a", "b?c"),
    ("trailing-slash", "/mcp/", "/mcp/", ""),
    ("decodes-letter", "/team/%62lock", "/team/block", ""),
    ("decodes-upper-hex", "/team/%62%4C%4f%43%4B", "/team/bLOCK", ""),
    ("decodes-space", "/v1/files/a%20b", "/v1/files/a b", ""),
    (
        "decodes-colon",
        "/v1beta/models/gemini%3AgenerateContent",
        "/v1beta/models/gemini:generateContent",
        "",
    ),
    ("decodes-percent-once", "/a/%2562", "/a/%62", ""),
    ("decodes-utf8", "/a/%C3%A9", "/a/\u00e9", ""),
    (
        "dot-inside-segment",
        "/a2a/x/.well-known/agent-card.json",
        "/a2a/x/.well-known/agent-card.json",
        "",
    ),
    ("three-dots", "/a/.../b", "/a/.../b", ""),
    ("dotted-name", "/a/..b/c.", "/a/..b/c.", ""),
    ("max-length", "/" + "a" * (MAX_PATH_LENGTH - 1), "/" + "a" * (MAX_PATH_LENGTH - 1), ""),
]


@pytest.mark.parametrize(
    ("raw", "path", "query"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted_paths(raw: str, path: str, query: str) -> None:
    """Valid targets split into the decoded path and the raw query."""
    assert check_path(raw) == (path, query)


REFUSED: list[tuple[str, str, str]] = [
    # (id, raw, fragment of the message)
    ("empty", "", "must start with '/'"),
    ("relative", "v1/chat", "must start with '/'"),
    ("asterisk-form", "*", "must start with '/'"),
    ("absolute-form", "http://x/v1", "must start with '/'"),
    ("too-long", "/" + "a" * MAX_PATH_LENGTH, "longer than 8192"),
    ("too-long-with-query", "/a?" + "b" * MAX_PATH_LENGTH, "longer than 8192"),
    ("fragment", "/v1/chat#x", "'#'"),
    ("fragment-in-query", "/v1/chat?a=#", "'#'"),
    ("backslash", "/v1\\chat", "backslash"),
    ("nul", "/v1/\x00", "control character (0x00)"),
    ("newline", "/v1/\n", "control character (0x0a)"),
    ("tab", "/v1/\tx", "control character (0x09)"),
    ("del", "/v1/\x7f", "control character (0x7f)"),
    ("control-in-query", "/v1?a=\x01", "control character (0x01)"),
    ("non-ascii", "/v1/\u00e9", "raw non-ASCII"),
    ("surrogate", "/v1/\ud800", "raw non-ASCII"),
    ("encoded-nul", "/v1/%00", "percent-encoded control character (%00)"),
    ("encoded-newline", "/v1/a%0A", "percent-encoded control character (%0A)"),
    ("encoded-del", "/v1/a%7f", "percent-encoded control character (%7F)"),
    ("dotdot", "/v1/../key/generate", "dot-segment ('/../')"),
    ("dot", "/v1/./chat", "dot-segment ('/./')"),
    ("dotdot-at-end", "/v1/chat/..", "dot-segment ('/../')"),
    ("dot-at-end", "/v1/.", "dot-segment ('/./')"),
    ("dotdot-before-query", "/v1/..?x", "dot-segment"),
    ("encoded-dot-lower", "/v1/%2e%2e/key", "percent-encoded '.'"),
    ("encoded-dot-upper", "/v1/%2E./key", "percent-encoded '.'"),
    ("encoded-dot-in-name", "/v1/a%2ejson", "percent-encoded '.'"),
    ("encoded-slash-lower", "/v1/files/a%2fb", "percent-encoded '/'"),
    ("encoded-slash-upper", "/v1/files/a%2Fb", "percent-encoded '/'"),
    ("encoded-backslash", "/v1/a%5cb", "percent-encoded '\\'"),
    ("encoded-backslash-upper", "/v1/a%5Cb", "percent-encoded '\\'"),
    ("bad-escape-letters", "/v1/%zz", "malformed percent-escape"),
    ("bad-escape-one-digit", "/v1/%4", "malformed percent-escape"),
    ("bad-escape-trailing", "/v1/%", "malformed percent-escape"),
    ("bad-escape-half", "/v1/%4g", "malformed percent-escape"),
    ("double-slash", "//v1/chat", "empty segment ('//')"),
    ("double-slash-middle", "/v1//chat", "empty segment ('//')"),
    ("double-slash-end", "/v1/chat//", "empty segment ('//')"),
    ("bad-utf8", "/v1/%ff", "do not decode as UTF-8"),
    ("truncated-utf8", "/v1/%C3", "do not decode as UTF-8"),
    ("overlong-utf8", "/v1/%C0%AF", "do not decode as UTF-8"),
]


@pytest.mark.parametrize(("raw", "fragment"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_paths(raw: str, fragment: str) -> None:
    """Each unsafe target is refused with a message naming the problem."""
    result = check_path(raw)
    assert isinstance(result, PathError), result
    assert fragment in result.message


def test_messages_tell_the_client_what_to_send() -> None:
    """A dot-segment message says to send a normalized path."""
    result = check_path("/a/../b")
    assert result == PathError("the path contains a dot-segment ('/../'); send a normalized path")


def test_path_error_is_frozen() -> None:
    """PathError is an immutable value."""
    error = PathError("x")
    with pytest.raises(AttributeError):
        error.message = "y"  # type: ignore[misc]

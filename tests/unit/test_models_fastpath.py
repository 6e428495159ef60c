"""The orjson fast path for JSON bodies decides exactly like the stdlib path it shortcuts."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz.policy import models
from extauthz.policy.models import read_models

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["model", "messages", "x", "mode"]) | st.text(max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _read(body: bytes) -> models.ModelRead:
    return read_models("/v1/chat/completions", "", "POST", "application/json", body, False)


def _stdlib_only(body: bytes, monkeypatch: pytest.MonkeyPatch) -> models.ModelRead:
    def refuse(_b: Any) -> Any:
        raise orjson.JSONDecodeError("forced", "", 0)

    with monkeypatch.context() as m:
        m.setattr("extauthz.policy.models.orjson.loads", refuse)
        return _read(body)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_fast_and_stdlib_paths_agree(value: Any, ascii_only: bool) -> None:
    """For any JSON document, both parsers give the same models or the same refusal."""
    body = json.dumps(
        {"model": value} if not isinstance(value, dict) else value, ensure_ascii=ascii_only
    ).encode()
    with pytest.MonkeyPatch.context() as mp:
        assert _read(body) == _stdlib_only(body, mp)


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "a", "seed": 123456789012345678901234567890}',  # beyond orjson's 64-bit ints
        b'{"model": NaN}',
        b'{"model": "a", "t": Infinity}',
        b"[" * 100 + b"]" * 100,
        b'{"model": "a"',
        b"\xff\xfe",
    ],
)
def test_bodies_orjson_refuses_are_judged_by_the_stdlib(body: bytes) -> None:
    """Where orjson says no, the stdlib's verdict (and message) is the answer."""
    with pytest.MonkeyPatch.context() as mp:
        assert _read(body) == _stdlib_only(body, mp)


def test_a_body_1024_deep_is_read_and_1025_deep_is_refused() -> None:
    def nested(depth: int) -> bytes:
        return b'{"model": "m", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    ok = read_models("/v1/chat/completions", "", "POST", "application/json", nested(1024), False)
    assert ok.models == ("m",) and ok.error is None
    deep = read_models("/v1/chat/completions", "", "POST", "application/json", nested(1025), False)
    assert deep.error is not None and "deeper than 1024" in deep.error


# _plain_json (the common request's shortcut) must read every body as the general path does.
_HOSTILE_BODIES = [
    b'{"model": "gpt-4o", "messages": []}',
    b'{"model": "gpt-4o", "user": "u"}',
    b'{"model": "gpt-4o", "model": "claude-haiku"}',  # duplicate key
    b'{"model": "gpt-4o", "\\u006dodel": "claude-haiku"}',  # escaped duplicate
    b'{"\\u006dodel": "claude-haiku"}',
    b'{"mod\\u0065l": "claude-haiku", "x": "\\\\"}',
    b'{"model": "gpt-4o", "x": "model"}',
    b'{"model": "a,b"}',
    b'{"model": " a , b "}',
    b'{"model": ""}',
    b'{"model": "a\\u0000b"}',
    b'{"model": "a\\u200bb"}',
    b'{"model": "\\ud800"}',
    b'{"model": "' + b"x" * 513 + b'"}',
    b'{"model": null}',
    b'{"model": 1}',
    b'{"model": ["a"]}',
    b'{"model": NaN}',
    b'{"model": "a", "n": Infinity}',
    b'{"model": "a", "seed": 123456789012345678901234567890}',
    b'{"model": "a", "target_model_names": "b,c"}',
    b'{"model": "a", "target_model_names": null}',
    b'{"model": "a", "fallbacks": ["b"]}',
    b'{"model": "a", "fallbacks": null}',
    b'{"model": "a", "context_window_fallbacks": [{"b": ["c"]}]}',
    b'{"model": "a", "content_policy_fallbacks": 3}',
    b'{"model": "a", "user_config": {"model_list": []}}',
    b'{"model": "a", "user_config": null}',
    b'{"model": "a", "specific_deployment": true}',
    b'{"model": "a", "specific_deployment": false}',
    b'{"messages": []}',
    b"{}",
    b'["model", "a"]',
    b'"model"',
    b"null",
    b"",
    b"   ",
    b'{"model": "a"',
    b'\xef\xbb\xbf{"model": "a"}',
    b'{"model": "\xff"}',
    b'{"model": "a", "x": ' + b"[" * 1023 + b"]" * 1023 + b"}",
    b'{"model": "a", "x": ' + b"[" * 1025 + b"]" * 1025 + b"}",
    b'{"model": "a", "x": "' + b"," * 30_000 + b'"}',
    b'{"model": "a", "x": [' + b"{}," * 20_001 + b"{}]}",
    b"model=a&model=b",
    b'{"model": "a"}\n',
    b' \t\r\n{"model": "a"}',
]
_PATHS = [
    "/v1/chat/completions",
    "/openai/deployments/gpt-4o/chat/completions",
    "/engines/x/completions",
    "/v1beta/models/gemini:generateContent",
    "/v1/batches",
    "/v1/threads/t/runs",
]


def _general(monkeypatch: pytest.MonkeyPatch, *args: Any) -> models.ModelRead:
    with monkeypatch.context() as m:
        m.setattr("extauthz.policy.models._plain_json", lambda _body: None)
        return read_models(*args)


@pytest.mark.parametrize("body", _HOSTILE_BODIES)
@pytest.mark.parametrize("path", _PATHS)
@pytest.mark.parametrize(
    ("content_type", "query", "header", "cut"),
    [
        ("application/json", "", None, False),
        ("application/json", "model=b", None, False),
        ("application/json", "x=1", None, False),
        ("application/json", "", "b", False),
        ("application/json", "", None, True),
        ("application/json; charset=utf-8", "", None, False),
        ("Application/JSON", "", None, False),
        (None, "", None, False),
        ("text/plain", "", None, False),
        ("application/x-www-form-urlencoded", "", None, False),
        ("multipart/form-data; boundary=x", "", None, False),
    ],
)
def test_the_plain_json_shortcut_reads_as_the_general_path(
    body: bytes,
    path: str,
    content_type: str | None,
    query: str,
    header: str | None,
    cut: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = (path, query, "POST", content_type, body, cut, header)
    expected = _general(monkeypatch, *args)
    models._PLAIN_READS[0].clear()
    models._PLAIN_READS[1].clear()
    assert read_models(*args) == expected  # a model seen for the first time
    assert read_models(*args) == expected  # and again, from the memo


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans(), st.sampled_from(["", "user", "fallbacks", "model"]))
def test_the_plain_json_shortcut_agrees_on_any_json(
    value: Any, ascii_only: bool, extra: str
) -> None:
    """Generated documents, with a second key that is plain, rare or a duplicate ``model``."""
    text = json.dumps(
        {"model": value} if not isinstance(value, dict) else value, ensure_ascii=ascii_only
    )
    if extra and text.startswith("{") and text != "{}":
        text = text[:-1] + f', "{extra}": "x"}}'
    body = text.encode()
    with pytest.MonkeyPatch.context() as mp:
        args = ("/v1/chat/completions", "", "POST", "application/json", body, False, None)
        assert read_models(*args) == _general(mp, *args)


def test_the_plain_read_memo_is_bounded() -> None:
    models._PLAIN_READS[0].clear()
    for i in range(models._PLAIN_READS_MAX + 5):
        _read(b'{"model": "m%d"}' % i)
    assert 0 < len(models._PLAIN_READS[0]) <= models._PLAIN_READS_MAX
    assert _read(b'{"model": "m1"}').models == ("m1",)

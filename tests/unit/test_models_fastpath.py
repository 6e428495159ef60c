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

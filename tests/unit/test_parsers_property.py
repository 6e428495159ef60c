"""Property tests: the request parsers never raise, whatever they are fed."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.policy.models import ModelRead, read_models
from extauthz.policy.paths import PathError, check_path
from extauthz.policy.routes import compile_routes

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ROUTES = compile_routes(
    ["llm_api_routes", "management_routes", "info_routes", "/a/{x:path}/b/{y}", "/c/{z}/*"]
)

CONTENT_TYPES = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=xYz",
            'multipart/form-data; boundary="xYz"',
            "text/plain",
            "audio/wav",
        ]
    ),
)

# Bodies that sometimes look like the formats we parse, so the parsers get past their first check.
BODIES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["model", "a", "b"]), inner, max_size=3)
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
    st.lists(
        st.tuples(
            st.sampled_from(['name="model"', 'name="a"', "name=model", ""]), st.binary(max_size=20)
        ),
        max_size=4,
    ).map(
        lambda parts: (
            b"".join(
                b"--xYz\r\nContent-Disposition: form-data; "
                + h.encode()
                + b"\r\n\r\n"
                + c
                + b"\r\n"
                for h, c in parts
            )
            + b"--xYz--\r\n"
        )
    ),
)

PATHS = st.one_of(
    st.text(max_size=120),
    st.sampled_from(["/v1/realtime", "/realtime", "/v1beta/models/g:generateContent"]),
    st.text(max_size=40).map(lambda s: "/openai/deployments/" + s + "/chat/completions"),
    st.text(max_size=40).map(lambda s: "/models/" + s + ":generateContent"),
)


@FAST
@given(st.text(max_size=300))
def test_check_path_never_raises(raw: str) -> None:
    """check_path returns a (path, query) pair or a PathError for any text."""
    result = check_path(raw)
    assert isinstance(result, PathError | tuple)


@FAST
@given(
    st.text(alphabet=st.sampled_from("/.%?#\\aZ09-_~:2fFeE5cC"), max_size=60).map(lambda s: "/" + s)
)
def test_check_path_output_has_no_dot_or_empty_segments(raw: str) -> None:
    """Whatever check_path accepts has no dot-segment and no empty inner segment."""
    result = check_path(raw)
    if isinstance(result, tuple):
        path, _ = result
        segments = path.split("/")[1:]
        assert "." not in segments and ".." not in segments
        assert "" not in segments[:-1]
        assert "\\" not in path


@FAST
@given(PATHS, st.text(max_size=60), st.text(max_size=8), CONTENT_TYPES, BODIES, st.booleans())
def test_read_models_never_raises(
    path: str, query: str, method: str, content_type: str | None, body: bytes, cut: bool
) -> None:
    """read_models returns a ModelRead for any input, and an error never comes with models."""
    result = read_models(path, query, method, content_type, body, cut)
    assert isinstance(result, ModelRead)
    if result.error is not None:
        assert result.models == ()
        assert result.cut is False
    for model in result.models:
        assert model and len(model) <= 512 and model.isprintable()


@FAST
@given(st.text(max_size=200))
def test_route_matches_never_raises(path: str) -> None:
    """RouteSet.matches returns a bool for any text."""
    assert isinstance(ROUTES.matches(path), bool)


SEGMENT = st.text(
    alphabet=st.characters(blacklist_characters="/", blacklist_categories=["Cs"]), min_size=1
)


@FAST
@given(SEGMENT)
def test_any_segment_fills_a_param(segment: str) -> None:
    """Any non-empty segment without '/' substituted into /v1/files/{file_id} matches it."""
    routes = compile_routes(["/v1/files/{file_id}", "openai_routes"])
    assert routes.matches(f"/v1/files/{segment}")
    assert not routes.matches(f"/v1/files/{segment}/x/y")

"""Reading the model(s) a request names from its path, realtime query and body."""

from __future__ import annotations

import json

import pytest

from extauthz.policy.models import (
    MAX_JSON_DEPTH,
    MAX_MODEL_LENGTH,
    ModelRead,
    media_type,
    read_models,
)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
BOUNDARY = "b0undary-XyZ"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(*parts: tuple[str, bytes], boundary: str = BOUNDARY) -> bytes:
    """A CRLF multipart body from (raw header block, content) pairs, as HTTP clients send it."""
    out = b""
    for headers, content in parts:
        out += f"--{boundary}\r\n{headers}\r\n\r\n".encode("latin-1") + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def field(name: str) -> str:
    """The header block of a plain form field."""
    return f'Content-Disposition: form-data; name="{name}"'


AUDIO_FILE = (
    'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav',
    b"RIFF\x00\x01binary",
)


def read(
    path: str = "/v1/chat/completions",
    query: str = "",
    method: str = "POST",
    content_type: str | None = JSON,
    body: bytes = b"",
    body_cut: bool = False,
    model_header: str | None = None,
) -> ModelRead:
    """read_models with chat-completion defaults."""
    return read_models(path, query, method, content_type, body, body_cut, model_header)


FOUND: list[tuple[str, dict[str, object], tuple[str, ...]]] = [
    # (id, read() kwargs, models)
    ("deployment-path", {"path": "/openai/deployments/az-gpt4/chat/completions"}, ("az-gpt4",)),
    ("deployment-path-v1", {"path": "/v1/openai/deployments/az/embeddings"}, ("az",)),
    ("engines-path", {"path": "/engines/davinci/completions"}, ("davinci",)),
    ("engines-path-v1", {"path": "/v1/engines/davinci/chat/completions"}, ("davinci",)),
    ("deployment-without-suffix", {"path": "/openai/deployments/az"}, ()),
    ("google-bare", {"path": "/models/gemini-1.5-pro:generateContent"}, ("gemini-1.5-pro",)),
    ("google-v1beta", {"path": "/v1beta/models/gemini:streamGenerateContent"}, ("gemini",)),
    ("google-v1", {"path": "/v1/models/gemini:countTokens"}, ("gemini",)),
    (
        "google-model-with-slashes",
        {"path": "/v1beta/models/publishers/google/models/gemini-pro:generateContent"},
        ("publishers/google/models/gemini-pro",),
    ),
    ("google-last-colon", {"path": "/v1beta/models/ns:gemini:generateContent"}, ("ns:gemini",)),
    (
        "google-other-action",
        {"path": "/v1beta/models/text-embedding:embedContent"},
        ("text-embedding",),
    ),
    ("model-info-not-a-use", {"path": "/v1/models/gpt-4", "method": "GET"}, ()),
    (
        "openai-retrieve-fine-tuned-not-a-use",
        {"path": "/v1/models/ft:gpt-4o:org::abcDEF", "method": "GET"},
        (),
    ),
    ("google-empty-model", {"path": "/v1beta/models/:generateContent"}, ()),
    ("google-no-action", {"path": "/v1beta/models/gemini:"}, ()),
    (
        "realtime-query",
        {"path": "/v1/realtime", "query": "model=gpt-4o-realtime"},
        ("gpt-4o-realtime",),
    ),
    ("realtime-query-bare", {"path": "/realtime", "query": "a=1&model=gpt%2D4o"}, ("gpt-4o",)),
    ("realtime-plus-is-space", {"path": "/realtime", "query": "model=a+b"}, ("a b",)),
    ("realtime-no-model", {"path": "/v1/realtime", "query": "intent=x"}, ()),
    # LiteLLM's chat, completions and embeddings handlers take ?model= and it wins over the body.
    ("query-on-chat", {"path": "/v1/chat/completions", "query": "model=x"}, ("x",)),
    ("query-encoded-name", {"query": "%6Dodel=x"}, ("x",)),
    ("query-not-strict-elsewhere", {"query": "stream&model=x"}, ("x",)),
    ("query-and-body", {"query": "model=x", "body": b'{"model":"m"}'}, ("x", "m")),
    ("query-target-models", {"path": "/v1/files", "query": "target_model_names=a,b"},
     ("a,b", "a", "b")),
    ("comma-fan-out", {"body": b'{"model":"claude-haiku, gpt-4o"}'},
     ("claude-haiku, gpt-4o", "claude-haiku", "gpt-4o")),
    ("fallbacks-strings", {"body": b'{"model":"m","fallbacks":["f1","f2"]}'}, ("m", "f1", "f2")),
    ("fallbacks-dicts", {"body": b'{"model":"m","fallbacks":[{"model":"f","messages":[]}]}'},
     ("m", "f")),
    ("fallbacks-router-style", {"body": b'{"model":"m","context_window_fallbacks":[{"m":["f"]}]}'},
     ("m", "f")),
    ("content-policy-fallbacks", {"body": b'{"model":"m","content_policy_fallbacks":["f"]}'},
     ("m", "f")),
    ("fallbacks-null", {"body": b'{"model":"m","fallbacks":null}'}, ("m",)),
    # Only a top-level repeat is ambiguous for LiteLLM; nested objects are not read for a model.
    ("nested-model-twice", {"body": b'{"model":"m","x":{"model":1,"model":2}}'}, ("m",)),
    ("target-model-names-json", {"body": b'{"target_model_names":["a","b"]}'}, ("a", "b")),
    (
        "target-model-names-form",
        {"content_type": FORM, "body": b"purpose=batch&target_model_names=a"},
        ("a",),
    ),
    ("header-model", {"path": "/v1/files", "model_header": "openai-gpt-4o"}, ("openai-gpt-4o",)),
    ("json", {"body": b'{"model": "gpt-4o", "messages": []}'}, ("gpt-4o",)),
    ("json-no-content-type", {"content_type": None, "body": b'{"model":"m"}'}, ("m",)),
    ("json-empty-content-type", {"content_type": "", "body": b'{"model":"m"}'}, ("m",)),
    (
        "json-charset",
        {"content_type": "Application/JSON; charset=utf-8", "body": b'{"model":"m"}'},
        ("m",),
    ),
    ("json-suffix", {"content_type": "application/vnd.api+json", "body": b'{"model":"m"}'}, ("m",)),
    ("json-escaped-key", {"body": b'{"mod\\u0065l": "m"}'}, ("m",)),
    ("json-no-model", {"body": b'{"messages": []}'}, ()),
    ("json-array", {"body": b'[{"model": "m"}]'}, ()),
    ("json-scalar", {"body": b'"model"'}, ()),
    ("json-nested-model-ignored", {"body": b'{"a": {"model": 5}, "b": [{"model": null}]}'}, ()),
    ("json-at-depth-limit", {"body": b'{"model":"m","x":' + b"[" * 63 + b"]" * 63 + b"}"}, ("m",)),
    ("json-big-int-ok", {"body": b'{"model":"m","n":123456789012345678901234567890}'}, ("m",)),
    ("empty-body", {"body": b""}, ()),
    ("form", {"content_type": FORM, "body": b"model=whisper-1&language=en"}, ("whisper-1",)),
    ("form-encoded", {"content_type": FORM, "body": b"model=gpt%2D4o+mini"}, ("gpt-4o mini",)),
    ("form-no-model", {"content_type": FORM, "body": b"a=1&&b=&c"}, ()),
    ("form-semicolon-elsewhere", {"content_type": FORM, "body": b"model=m&a=1;b=2"}, ("m",)),
    (
        "multipart",
        {"content_type": MULTIPART, "body": multipart(AUDIO_FILE, (field("model"), b"whisper-1"))},
        ("whisper-1",),
    ),
    (
        "multipart-quoted-boundary",
        {
            "content_type": f'multipart/form-data; boundary="{BOUNDARY}"',
            "body": multipart((field("model"), b"m")),
        },
        ("m",),
    ),
    (
        "multipart-leading-crlf",
        {"content_type": MULTIPART, "body": b"\r\n" + multipart((field("model"), b"m"))},
        ("m",),
    ),
    (
        "multipart-unquoted-name",
        {
            "content_type": MULTIPART,
            "body": multipart(("content-disposition: form-data; name=model", b"m")),
        },
        ("m",),
    ),
    (
        "multipart-not-fooled-by-file-content",
        {
            "content_type": MULTIPART,
            "body": multipart(
                (
                    'Content-Disposition: form-data; name="file"; filename="x.txt"',
                    b'--not-the-boundary\r\nContent-Disposition: form-data; name="model"'
                    b"\r\n\r\nevil\r\n",
                ),
                (field("model"), b"good"),
            ),
        },
        ("good",),
    ),
    (
        "multipart-no-model",
        {"content_type": MULTIPART, "body": multipart(AUDIO_FILE, (field("language"), b"en"))},
        (),
    ),
    (
        "multipart-epilogue-ignored",
        {"content_type": MULTIPART, "body": multipart((field("model"), b"m")) + b"trailing"},
        ("m",),
    ),
    (
        "multipart-model-7bit",
        {
            "content_type": MULTIPART,
            "body": multipart((field("model") + "\r\nContent-Transfer-Encoding: 7bit", b"m")),
        },
        ("m",),
    ),
    ("audio-body", {"content_type": "audio/wav", "body": b"RIFF\x00{"}, ()),
    ("octet-stream", {"content_type": "application/octet-stream", "body": b"\x00\x01"}, ()),
    ("text-plain-not-json", {"content_type": "text/plain", "body": b"hello model"}, ()),
    # LiteLLM JSON-parses any body whose Content-Type lacks "form", so we must read it too.
    (
        "text-plain-json-is-read",
        {"content_type": "text/plain", "body": b' \n{"model":"m"}'},
        ("m",),
    ),
    (
        "octet-stream-json-is-read",
        {"content_type": "application/octet-stream", "body": b'{"model":"m"}'},
        ("m",),
    ),
    (
        # LiteLLM 1.108 compares the lower-cased media type: this is a form (no model field).
        "uppercase-form-is-a-form",
        {"content_type": "APPLICATION/X-WWW-FORM-URLENCODED", "body": b'{"model":"m"}'},
        (),
    ),
    (
        # Only the two form media types are forms; "form" in a parameter is JSON to LiteLLM.
        "form-word-in-parameter-is-json",
        {"content_type": "text/plain; x=form", "body": b'{"model":"m"}'},
        ("m",),
    ),
    (
        "path-then-body-deduplicated",
        {"path": "/openai/deployments/m/chat/completions", "body": b'{"model":"m"}'},
        ("m",),
    ),
    (
        "path-then-body-in-order",
        {"path": "/engines/a/chat/completions", "body": b'{"model":"b"}'},
        ("a", "b"),
    ),
    (
        "model-at-max-length",
        {"body": json.dumps({"model": "m" * MAX_MODEL_LENGTH}).encode()},
        ("m" * MAX_MODEL_LENGTH,),
    ),
    ("unicode-model", {"body": '{"model":"mod\u00e8le"}'.encode()}, ("mod\u00e8le",)),
]


@pytest.mark.parametrize(("kwargs", "models"), [c[1:] for c in FOUND], ids=[c[0] for c in FOUND])
def test_models_found(kwargs: dict[str, object], models: tuple[str, ...]) -> None:
    """Each source yields its model(s), with no error and no cut."""
    assert read(**kwargs) == ModelRead(models)  # type: ignore[arg-type]


ERRORS: list[tuple[str, dict[str, object], str]] = [
    # (id, read() kwargs, fragment of the error)
    ("query-twice", {"path": "/v1/realtime", "query": "model=a&model=b"}, "names `model` twice"),
    ("query-empty", {"path": "/v1/realtime", "query": "model="}, "`model` is empty"),
    ("query-malformed", {"path": "/realtime", "query": "model=a&&x"}, "query string is malformed"),
    ("query-bare-field", {"path": "/realtime", "query": "model"}, "query string is malformed"),
    ("query-bad-utf8", {"path": "/realtime", "query": "model=%ff"}, "not valid UTF-8"),
    ("query-control", {"path": "/realtime", "query": "model=a%00"}, "control or invisible"),
    (
        "json-twice",
        {"body": b'{"model":"a","model":"b"}'},
        "the body names `model` twice; send it once",
    ),
    ("json-twice-same", {"body": b'{"model":"a","model":"a"}'}, "names `model` twice"),
    ("json-twice-apart", {"body": b'{"model":"a","x":{},"model":"b"}'}, "names `model` twice"),
    ("json-twice-escaped", {"body": b'{"mod\\u0065l":"a","model":"b"}'}, "names `model` twice"),
    ("json-twice-all-escaped", {"body": b'{"\\u006dodel":"a","\\u006Dodel":"b"}'}, "twice"),
    ("json-invalid", {"body": b'{"model": '}, "the body is not valid JSON ("),
    ("json-invalid-suffix", {"body": b"not json"}, "send a JSON object"),
    ("json-trailing-garbage", {"body": b'{"model":"a"} x'}, "not valid JSON"),
    ("json-not-utf8", {"body": b'{"model":"\xff"}'}, "not valid JSON (not UTF-8)"),
    ("json-utf16", {"body": '{"model":"a"}'.encode("utf-16")}, "not valid JSON"),
    ("json-bom", {"body": b'\xef\xbb\xbf{"model":"a"}'}, "not valid JSON"),
    ("json-nan", {"body": b'{"model":"a","t":NaN}'}, "NaN is not a JSON value"),
    ("json-infinity", {"body": b'{"model":"a","t":Infinity}'}, "Infinity is not a JSON value"),
    ("json-minus-infinity", {"body": b'{"t":-Infinity}'}, "-Infinity is not a JSON value"),
    ("json-huge-int", {"body": b'{"n":' + b"9" * 5000 + b"}"}, "a number is too long"),
    ("json-model-null", {"body": b'{"model":null}'}, "`model` must be a string"),
    ("json-model-number", {"body": b'{"model":4}'}, "`model` must be a string"),
    ("json-model-list", {"body": b'{"model":["a"]}'}, "`model` must be a string"),
    ("json-model-object", {"body": b'{"model":{"a":1}}'}, "`model` must be a string"),
    ("json-model-bool", {"body": b'{"model":true}'}, "`model` must be a string"),
    ("json-model-empty", {"body": b'{"model":""}'}, "`model` is empty; name a model"),
    ("json-model-too-long", {"body": json.dumps({"model": "m" * 513}).encode()}, "longer than 512"),
    ("json-model-control", {"body": b'{"model":"a\\u0001"}'}, "control or invisible"),
    ("json-model-newline", {"body": b'{"model":"a\\n"}'}, "control or invisible"),
    ("json-model-nbsp", {"body": b'{"model":"a\\u00a0"}'}, "control or invisible"),
    ("json-model-lone-surrogate", {"body": b'{"model":"a\\ud800"}'}, "not valid UTF-8"),
    (
        "json-too-deep",
        {"body": b'{"model":"m","x":' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}"},
        "deeper than 1024 levels",
    ),
    ("json-recursion", {"body": b"[" * 15_000 + b"]" * 15_000}, "deeper than 1024 levels"),
    (
        "json-recursion-objects",
        {"body": b'{"a":' * 15_000 + b"1" + b"}" * 15_000},
        "deeper than 1024",
    ),
    (
        "form-twice",
        {"content_type": FORM, "body": b"model=a&model=b"},
        "the form body names `model` twice",
    ),
    ("form-empty", {"content_type": FORM, "body": b"model=&x=1"}, "`model` is empty"),
    ("form-bare-field", {"content_type": FORM, "body": b"x=1&model"}, "`model` is empty"),
    ("form-non-ascii", {"content_type": FORM, "body": "model=\u00e9".encode()}, "raw non-ASCII"),
    ("form-bad-utf8", {"content_type": FORM, "body": b"model=%ff"}, "not valid UTF-8"),
    ("form-too-many", {"content_type": FORM, "body": b"a=1&" * 1001}, "more than 1000 fields"),
    ("form-semicolon", {"content_type": FORM, "body": b"a=1;model=b"}, "ambiguous around ';'"),
    (
        "form-semicolon-in-model",
        {"content_type": FORM, "body": b"model=a;b"},
        "ambiguous around ';'",
    ),
    ("form-too-long", {"content_type": FORM, "body": b"model=" + b"m" * 513}, "longer than 512"),
    (
        "multipart-no-boundary",
        {"content_type": "multipart/form-data", "body": b"x"},
        "multipart body without a valid boundary",
    ),
    (
        "multipart-empty-boundary",
        {"content_type": "multipart/form-data; boundary=", "body": b"x"},
        "without a valid boundary",
    ),
    (
        "multipart-long-boundary",
        {"content_type": "multipart/form-data; boundary=" + "a" * 71, "body": b"x"},
        "without a valid boundary",
    ),
    (
        "multipart-bad-boundary-char",
        {"content_type": 'multipart/form-data; boundary="a\\"b"', "body": b"x"},
        "without a valid boundary",
    ),
    (
        "multipart-two-boundaries",
        {"content_type": MULTIPART + "; boundary=other", "body": b"x"},
        "without a valid boundary",
    ),
    (
        "multipart-garbled-params",
        {"content_type": "multipart/form-data; boundary=a; ;;", "body": b"x"},
        "without a valid boundary",
    ),
    (
        "multipart-twice",
        {
            "content_type": MULTIPART,
            "body": multipart((field("model"), b"a"), (field("model"), b"b")),
        },
        "the multipart body names `model` twice",
    ),
    (
        "multipart-model-file",
        {
            "content_type": MULTIPART,
            "body": multipart(
                ('Content-Disposition: form-data; name="model"; filename="m.txt"', b"m")
            ),
        },
        "`model` field is a file",
    ),
    (
        "multipart-model-base64",
        {
            "content_type": MULTIPART,
            "body": multipart((field("model") + "\r\nContent-Transfer-Encoding: base64", b"bQ==")),
        },
        "transfer-encoded",
    ),
    (
        "multipart-model-too-long",
        {"content_type": MULTIPART, "body": multipart((field("model"), b"m" * 513))},
        "longer than 512",
    ),
    (
        "multipart-model-not-utf8",
        {"content_type": MULTIPART, "body": multipart((field("model"), b"\xff"))},
        "not valid UTF-8",
    ),
    (
        "multipart-model-empty",
        {"content_type": MULTIPART, "body": multipart((field("model"), b""))},
        "`model` is empty",
    ),
    (
        "multipart-model-control",
        {"content_type": MULTIPART, "body": multipart((field("model"), b"m\r\n"))},
        "control or invisible",
    ),
    (
        "multipart-no-start",
        {"content_type": MULTIPART, "body": b"preamble\r\n" + multipart((field("a"), b"1"))},
        "does not start with its boundary",
    ),
    (
        "multipart-not-multipart",
        {"content_type": MULTIPART, "body": b'{"model":"m"}'},
        "does not start with its boundary",
    ),
    (
        "multipart-no-close",
        {
            "content_type": MULTIPART,
            "body": multipart((field("model"), b"m"))[: -len(BOUNDARY) - 6],
        },
        "no closing boundary",
    ),
    (
        "multipart-ends-at-boundary",
        {"content_type": MULTIPART, "body": f"--{BOUNDARY}".encode()},
        "no closing boundary",
    ),
    (
        "multipart-junk-after-boundary",
        {"content_type": MULTIPART, "body": f"--{BOUNDARY}x\r\n".encode()},
        "text after a boundary",
    ),
    (
        "multipart-headers-never-end",
        {
            "content_type": MULTIPART,
            "body": f"--{BOUNDARY}\r\n{field('model')}\r\n--{BOUNDARY}--".encode(),
        },
        "headers do not end",
    ),
    (
        "multipart-no-disposition",
        {"content_type": MULTIPART, "body": multipart(("Content-Type: text/plain", b"m"))},
        "no readable Content-Disposition",
    ),
    (
        "multipart-no-headers",
        {"content_type": MULTIPART, "body": f"--{BOUNDARY}\r\n\r\nm\r\n--{BOUNDARY}--".encode()},
        "no readable Content-Disposition",
    ),
    (
        "multipart-bad-disposition",
        {
            "content_type": MULTIPART,
            "body": multipart(('Content-Disposition: form-data; name="mo"del"', b"m")),
        },
        "no readable Content-Disposition",
    ),
    (
        "multipart-encoded-name",
        {
            "content_type": MULTIPART,
            "body": multipart(("Content-Disposition: form-data; name*=UTF-8''model", b"m")),
        },
        "encoded part name",
    ),
    (
        "multipart-two-names",
        {
            "content_type": MULTIPART,
            "body": multipart(('Content-Disposition: form-data; name="a"; name="model"', b"m")),
        },
        "exactly one name",
    ),
    (
        "multipart-no-name",
        {"content_type": MULTIPART, "body": multipart(("Content-Disposition: form-data", b"m"))},
        "exactly one name",
    ),
    (
        "multipart-header-without-colon",
        {"content_type": MULTIPART, "body": multipart((field("model") + "\r\nbroken", b"m"))},
        "invalid header line",
    ),
    (
        "multipart-folded-header",
        {"content_type": MULTIPART, "body": multipart((field("model") + "\r\n x: y", b"m"))},
        "invalid header line",
    ),
    (
        "multipart-repeated-disposition",
        {
            "content_type": MULTIPART,
            "body": multipart((field("x") + "\r\n" + field("model"), b"m")),
        },
        "repeats its content-disposition header",
    ),
    (
        "multipart-too-many-parts",
        {"content_type": MULTIPART, "body": multipart(*[(field("a"), b"1")] * 1001)},
        "more than 1000 parts",
    ),
    (
        "sniffed-json-invalid",
        {"content_type": "text/plain", "body": b"{not json"},
        "not valid JSON",
    ),
    ("sniffed-json-nan", {"content_type": "text/plain", "body": b'{"model":"a","x":NaN}'}, "NaN"),
    (
        "path-model-too-long",
        {"path": "/engines/" + "m" * 513 + "/completions"},
        "longer than 512",
    ),
    ("path-model-nbsp", {"path": "/engines/a\u00a0/completions"}, "control or invisible"),
]


@pytest.mark.parametrize(
    ("kwargs", "fragment"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_model_errors(kwargs: dict[str, object], fragment: str) -> None:
    """Each unreadable or ambiguous model source is a 400 error naming the problem."""
    result = read(**kwargs)  # type: ignore[arg-type]
    assert result.error is not None, result
    assert fragment in result.error
    assert result.models == ()
    assert result.cut is False


def test_invalid_json_message_has_position() -> None:
    """The invalid-JSON message tells the client where parsing failed."""
    result = read(body=b'{"model": }')
    assert result.error == (
        "the body is not valid JSON (Expecting value at line 1 column 11); send a JSON object"
    )


CUT: list[tuple[str, dict[str, object], ModelRead]] = [
    # (id, read() kwargs with body_cut=True, expected)
    ("json", {"body": b'{"model":"a"'}, ModelRead((), cut=True)),
    ("json-no-content-type", {"content_type": None, "body": b"{"}, ModelRead((), cut=True)),
    ("json-empty-body", {"body": b""}, ModelRead((), cut=True)),
    ("form", {"content_type": FORM, "body": b"model=a&"}, ModelRead((), cut=True)),
    ("multipart", {"content_type": MULTIPART, "body": b"--x"}, ModelRead((), cut=True)),
    # LiteLLM reads any non-form body as JSON, so blanks then JSON under any label is a model.
    ("audio-cut", {"content_type": "audio/wav", "body": b"RIFF"}, ModelRead((), cut=True)),
    ("blanks-cut", {"content_type": "text/plain", "body": b" " * 64}, ModelRead((), cut=True)),
    (
        "octet-stream-cut",
        {"content_type": "application/octet-stream", "body": b"\n" * 64},
        ModelRead((), cut=True),
    ),
    (
        "sniffed-json-cut",
        {"content_type": "text/plain", "body": b'{"model"'},
        ModelRead((), cut=True),
    ),
    (
        "path-model-kept",
        {"path": "/openai/deployments/az/chat/completions", "body": b"{"},
        ModelRead(("az",), cut=True),
    ),
    (
        "query-model-kept",
        {"path": "/v1/realtime", "query": "model=rt", "body": b"{"},
        ModelRead(("rt",), cut=True),
    ),
    ("body-not-parsed", {"body": b'{"model":"a","model":"b"}'}, ModelRead((), cut=True)),
    (
        "path-error-wins",
        {"path": "/v1/realtime", "query": "model=a&model=b", "body": b"{"},
        ModelRead((), error="the query names `model` twice; send it once"),
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), [c[1:] for c in CUT], ids=[c[0] for c in CUT])
def test_cut_bodies_are_not_parsed(kwargs: dict[str, object], expected: ModelRead) -> None:
    """A cut body is never parsed; cut is set only when we would have parsed that body."""
    assert read(body_cut=True, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["GET", "get", "HEAD", "DELETE", "OPTIONS"])
def test_google_action_path_not_read_for_non_post_methods(method: str) -> None:
    """A ':action' path is not a model use for read-only methods (OpenAI model ids contain ':')."""
    assert read(path="/v1beta/models/gemini:generateContent", method=method) == ModelRead(())


MEDIA_TYPES = [
    (None, ""),
    ("", ""),
    ("application/json", "application/json"),
    ("Application/JSON; charset=UTF-8", "application/json"),
    ("  multipart/form-data ; boundary=x", "multipart/form-data"),
    (";x", ""),
]


@pytest.mark.parametrize(("header", "expected"), MEDIA_TYPES, ids=[repr(h) for h, _ in MEDIA_TYPES])
def test_media_type(header: str | None, expected: str) -> None:
    """media_type lower-cases and drops parameters."""
    assert media_type(header) == expected

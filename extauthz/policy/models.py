"""Read every model a request names, the way LiteLLM (FastAPI/Starlette) will read it.

A model check is only as good as the model we see, so each reader refuses input that two
parsers could read differently (duplicate ``model`` keys, ``;``-separated forms, encoded
multipart fields, absurd nesting) instead of picking one reading and hoping upstream agrees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson

MAX_MODEL_LENGTH = 512
"""Longest model name we accept (characters; bytes for a multipart field)."""

MAX_JSON_DEPTH = 1024
"""Deepest JSON nesting read (orjson's own limit, which LiteLLM parses with); the stdlib path
refuses deeper bodies through its recursion guard. Neither walks the parsed value again."""

MAX_FORM_FIELDS = 1000
"""Most urlencoded fields or multipart parts we read (Starlette's own default cap)."""

MAX_JSON_CONTAINERS = 20_000
"""Most JSON objects and arrays (``{`` and ``[`` bytes) in a body we parse. A chat body has a
few per message; 8 MiB of ``{},{},...`` has millions and would hold the event loop (and every
other caller's check) for seconds. Over it, the body's models are unknown (413 when they matter)."""

MAX_JSON_ITEMS = 250_000
"""Most JSON values (``,`` bytes, strings' commas included) in a body we parse: 8 MiB of
``1,1,1,...`` is four million integers, ~130 ms of parsing on the event loop."""

_REALTIME_PATHS = frozenset({"/realtime", "/v1/realtime"})
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
_MULTIPART = "multipart/form-data"
# Starlette parses only these two as forms (LiteLLM compares the exact media type).
_FORMS = frozenset({_FORM, _MULTIPART})
# Query, form and body fields that name a model LiteLLM acts on (target_model_names: managed
# files and batches are created on those deployments).
_MODEL_FIELDS = ("model", "target_model_names")
# Request fields that add models LiteLLM's router may call (client-side fallbacks).
_FALLBACK_FIELDS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
# POST .../batches creates a batch (not .../batches/{id}/cancel).
_BATCH_CREATE = re.compile(r"/batches/?$")
# POST .../threads/{id}/runs and .../threads/runs start an assistant run.
_RUN_PATH = re.compile(r"/threads/(?:[^/]+/)?runs/?$")

# Azure-style deployments and legacy engines name the model in the path, as a Starlette
# ``{model:path}`` (slashes allowed): tried in LiteLLM's route order, greedy, as Starlette does.
_DEPLOYMENT_ROUTES = tuple(
    re.compile(rf"(?:/v1)?/(?:openai/deployments|engines)/(.*)/{suffix}", re.DOTALL)
    for suffix in (
        "chat/completions",
        "completions",
        "embeddings",
        "images/generations",
        "images/edits",
    )
)
# Any other path below a deployment: its first segment (no LiteLLM route; checked anyway).
_DEPLOYMENT_PATH = re.compile(r"(?:/v1)?/(?:openai/deployments|engines)/([^/]+)/")
# Google: /models/{model}:action; greedy '.+' makes the model end at the LAST ':'.
_GOOGLE_PATH = re.compile(r"(?:/v1beta|/v1)?/models/(.+):[A-Za-z][A-Za-z0-9]*", re.DOTALL)
# Google actions are all POST; a GET/DELETE on /v1/models/{id} is OpenAI's retrieve/delete,
# whose fine-tuned ids ("ft:gpt-4o:org::abc") contain ':' and must not be read as a model use.
_NO_ACTION_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})

# LiteLLM JSON-parses any body whose Content-Type header lacks "form"; only an object names a model.
_JSON_OBJECT_START = re.compile(rb"[ \t\r\n]*\{")

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\r\n]|\\["\\])*"'
_HEADER_PARAM = re.compile(rf"[ \t]*;[ \t]*({_TCHARS})[ \t]*=[ \t]*({_TCHARS}|{_QUOTED})[ \t]*")
_HEADER_VALUE_START = re.compile(rf"[ \t]*({_TCHARS}(?:/{_TCHARS})?)[ \t]*")
_TRAILING_SEMICOLON = re.compile(r"[ \t]*;?[ \t]*")
_HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 2046 boundary: 1-70 bchars, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})


class ModelRead(NamedTuple):
    """What :func:`read_models` found.

    ``models``: every model the request names (path, realtime query, body), de-duplicated, in
    order found. ``error``: a client-facing 400 message when the model cannot be read safely.
    ``cut``: Envoy cut the body, so its models are unknown (LiteLLM parses every body type).
    ``complex``: the body holds more JSON objects and arrays than we parse, so its models are
    unknown (reading it would stall every other check).
    ``steering``: a client-facing message when the request can make the upstream run a model it
    does not name where we can read it (batches, client model lists); refused for a caller whose
    role has a model list.
    ``user``: the request data LiteLLM builds (the body's fields, the query's added) has a
    ``user`` key (general_settings.enforce_user_param); False when unknown (cut, complex).
    """

    models: tuple[str, ...]
    error: str | None = None
    cut: bool = False
    complex: bool = False
    steering: str | None = None
    user: bool = False


class _Refused(Exception):
    """Internal: a reader found input it will not interpret; ``args[0]`` is the client message."""


def media_type(content_type: str | None) -> str:
    """The lower-cased media type without parameters ("" when the header is absent)."""
    if not content_type:
        return ""
    if content_type == _JSON:  # what nearly every request sends: no parsing needed
        return _JSON
    return content_type.split(";", 1)[0].strip().lower()


def _is_json_type(media: str) -> bool:
    """JSON by declaration: no Content-Type, application/json, or any ``*/*+json``."""
    return media in ("", _JSON) or ("/" in media and media.endswith("+json"))


def read_models(
    path: str,
    query: str,
    method: str,
    content_type: str | None,
    body: bytes,
    body_cut: bool,
    model_header: str | None = None,
) -> ModelRead:
    """Every model the request names where LiteLLM reads one; never raises.

    ``path`` is the decoded path from ``check_path``, ``query`` the raw query string and
    ``model_header`` the ``x-litellm-model`` header. Sources, as LiteLLM 1.108 reads them: the
    path (Azure deployments, engines, Google ``:action``), the query's ``model`` (chat,
    completions, embeddings, realtime, files, batches, evals take it and it wins over the body),
    the ``x-litellm-model`` header (files, batches, evals, skills), and the body: ``model``,
    ``target_model_names`` and the request's own ``fallbacks``, ``context_window_fallbacks`` and
    ``content_policy_fallbacks``. A comma-separated model is also read as its parts (LiteLLM fans
    a chat request out to each).
    """
    found: list[str] = []
    user = False
    try:
        if (  # the common request: nothing but a JSON body can name a model (see _plain_json)
            content_type == _JSON
            and not query
            and model_header is None
            and not body_cut
            and not _path_may_name_model(path)
            and "/batches" not in path  # _steering_route's batch creation
        ):
            plain = _plain_json(body)
            if plain is not None:
                return plain
        _add(found, _path_models(path, method))
        if query:
            _add(found, _query_models(query, strict=path in _REALTIME_PATHS))
            user = _query_has_user(query)
        if model_header is not None:
            _add(found, [model_header])
        steering = _steering_route(path, method)
        if body_cut:
            # LiteLLM parses every body that is not a form as JSON (whatever its label), and a
            # form for its fields: a cut body can always hide a model.
            return ModelRead(tuple(found), cut=True, steering=steering, user=user)
        if body:
            media = media_type(content_type)
            if media in _FORMS:
                form_models, form_user = (
                    _form_models(body)
                    if media == _FORM
                    else _multipart_models(content_type or "", body)
                )
                _add(found, form_models)
                user = user or form_user
            elif _is_json_type(media) or _JSON_OBJECT_START.match(body) is not None:
                # LiteLLM reads any body whose media type is not a form as JSON: a `text/plain`
                # or `application/octet-stream` label does not stop it (only an object names
                # a model; other JSON, or no JSON, makes LiteLLM answer 400 itself).
                parsed = _json_models(body)
                if parsed is None:
                    return ModelRead(tuple(found), complex=True, steering=steering, user=user)
                models, body_steering, body_user = parsed
                _add(found, models)
                user = user or body_user
                steering = steering or body_steering
        if steering is None and not found and _RUN_PATH.search(path) and method.upper() == "POST":
            steering = (
                "a run without `model` uses the assistant's model, which the authorization "
                "service cannot see; send `model` in the body"
            )
    except _Refused as refused:
        return ModelRead((), error=str(refused.args[0]))
    return ModelRead(tuple(found), steering=steering, user=user)


_RARE_KEYS = frozenset(
    ("target_model_names", *_FALLBACK_FIELDS, "user_config", "specific_deployment")
)
"""Body keys that name or steer models beyond ``model``: any of them takes the general path."""


_PLAIN_READS_MAX = 1024
_PLAIN_READS: tuple[dict[str, ModelRead], dict[str, ModelRead]] = ({}, {})
"""``_plain_json``'s answers by model name, without and with a ``user`` key: a repeated model
is checked once and its answer reused (immutable). Each is cleared when full."""


def _plain_json(body: bytes) -> ModelRead | None:
    """The common request's read, or None: the general path decides.

    ``read_models`` checked the request has no query, model header, cut, nor model-naming or
    steering path, and is labelled application/json. This answers only a small object body
    whose one top-level ``model`` (spelled once, no escape that could spell it) is a string
    without commas, with no rare key; anything else returns None so ``_json_models`` and
    ``_add`` judge it (and word any refusal but ``_check_model``'s, raised here as there).
    """
    if len(body) > MAX_JSON_CONTAINERS:
        return None  # the general path counts its containers first
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict or not _RARE_KEYS.isdisjoint(value):
        return None
    model = value.get("model")
    if type(model) is not str or _may_repeat_model(body):
        return None
    reads = _PLAIN_READS["user" in value]
    read = reads.get(model)
    if read is None:
        if "," in model:
            return None  # fanned out into its parts by _add
        _check_model(model)
        read = ModelRead((model,), user="user" in value)
        if len(reads) >= _PLAIN_READS_MAX:
            reads.clear()
        reads[model] = read
    return read


def _path_may_name_model(path: str) -> bool:
    """Whether ``_path_models`` could find a model in ``path`` (the one test both the
    shortcut and the general reader use, so a new path form cannot bypass the shortcut)."""
    return "/deployments/" in path or "/engines/" in path or "/models/" in path


def _may_repeat_model(body: bytes) -> bool:
    """Whether a JSON body could name ``model`` twice at its top level: the literal appears
    twice, or an escape spells one of its letters (m, o, d, e and l are all \\u006X; other
    escapes, non-ASCII text, cannot). False is certain; True asks for a full check."""
    first = body.find(b'"model"')
    return (first >= 0 and body.find(b'"model"', first + 1) >= 0) or (
        # find, not ``in``: bytes' ``in`` first tries the needle as an int (a TypeError).
        body.find(b"\\") >= 0 and body.find(b"\\u006") >= 0
    )


def _steering_route(path: str, method: str) -> str | None:
    """Refusal message for routes whose models are not in the request (for restricted roles)."""
    if method.upper() == "POST" and _BATCH_CREATE.search(path) is not None:
        return (
            "a batch runs the models named in its input file, which the authorization service "
            "cannot see; this role has a model list, so batches are refused"
        )
    return None


def _add(found: list[str], models: Iterable[str]) -> None:
    """Append models not seen yet, after checking each is a sane model name.

    A name with a comma adds its parts too: LiteLLM fans ``"a,b"`` out to ``a`` and ``b``.
    """
    for model in models:
        names = [model]
        if "," in model:
            names += [part.strip() for part in model.split(",")]
        for name in names:
            _check_model(name)
            if name not in found:
                found.append(name)


def _check_model(model: str) -> None:
    """Refuse model names no real deployment has and that could confuse logs or matching."""
    if model == "":
        raise _Refused("`model` is empty; name a model")
    if len(model) > MAX_MODEL_LENGTH:
        raise _Refused(f"the model name is longer than {MAX_MODEL_LENGTH} characters")
    try:
        model.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("the model name is not valid UTF-8; fix its encoding") from None
    if not model.isprintable():
        raise _Refused("the model name contains control or invisible characters; remove them")


def _path_models(path: str, method: str) -> list[str]:
    """Models named in the path: Azure deployments, legacy engines and Google ``:action`` URLs."""
    if not _path_may_name_model(path):
        return []  # neither pattern can match: skip both regexes (most requests)
    for route in _DEPLOYMENT_ROUTES:
        match = route.fullmatch(path)
        if match is not None:
            return [match.group(1)]
    match = _DEPLOYMENT_PATH.match(path)
    if match is not None:
        return [match.group(1)]
    if method.upper() not in _NO_ACTION_METHODS:
        match = _GOOGLE_PATH.fullmatch(path)
        if match is not None:
            return [match.group(1)]
    return []


def _query_models(query: str, strict: bool) -> list[str]:
    """``model`` and ``target_model_names`` from the query string, each at most once.

    Starlette decodes the query for every route, so any route's ``model`` counts (FastAPI binds
    it on chat, completions, embeddings; files, batches and evals read it by hand). ``strict``
    (realtime) also refuses a malformed query.
    """
    if not strict and "model" not in query and "%" not in query:
        return []  # neither name can be in it, even percent-encoded (most requests)
    try:
        params = parse_qs(
            query,
            keep_blank_values=True,
            strict_parsing=strict,
            errors="surrogateescape",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:
        raise _Refused(
            "the query string is malformed; send 'name=value' pairs joined by '&' "
            f"(at most {MAX_FORM_FIELDS})"
        ) from None
    found: list[str] = []
    for name in _MODEL_FIELDS:
        values = params.get(name, [])
        if len(values) > 1:
            raise _Refused(f"the query names `{name}` twice; send it once")
        found += values
    return found


def _query_has_user(query: str) -> bool:
    """Whether the query has a ``user`` parameter (LiteLLM adds the query to the request data,
    Starlette's reading: '&'-separated, blank values kept). Unreadable: False."""
    if "user" not in query and "%" not in query:
        return False
    try:
        params = parse_qs(
            query, keep_blank_values=True, errors="surrogateescape", max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError:
        return False
    return "user" in params


def _json_constant(name: str) -> Any:
    """``parse_constant`` hook: NaN and Infinity are not JSON, whatever Python's parser allows."""
    raise _Refused(f"the body is not valid JSON ({name} is not a JSON value); send a JSON object")


_DECODER = json.JSONDecoder(parse_constant=_json_constant)
# Objects as lists of (key, value) pairs, built by C code: shows a duplicate top-level key.
_PAIRS_DECODER = json.JSONDecoder(object_pairs_hook=list, parse_constant=_json_constant)
_TOO_DEEP = f"the body nests JSON deeper than {MAX_JSON_DEPTH} levels; flatten it"


def _json_models(body: bytes) -> tuple[list[str], str | None, bool] | None:
    """The models a JSON object body names, a steering message and whether it has a ``user``
    key, or None: too complex.

    Strict: UTF-8, no duplicate top-level ``model``, no NaN; at most MAX_JSON_CONTAINERS
    objects and arrays and MAX_JSON_ITEMS values, so no body holds the event loop for long.
    """
    if len(body) > MAX_JSON_CONTAINERS and (
        body.count(b"{") + body.count(b"[") > MAX_JSON_CONTAINERS
        or body.count(b",") > MAX_JSON_ITEMS
    ):
        return None
    try:
        # orjson (~3x faster on a chat body) for the common case; anything it refuses (NaN,
        # huge integers, lone surrogates, deep nesting) is judged by the stdlib below, so what
        # is accepted and the error messages stay the stdlib's.
        value: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = _stdlib_json(body, _DECODER)
    # Parsers disagree on a repeated key (first or last wins): a second top-level "model" is
    # refused.
    if isinstance(value, dict) and _may_repeat_model(body):
        pairs = _stdlib_json(body, _PAIRS_DECODER)
        if sum(1 for key, _ in pairs if key == "model") > 1:
            raise _Refused("the body names `model` twice; send it once")
    if not isinstance(value, dict):
        return [], None, False
    models: list[str] = []
    if "model" in value:
        model = value["model"]
        if not isinstance(model, str):
            raise _Refused("`model` must be a string")
        models.append(model)
    targets = value.get("target_model_names")
    if targets is not None:
        models += _string_list(targets, "target_model_names", comma_string=True)
    for name in _FALLBACK_FIELDS:
        fallbacks = value.get(name)
        if fallbacks is not None:
            models += _fallback_models(fallbacks, name)
    steering = None
    if value.get("user_config") is not None:
        steering = (
            "`user_config` brings its own model list, which a model allow-list cannot check; "
            "remove it"
        )
    elif value.get("specific_deployment"):
        steering = (
            "`specific_deployment` picks a deployment by its provider model name, outside the "
            "model allow-list; remove it"
        )
    return models, steering, "user" in value


def _string_list(value: Any, name: str, comma_string: bool = False) -> list[str]:
    """A list of strings (or one string when ``comma_string``), else refuse."""
    if isinstance(value, str) and comma_string:
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise _Refused(f"`{name}` must be a list of model names")


def _fallback_models(value: Any, name: str) -> list[str]:
    """Every model a request's fallbacks name, in each shape LiteLLM's router takes.

    ``["m"]``, ``[{"model": "m", ...}]`` (per-fallback params) and ``[{"group": ["m"]}]``
    (router style: the group and its fallbacks both count).
    """
    if not isinstance(value, list):
        raise _Refused(f"`{name}` must be a list of model names")
    found: list[str] = []
    for item in value:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict) and "model" in item:
            if not isinstance(item["model"], str):
                raise _Refused(f"`{name}[].model` must be a string")
            found.append(item["model"])
        elif isinstance(item, dict):
            for group, targets in item.items():
                found.append(group)
                found += _string_list(targets, name, comma_string=True)
        else:
            raise _Refused(f"`{name}` must be a list of model names")
    return found


def _stdlib_json(body: bytes, decoder: json.JSONDecoder) -> Any:
    """Parse with the stdlib; refusals as client messages."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("the body is not valid JSON (not UTF-8); send a JSON object") from None
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise _Refused(
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "send a JSON object"
        ) from None
    except RecursionError:
        raise _Refused(_TOO_DEEP) from None
    except ValueError:
        # e.g. an integer longer than Python's int-conversion limit.
        raise _Refused(
            "the body is not valid JSON (a number is too long); send a JSON object"
        ) from None


def _form_models(body: bytes) -> tuple[list[str], bool]:
    """The model fields of an urlencoded body, refusing any reading that parsers disagree on,
    and whether every reading has a ``user`` field."""
    if not body.isascii():
        raise _Refused("the form body contains raw non-ASCII bytes; percent-encode them")
    text = body.decode("ascii")
    readings = [text]
    if ";" in text:
        # Some form parsers also split on ';': both readings must agree on the model.
        readings.append(text.replace(";", "&"))
    readings_fields: list[tuple[list[str], ...]] = []
    user = True
    for reading in readings:
        try:
            fields = parse_qs(
                reading,
                keep_blank_values=True,
                strict_parsing=False,
                errors="surrogateescape",
                max_num_fields=MAX_FORM_FIELDS,
            )
        except ValueError:
            raise _Refused(
                f"the form body has more than {MAX_FORM_FIELDS} fields; send fewer"
            ) from None
        named = tuple(fields.get(name, []) for name in _MODEL_FIELDS)
        user = user and "user" in fields
        for name, values in zip(_MODEL_FIELDS, named, strict=True):
            if len(values) > 1:
                raise _Refused(f"the form body names `{name}` twice; send it once")
        readings_fields.append(named)
    if len(readings_fields) > 1 and readings_fields[0] != readings_fields[1]:
        raise _Refused("the form body's `model` is ambiguous around ';'; percent-encode ';' as %3B")
    return [value for values in readings_fields[0] for value in values], user


def _header_params(value: str) -> tuple[str, dict[str, list[str]]] | None:
    """Split ``type; k=v; k="v"`` into the lower-cased type and params, or None if malformed.

    Strict on purpose: a header we might read differently from Starlette is refused, not guessed.
    """
    start = _HEADER_VALUE_START.match(value)
    if start is None:
        return None
    params: dict[str, list[str]] = {}
    pos = start.end()
    while True:
        match = _HEADER_PARAM.match(value, pos)
        if match is None:
            break
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(match.group(1).lower(), []).append(raw)
        pos = match.end()
    if _TRAILING_SEMICOLON.fullmatch(value, pos) is None:
        return None
    return start.group(1).lower(), params


def _boundary(content_type: str) -> bytes:
    """The multipart boundary from Content-Type, valid per RFC 2046, or refuse."""
    parsed = _header_params(content_type)
    values = parsed[1].get("boundary", []) if parsed is not None else []
    if len(values) != 1 or _BOUNDARY.fullmatch(values[0]) is None:
        raise _Refused(
            "multipart body without a valid boundary; send Content-Type "
            "'multipart/form-data; boundary=<1-70 characters>'"
        )
    return values[0].encode("ascii")


_MULTIPART_MALFORMED = (
    "the multipart body is malformed ({}); send a well-formed multipart/form-data body"
)


def _multipart_models(content_type: str, body: bytes) -> tuple[list[str], bool]:
    """``model`` text fields of a multipart/form-data body, from a strict CRLF parser, and
    whether a part is named ``user``.

    Parts are split on the boundary first, so a ``name="model"`` inside a file's content is
    never seen as a field. Anything irregular is refused rather than parsed leniently.
    """
    boundary = _boundary(content_type)
    delimiter = b"--" + boundary
    separator = b"\r\n" + delimiter
    pos = 0
    while pos < len(body) and body[pos] in b"\r\n":
        pos += 1  # Starlette's parser skips blank lines before the first boundary.
    if not body.startswith(delimiter, pos):
        raise _Refused(_MULTIPART_MALFORMED.format("it does not start with its boundary"))
    pos += len(delimiter)
    models: list[tuple[str, str]] = []
    parts = 0
    user = False
    while not body.startswith(b"--", pos):
        if pos >= len(body):
            raise _Refused(_MULTIPART_MALFORMED.format("no closing boundary"))
        if not body.startswith(b"\r\n", pos):
            raise _Refused(_MULTIPART_MALFORMED.format("text after a boundary"))
        start = pos + 2
        end = body.find(separator, start)
        if end < 0:
            raise _Refused(_MULTIPART_MALFORMED.format("no closing boundary"))
        parts += 1
        if parts > MAX_FORM_FIELDS:
            raise _Refused(f"the multipart body has more than {MAX_FORM_FIELDS} parts; send fewer")
        field, model = _multipart_part_model(body, start, end)
        if model is not None:
            models.append((field, model))
        user = user or field == "user"
        pos = end + len(separator)
    names = [name for name, _ in models]
    for name in _MODEL_FIELDS:
        if names.count(name) > 1:
            raise _Refused(f"the multipart body names `{name}` twice; send it once")
    return [value for _, value in models], user


def _multipart_part_model(body: bytes, start: int, end: int) -> tuple[str, str | None]:
    """(name, text) if the part is a model field, else (name, None); refuses unreadable
    headers."""
    if body.startswith(b"\r\n", start, end):
        head_end = start
        content_start = start + 2
    else:
        head_end = body.find(b"\r\n\r\n", start, end)
        if head_end < 0:
            raise _Refused(_MULTIPART_MALFORMED.format("a part's headers do not end"))
        content_start = head_end + 4
    headers: dict[str, str] = {}
    for line in body[start:head_end].split(b"\r\n") if head_end > start else []:
        name, colon, value = line.partition(b":")
        if not colon or _HEADER_NAME.fullmatch(name) is None:
            raise _Refused(_MULTIPART_MALFORMED.format("a part has an invalid header line"))
        key = name.decode("ascii").lower()
        if key in headers:
            raise _Refused(_MULTIPART_MALFORMED.format(f"a part repeats its {key} header"))
        headers[key] = value.decode("latin-1").strip(" \t")
    disposition = headers.get("content-disposition")
    parsed = _header_params(disposition) if disposition is not None else None
    if parsed is None:
        raise _Refused(_MULTIPART_MALFORMED.format("a part has no readable Content-Disposition"))
    params = parsed[1]
    if any(k != "name" and k.rstrip("*0123456789") == "name" for k in params):
        raise _Refused(_MULTIPART_MALFORMED.format("an encoded part name (name*=)"))
    names = params.get("name", [])
    if len(names) != 1:
        raise _Refused(
            _MULTIPART_MALFORMED.format("a part needs exactly one name in Content-Disposition")
        )
    field = names[0]
    if field not in _MODEL_FIELDS:
        return field, None
    if any(k.startswith("filename") for k in params):
        raise _Refused(f"the multipart `{field}` field is a file; send it as a text field")
    encoding = headers.get("content-transfer-encoding")
    if encoding is not None and encoding.lower() not in _IDENTITY_ENCODINGS:
        raise _Refused(f"the multipart `{field}` field is transfer-encoded; send it as plain text")
    if end - content_start > MAX_MODEL_LENGTH * 16:
        raise _Refused(f"the multipart `{field}` field is too long")
    try:
        return field, body[content_start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(
            f"the multipart `{field}` field is not valid UTF-8; fix its encoding"
        ) from None

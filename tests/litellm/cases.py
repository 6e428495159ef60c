"""Issue 12's attacks as a table: requests that name a model the caller may not use somewhere
other than the JSON body's ``model``, each sent with a caller's token through Envoy.

The internal user (role internal_user) may use ``anthropic-claude`` only; the team (client_id)
may use ``claude-*``. Every attack aims at ``openai-gpt-4o``. A case passes when the sidecar
refuses it (400/403/413 with ``x-extauthz-reason``) or when LiteLLM answered without running or
calling any model the caller may not use. ``live``: sent with the master key instead, the same
request does make LiteLLM run a model the caller may not use (test_attack_is_live checks it), so
the case is a real attack on this LiteLLM and not a request it would refuse anyway.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.litellm.harness import TEAM, USER, Body, Caller, litellm_file_id

FORBIDDEN = "openai-gpt-4o"
JSON = "application/json"
MIB = 1024 * 1024
PADDED_SIZE = 9 * MIB  # past Envoy's with_request_body.max_request_bytes (8 MiB, shipped)
LONG_PROMPT = "word " * 1500  # ~1,500 tokens: past the 300-token window of the granted models


def _json(content_type: str | None = JSON, **fields: Any) -> Body:
    return Body(content_type, json.dumps(fields).encode())


def chat(model: str, *, long: bool = False, content_type: str = JSON, **extra: Any) -> Body:
    content = LONG_PROMPT if long else "hi"
    messages = [{"role": "user", "content": content}]
    return _json(content_type, model=model, messages=messages, **extra)


def overflow(model: str, **extra: Any) -> Body:
    """A chat request whose prompt overflows the granted models' 300-token window: the caller's
    own way to make its model fail, which is what request fallbacks act on."""
    return chat(model, long=True, **extra)


def completion(model: str, **extra: Any) -> Body:
    return _json(model=model, prompt="hi", **extra)


def embedding(model: str, **extra: Any) -> Body:
    return _json(model=model, input="hi", **extra)


def responses(model: str, *, long: bool = False, **extra: Any) -> Body:
    return _json(model=model, input=LONG_PROMPT if long else "hi", **extra)


def messages(model: str, *, long: bool = False, **extra: Any) -> Body:
    content = LONG_PROMPT if long else "hi"
    turns = [{"role": "user", "content": content}]
    return _json(model=model, max_tokens=16, messages=turns, **extra)


def generate_content(**extra: Any) -> Body:
    return _json(contents=[{"role": "user", "parts": [{"text": "hi"}]}], **extra)


@cache
def _padded_chat() -> bytes:
    tail = chat(FORBIDDEN).data
    return b" " * (PADDED_SIZE - len(tail)) + tail


def padded(content_type: str) -> Body:
    """Megabytes of spaces, then a chat request for the forbidden model: JSON that LiteLLM parses
    whatever the Content-Type says (only form types are read otherwise), and whose model lies
    beyond the part of the body Envoy sends to the check."""
    return Body(content_type, _padded_chat)


def batch_lines(*models: str) -> bytes:
    """A batch input file (JSONL), one chat request per model."""
    lines = [
        {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": m, "messages": [{"role": "user", "content": "hi"}]}}
        for i, m in enumerate(models)
    ]  # fmt: skip
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(purpose: str = "batch", content: bytes | None = None, **fields: str) -> Body:
    """A multipart/form-data POST /v1/files: purpose, extra form fields, one JSONL file."""
    boundary = "extauthz-" + uuid.uuid4().hex
    parts: list[tuple[str, str | None, bytes]] = [
        (name, None, value.encode()) for name, value in {"purpose": purpose, **fields}.items()
    ]
    lines = content if content is not None else batch_lines(FORBIDDEN)
    parts.append(("file", "input.jsonl", lines))
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            out += b"Content-Type: application/jsonl\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return Body(f"multipart/form-data; boundary={boundary}", out)


def batch(input_file_id: str, **extra: Any) -> Body:
    return _json(input_file_id=input_file_id, endpoint="/v1/chat/completions",
                 completion_window="24h", **extra)  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    caller: Caller
    path: str
    body: Body
    headers: tuple[tuple[str, str], ...] = ()
    live: bool = True

    @property
    def id(self) -> str:
        return f"{self.caller}-{self.name}"


U, T = USER, TEAM
CLAUDE, HAIKU, GPT = "anthropic-claude", "claude-haiku", FORBIDDEN  # user's, team's, nobody's
CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
FILES, BATCHES, RESPONSES, MESSAGES = "/v1/files", "/v1/batches", "/v1/responses", "/v1/messages"
Q = f"?model={GPT}"
MODEL_HEADER = (("x-litellm-model", GPT),)
OCTETS = "application/octet-stream"
FILTERED = "claude-filtered"  # always fails on content policy
GEMINI = f"/v1beta/models/{GPT}:generateContent"
AZURE = f"/openai/deployments/{GPT}/chat/completions"
ENGINES = f"/engines/{GPT}/completions"

CASES: tuple[Case, ...] = (
    # (1) ?model= wins over the body's (granted) model on chat, completions and embeddings.
    Case("query-chat",               U, CHAT + Q,        chat(CLAUDE)),
    Case("query-completions",        U, COMPLETIONS + Q, completion(CLAUDE)),
    Case("query-embeddings",         U, EMBEDDINGS + Q,  embedding(CLAUDE)),
    Case("query-chat",               T, CHAT + Q,        chat(HAIKU)),
    Case("query-completions",        T, COMPLETIONS + Q, completion(HAIKU)),
    Case("query-embeddings",         T, EMBEDDINGS + Q,  embedding(HAIKU)),
    # (2) JSON under another Content-Type; 9 MiB of it (spaces first) is cut for the check.
    Case("json-as-text-plain",       U, CHAT, chat(GPT, content_type="text/plain")),
    Case("json-as-octet-stream",     U, CHAT, chat(GPT, content_type=OCTETS)),
    Case("padded-text-plain",        U, CHAT, padded("text/plain")),
    Case("padded-octet-stream",      U, CHAT, padded(OCTETS)),
    Case("padded-text-plain",        T, CHAT, padded("text/plain")),
    Case("padded-octet-stream",      T, CHAT, padded(OCTETS)),
    # (3) a comma-separated model list: LiteLLM runs every model in it.
    Case("comma-list",               U, CHAT, chat(f"{CLAUDE},{GPT}")),
    Case("comma-list",               T, CHAT, chat(f"{HAIKU},{GPT}")),
    # (4) request fallbacks, acted on when the granted model fails.
    Case("fallbacks-names",          U, CHAT, overflow(CLAUDE, fallbacks=[GPT])),
    Case("fallbacks-objects",        U, CHAT, overflow(CLAUDE, fallbacks=[{"model": GPT}])),
    Case("fallbacks-mapping",        U, CHAT, overflow(CLAUDE, fallbacks=[{CLAUDE: [GPT]}])),
    Case("context-window-fallbacks", U, CHAT, overflow(CLAUDE, context_window_fallbacks=[GPT])),
    # anthropic-claude never fails on content policy: this one cannot fire here.
    Case("content-policy-fallbacks", U, CHAT, overflow(CLAUDE, content_policy_fallbacks=[GPT]),
         live=False),
    Case("fallbacks-names",          T, CHAT, overflow(HAIKU, fallbacks=[GPT])),
    Case("fallbacks-objects",        T, CHAT, overflow(HAIKU, fallbacks=[{"model": GPT}])),
    Case("fallbacks-mapping",        T, CHAT, overflow(HAIKU, fallbacks=[{HAIKU: [GPT]}])),
    Case("context-window-fallbacks", T, CHAT, overflow(HAIKU, context_window_fallbacks=[GPT])),
    Case("content-policy-fallbacks", T, CHAT, chat(FILTERED, content_policy_fallbacks=[GPT])),
    # (5) /v1/batches routes by the model encoded in input_file_id, which a client can write.
    Case("batch-file-id-names-model", U, BATCHES, batch(litellm_file_id(GPT))),
    Case("batch-file-id-names-model", T, BATCHES, batch(litellm_file_id(GPT))),
    # (6) names inside claude-* that LiteLLM resolves to openai-gpt-4o.
    Case("model-group-alias",        T, CHAT, chat("claude-fast")),
    Case("model-alias-map",          T, CHAT, chat("claude-mapped")),
    Case("deployment-id",            T, CHAT, chat("claude-gpt4o-deployment")),
    Case("provider-model-name",      T, CHAT, chat("claude-gpt4o-backend")),
    Case("router-fallback",          T, CHAT, chat("claude-flaky")),
    # (7) the model in a header, a query, a form field or the path; other APIs' bodies.
    Case("files-model-header",       U, FILES,     upload(), MODEL_HEADER),
    Case("files-model-query",        U, FILES + Q, upload()),
    # managed files (target_model_names) need LiteLLM's database: they fail offline either way
    Case("files-target-model-names", U, FILES,     upload(target_model_names=GPT), live=False),
    Case("files-model-header",       T, FILES,     upload(), MODEL_HEADER),
    Case("files-model-query",        T, FILES + Q, upload()),
    Case("responses",                U, RESPONSES, responses(GPT)),
    Case("openai-responses",         U, "/openai" + RESPONSES, responses(GPT)),
    Case("responses-fallbacks",      U, RESPONSES, responses(CLAUDE, long=True, fallbacks=[GPT])),
    Case("responses",                T, RESPONSES, responses(GPT)),
    Case("openai-responses",         T, "/openai" + RESPONSES, responses(GPT)),
    Case("responses-fallbacks",      T, RESPONSES, responses(HAIKU, long=True, fallbacks=[GPT])),
    Case("messages",                 U, MESSAGES,  messages(GPT)),
    Case("messages-fallbacks",       U, MESSAGES,  messages(CLAUDE, long=True, fallbacks=[GPT])),
    Case("messages",                 T, MESSAGES,  messages(GPT)),
    Case("messages-fallbacks",       T, MESSAGES,  messages(HAIKU, long=True, fallbacks=[GPT])),
    Case("gemini-path",              U, GEMINI,    generate_content(model=CLAUDE)),
    Case("azure-deployment-path",    U, AZURE,     chat(CLAUDE)),
    Case("engines-path",             U, ENGINES,   completion(CLAUDE)),
    Case("gemini-path",              T, GEMINI,    generate_content(model=HAIKU)),
    Case("azure-deployment-path",    T, AZURE,     chat(HAIKU)),
    Case("engines-path",             T, ENGINES,   completion(HAIKU)),
)  # fmt: skip

# The granted model answers through the same stack, on every API the attacks use that the
# caller's role may call in LiteLLM 1.108.7 (/openai/v1/responses is one of its openai_routes;
# /v1/messages is an anthropic route, which teams do not get).
GRANTED: tuple[tuple[Caller, str, Body, str], ...] = (
    (U, CHAT,                 chat(CLAUDE),       CLAUDE),
    (U, COMPLETIONS,          completion(CLAUDE), CLAUDE),
    (U, EMBEDDINGS,           embedding(CLAUDE),  CLAUDE),
    (U, RESPONSES,            responses(CLAUDE),  CLAUDE),
    (U, "/openai" + RESPONSES, responses(CLAUDE), CLAUDE),
    (U, MESSAGES,             messages(CLAUDE),   CLAUDE),
    (T, CHAT,                 chat(HAIKU),        HAIKU),
    (T, COMPLETIONS,          completion(HAIKU),  HAIKU),
    (T, EMBEDDINGS,           embedding(HAIKU),   HAIKU),
    (T, RESPONSES,            responses(HAIKU),   HAIKU),
    (T, "/openai" + RESPONSES, responses(HAIKU),  HAIKU),
)  # fmt: skip

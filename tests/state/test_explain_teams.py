"""``extauthz explain --state``: the team a request runs as, and why, read from the registry;
the dynamic metadata and the gRPC admin Explain name it too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from extauthz.cli import main
from extauthz.state.protocol import TeamState
from extauthz.state.urls import store_from_url
from tests.state.conftest import PG_BASE_URL, schema_url, token, write_policy

GROUPS = "    team_ids_jwt_field: groups\n"


async def seed(url: str) -> None:
    store = store_from_url(url)
    await store.open()
    try:
        for team_id, models in (("eng", ("gpt-4o",)), ("research", ("claude",))):
            await store.create_team(TeamState(team_id, False, "t", 1.0, None, models, None, True))
    finally:
        await store.close()


def explain(
    capsys: pytest.CaptureFixture[str], policy: Path, tok: str, model: str, *more: str
) -> tuple[int, dict[str, object]]:
    body = json.dumps({"model": model, "messages": []})
    code = main(
        ["explain", "--config", str(policy), "--token", tok, "--path", "/v1/chat/completions",
         "--body", body, *more]
    )
    return code, json.loads(capsys.readouterr().out)


def test_explain_says_which_team_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_policy(tmp_path, extra=GROUPS)
    for k, v in files.env.items():
        monkeypatch.setenv(k, v)
    url = f"sqlite:///{tmp_path}/state.db"
    asyncio.run(seed(url))
    tok = token({"sub": "alice", "groups": ["research", "eng"]})

    code, out = explain(capsys, files.policy, tok, "gpt-4o", "--state", url)
    assert code == 0, out
    assert out["team"] == {
        "team_id": "eng",
        "why": "first team in claim 'groups' with access",
        "token_teams": ["research", "eng"],
        "registry": url,
    }
    metadata = out["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["team_id"] == "eng" and metadata["team_source"].startswith("first team")
    set_headers = out["set_headers"]
    assert isinstance(set_headers, dict) and set_headers["x-auth-team-id"] == "eng"

    code, out = explain(capsys, files.policy, tok, "mistral", "--state", url)
    assert code == 1 and out["reason"] == "model_not_allowed"
    assert "no team of this token has access to model 'mistral'" in str(out["message"])

    # Without --state no registry is read: every team exists, the first one is chosen.
    code, out = explain(capsys, files.policy, tok, "mistral")
    assert code == 0 and out["team"]["team_id"] == "research"  # type: ignore[index]


def test_explain_never_shows_the_state_url_password(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pg_schema: str,
) -> None:
    base = urlsplit(PG_BASE_URL)
    secret = base.password or "explain-state-pw-81f2"  # trust auth: any password is let in
    if base.password is None:
        user, _, host = base.netloc.rpartition("@")
        base = base._replace(netloc=f"{user or 'postgres'}:{secret}@{host}")
    url = schema_url(pg_schema, urlunsplit(base))
    files = write_policy(tmp_path, extra=GROUPS)
    for k, v in files.env.items():
        monkeypatch.setenv(k, v)
    asyncio.run(seed(url))
    tok = token({"sub": "alice", "groups": ["research", "eng"]})

    body = json.dumps({"model": "gpt-4o", "messages": []})
    code = main(
        ["explain", "--config", str(files.policy), "--token", tok, "--path",
         "/v1/chat/completions", "--body", body, "--state", url]
    )
    shown = capsys.readouterr()
    assert code == 0, shown.out
    assert json.loads(shown.out)["team"]["team_id"] == "eng"
    assert secret not in shown.out + shown.err

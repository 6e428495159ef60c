"""Teams end to end through a real Envoy running the shipped envoy.yaml: an admin creates a
team for an IdP group with POST /team/new (routed to the sidecar), a user whose token carries
the group reaches the team's models only, runs as the team (x-auth-team-id at the upstream), and
a /team/update of the model list takes effect on the next request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.state.conftest import MASTER_KEY, token, write_policy
from tests.state.helpers import envoy_in_front

GROUPS = "    team_ids_jwt_field: groups\n    enforce_team_based_model_access: true\n"


@pytest.mark.envoy
async def test_group_teams_through_envoy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_policy(tmp_path, extra=GROUPS)
    for k, v in files.env.items():
        monkeypatch.setenv(k, v)
    gina = token({"sub": "gina", "groups": ["ghost", "eng"]})
    nobody = token({"sub": "nora"})
    async with envoy_in_front(files, tmp_path) as send:

        def chat(model: str) -> dict[str, object]:
            return {"model": model, "messages": []}

        path = "/v1/chat/completions"
        # Gina may not create teams; the admin may.
        status, text = await send("POST", "/team/new", gina, {"team_id": "eng"})
        assert status == 403, text
        new = {"team_id": "eng", "team_alias": "Engineering", "models": ["gpt-4o"]}
        status, text = await send("POST", "/team/new", MASTER_KEY, new)
        assert status == 200 and json.loads(text)["models"] == ["gpt-4o"], text

        status, text = await send("POST", path, gina, chat("gpt-4o"))
        assert status == 200, text
        assert json.loads(text)["headers"]["x-auth-team-id"] == "eng"
        status, text = await send("POST", path, gina, chat("claude"))
        assert status == 403 and "no team of this token" in text, text
        status, text = await send("POST", path, nobody, chat("gpt-4o"))
        assert status == 403 and "enforce_team_based_model_access" in text, text

        update = {"team_id": "eng", "models": ["claude"]}
        status, text = await send("POST", "/team/update", MASTER_KEY, update)
        assert status == 200, text
        assert (await send("POST", path, gina, chat("claude")))[0] == 200
        assert (await send("POST", path, gina, chat("gpt-4o")))[0] == 403

        status, text = await send("POST", "/team/delete", MASTER_KEY, {"team_ids": ["eng"]})
        assert status == 200, text
        # The registry is empty again: every team exists with every model.
        assert (await send("POST", path, gina, chat("gpt-4o")))[0] == 200

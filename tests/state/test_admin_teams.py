"""The team registry through the HTTP and gRPC admin APIs of an in-process sidecar."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from extauthz.runtime import Sidecar
from tests.state.conftest import PolicyFiles, token
from tests.state.helpers import Http, sidecar
from tests.state.test_admin_grpc import call

USER = token({"sub": "alice", "email": "alice@corp.io"})


@pytest.fixture
async def car(policy_files: PolicyFiles, tmp_path: Path) -> AsyncIterator[Sidecar]:
    async with sidecar(policy_files, f"sqlite:///{tmp_path}/state.db") as running:
        yield running


@pytest.fixture
async def http(car: Sidecar) -> AsyncIterator[Http]:
    assert car.http_port is not None
    client = Http(car.http_port)
    try:
        yield client
    finally:
        await client.close()


async def test_new_info_update_list_delete(car: Sidecar, http: Http) -> None:
    """LiteLLM's calls and shapes, end to end; the snapshot follows every write at once."""
    body = {"team_id": "eng", "team_alias": "Engineering", "models": ["gpt-4o"]}
    reply = await http.admin("POST", "/team/new", body)
    assert reply.status == 200, reply.body
    assert reply.body["team_id"] == "eng" and reply.body["team_alias"] == "Engineering"
    assert reply.body["models"] == ["gpt-4o"] and reply.body["blocked"] is False
    assert reply.body["changed_by"] == "master_key" and reply.body["created_at"].endswith("Z")
    assert car.state is not None and car.state.view.current.teams["eng"].models == ("gpt-4o",)

    again = await http.admin("POST", "/team/new", body)
    assert again.status == 400 and "already exists" in again.body["error"]["message"]

    info = await http.admin("GET", "/team/info?team_id=eng")
    assert info.status == 200 and info.body["team_info"]["team_alias"] == "Engineering"

    upd = await http.admin("POST", "/team/update", {"team_id": "eng", "models": []})
    assert upd.status == 200 and upd.body["models"] == []
    assert upd.body["team_alias"] == "Engineering"
    assert not car.state.view.current.teams["eng"].models

    listed = await http.admin("GET", "/team/list")
    assert [t["team_id"] for t in listed.body] == ["eng"]

    gone = await http.admin("POST", "/team/delete", {"team_ids": ["eng"]})
    assert gone.status == 200 and [t["team_id"] for t in gone.body] == ["eng"]
    assert "eng" not in car.state.view.current.teams
    missing = await http.admin("POST", "/team/delete", {"team_ids": ["eng"]})
    assert missing.status == 404 and "team_id=eng" in missing.body["error"]["message"]


async def test_a_new_team_without_id_gets_one(http: Http) -> None:
    reply = await http.admin("POST", "/team/new", {"team_alias": "Ops"})
    assert reply.status == 200 and len(reply.body["team_id"]) == 36 and reply.body["models"] == []


@pytest.mark.parametrize(
    "path,body,says",
    [
        ("/team/new", {"team_id": "t", "models": "gpt-4o"}, "models must be a list"),
        ("/team/new", {"team_id": "t", "models": [1]}, "models[0] must be a non-empty string"),
        ("/team/new", {"team_id": "t", "models": [""]}, "models[0] must be a non-empty string"),
        ("/team/new", {"team_id": "t", "max_budget": 10}, "not enforced here"),
        ("/team/new", {"team_id": " t "}, "team_id"),
        ("/team/new", {"team_id": "t", "blocked": "yes"}, "blocked must be true or false"),
        ("/team/new", {"team_id": "t", "team_alias": "a\nb"}, "control characters"),
        ("/team/new", ["t"], "JSON object"),
        ("/team/update", {"models": []}, 'missing field "team_id"'),
        ("/team/update", {"team_id": "nope", "models": []}, "team not found"),
        ("/team/delete", {"team_ids": []}, "must not be empty"),
        ("/team/delete", {"team_ids": "t"}, "must be a list"),
    ],
)
async def test_bad_team_input_is_a_clear_4xx(
    http: Http, path: str, body: object, says: str
) -> None:
    reply = await http.admin("POST", path, body)
    assert reply.status in (400, 404), reply.body
    assert says in reply.body["error"]["message"]
    listed = await http.admin("GET", "/team/list")
    assert listed.body == []  # nothing was written


async def test_an_alias_names_one_team(http: Http) -> None:
    first = await http.admin("POST", "/team/new", {"team_id": "a", "team_alias": "X"})
    assert first.status == 200
    taken = await http.admin("POST", "/team/new", {"team_id": "b", "team_alias": "X"})
    assert taken.status == 400 and "aliases name one team" in taken.body["error"]["message"]
    assert (await http.admin("POST", "/team/new", {"team_id": "b"})).status == 200
    moved = await http.admin("POST", "/team/update", {"team_id": "b", "team_alias": "X"})
    assert moved.status == 400


async def test_team_calls_need_an_admin(http: Http) -> None:
    reply = await http.call(
        "POST", "/team/new", {"team_id": "t"}, {"authorization": f"Bearer {USER}"}
    )
    assert reply.status == 403 and reply.headers["x-extauthz-reason"] == "not_admin"


async def test_grpc_new_update_delete(car: Sidecar) -> None:
    """The gRPC admin service: NewTeam, UpdateTeam (models present and empty: every model)."""
    code, out = await call(car, "NewTeam", {"team_id": "g", "models": ["m1", "m2"]})
    assert code == 0, out
    assert json.loads(out)["models"] == ["m1", "m2"]
    code, out = await call(car, "UpdateTeam", {"team_id": "g", "team_alias": "G"})
    assert code == 0, out
    assert json.loads(out)["models"] == ["m1", "m2"] and json.loads(out)["team_alias"] == "G"
    code, out = await call(car, "UpdateTeam", {"team_id": "g", "models": {"models": []}})
    assert code == 0 and "models" not in json.loads(out), out
    assert car.state is not None and car.state.view.current.teams["g"].models == ()
    code, out = await call(car, "NewTeam", {"team_id": "g"})
    assert code != 0 and "InvalidArgument" in out and "already exists" in out
    code, out = await call(car, "DeleteTeams", {"team_ids": ["g", "h"]})
    assert code != 0 and "NotFound" in out
    code, out = await call(car, "DeleteTeams", {"team_ids": ["g"]})
    assert code == 0 and json.loads(out)["teams"][0]["team_id"] == "g"


async def test_grpc_explain_names_the_team_and_its_models(car: Sidecar) -> None:
    """Explain decides with the live registry: the team's models, and how the team was found."""
    code, out = await call(car, "NewTeam", {"team_id": "team-a", "models": ["claude"]})
    assert code == 0, out
    tok = token({"sub": "svc-a", "client_id": "team-a"})
    for model, allowed in (("gpt-4o", False), ("claude", True)):
        body = json.dumps({"model": model})
        code, out = await call(
            car, "Explain", {"token": tok, "path": "/v1/chat/completions", "body": body}
        )
        assert code == 0, out
        answer = json.loads(out)
        assert answer.get("allowed", False) is allowed, answer
        if allowed:
            assert answer["metadata"]["team_id"] == "team-a"
            assert answer["metadata"]["team_source"] == "claim 'client_id'"
        else:
            assert "team 'team-a' may not use model 'gpt-4o'" in answer["message"]

"""The command line, run as a subprocess: --once, config errors, the long-running mode, SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from extauthz.mint.cli import add_arguments

from .configs import STATIC_KEY, mint_config, mint_env
from .proc import Minter, write_config
from .standins import Cloud
from .testca import TestCA


def test_add_arguments_gives_the_documented_options() -> None:
    """--config, --out, --http-address (default 0.0.0.0:9193), --once."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out", "d", "--once"])
    assert (args.config, args.out, args.http_address, args.once) == (
        None,
        "d",
        "0.0.0.0:9193",
        True,
    )


def test_once_mints_everything_and_exits_0(cloud: Cloud, test_ca: TestCA, tmp_path: Path) -> None:
    """--once with $EXTAUTHZ_CONFIG and SSL_CERT_FILE writes every file and exits 0."""
    config = write_config(tmp_path / "policy.yaml", mint_config(cloud))
    out = tmp_path / "out"
    env = mint_env(cloud) | {"EXTAUTHZ_CONFIG": str(config), "SSL_CERT_FILE": str(test_ca.ca_file)}
    minter = Minter(["--out", str(out), "--once"], env)
    assert minter.wait() == 0, "\n".join(minter.lines)
    assert sorted(p.name for p in out.iterdir()) == [
        "anthropic_claude-3-haiku.aws_credentials",
        "claude-direct.sds.yaml",
        "gemini-1.5-pro.sds.yaml",
        "gpt-4o.sds.yaml",
    ]
    records = minter.records()
    assert not [r for r in records if r.get("not_json")]
    assert sum(r["msg"] == "credential written" for r in records) == 4
    assert not any(s in line for line in minter.lines for s in [*cloud.secrets(), STATIC_KEY])


def test_once_exits_1_when_a_credential_fails(
    cloud: Cloud, test_ca: TestCA, tmp_path: Path
) -> None:
    """An STS refusal makes --once fail, with the failure logged for the credential."""
    cloud.sts.refuse = (400, "InvalidIdentityToken", "Incorrect token audience")
    config = write_config(tmp_path / "policy.yaml", mint_config(cloud, str(test_ca.ca_file)))
    minter = Minter(
        ["--config", str(config), "--out", str(tmp_path / "out"), "--once"], mint_env(cloud)
    )
    assert minter.wait() == 1
    failed = minter.wait_for_record("credential refresh failed")
    assert failed["credential"] == "anthropic_claude-3-haiku.aws_credentials"
    assert "InvalidIdentityToken: Incorrect token audience" in failed["error"]
    assert (
        "aud='sts.amazonaws.com' iss='https://token.actions.githubusercontent.com'"
        in failed["error"]
    )
    assert minter.wait_for_record("done")["failed"] == ["anthropic_claude-3-haiku.aws_credentials"]
    assert not any(s in line for line in minter.lines for s in cloud.secrets())


@pytest.mark.parametrize(
    ("edit", "env_drop", "expected"),
    [
        (
            {"aws_web_identity_token": "oidc/gogle/x"},
            None,
            "model_list[0].litellm_params.aws_web_identity_token: unknown OIDC provider 'gogle'",
        ),
        (
            {},
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "model_list[0].litellm_params.aws_web_identity_token: oidc/github/sts.amazonaws.com "
            "needs environment variable ACTIONS_ID_TOKEN_REQUEST_TOKEN, which is not set",
        ),
    ],
)
def test_config_problems_exit_2_with_the_key_path(
    cloud: Cloud, tmp_path: Path, edit: dict[str, str], env_drop: str | None, expected: str
) -> None:
    """An unknown provider or a missing env var stops the minter before any call."""
    config = mint_config(cloud)
    config["model_list"][0]["litellm_params"].update(edit)
    path = write_config(tmp_path / "policy.yaml", config)
    env = mint_env(cloud)
    if env_drop:
        env.pop(env_drop)
    minter = Minter(["--config", str(path), "--out", str(tmp_path / "out"), "--once"], env)
    assert minter.wait() == 2
    messages = [r["msg"] for r in minter.records() if r.get("level") == "error"]
    assert any(m.startswith(f"{path}: {expected}") for m in messages), messages
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_without_config_it_says_how_to_give_one(tmp_path: Path) -> None:
    """No --config and no $EXTAUTHZ_CONFIG: exit 2 with the fix."""
    minter = Minter(["--out", str(tmp_path)], {})
    assert minter.wait() == 2
    assert "pass --config FILE or set EXTAUTHZ_CONFIG" in "\n".join(minter.lines)


def test_long_running_serves_status_and_stops_on_sigterm(
    cloud: Cloud, test_ca: TestCA, tmp_path: Path
) -> None:
    """Without --once it stays up, serves /readyz and /status, and exits 0 on SIGTERM."""
    config = write_config(tmp_path / "policy.yaml", mint_config(cloud, str(test_ca.ca_file)))
    minter = Minter(
        ["--config", str(config), "--out", str(tmp_path / "out"), "--http-address", "127.0.0.1:0"],
        mint_env(cloud),
    )
    try:
        minter.wait_ready()
        status, doc = minter.get_json("/status")
        assert status == 200 and doc["ready"] is True
        assert {c["kind"] for c in doc["credentials"]} == {
            "aws_web_identity",
            "azure_entra",
            "gcp_workload_identity",
            "static",
        }
    finally:
        code = minter.stop()
    assert code == 0
    assert minter.records()[-1]["msg"] == "stopped"


def test_a_busy_http_port_exits_2(cloud: Cloud, test_ca: TestCA, tmp_path: Path) -> None:
    """--http-address on a port already in use is reported, not a traceback."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "policy.yaml", mint_config(cloud, str(test_ca.ca_file)))
        minter = Minter(
            [
                "--config",
                str(config),
                "--out",
                str(tmp_path / "out"),
                "--http-address",
                f"127.0.0.1:{port}",
            ],
            mint_env(cloud),
        )
        assert minter.wait() == 2
    assert f"--http-address 127.0.0.1:{port}: cannot listen" in "\n".join(minter.lines)

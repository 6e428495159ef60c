"""sinks.py: the two file formats Envoy reads, written atomically with mode 0600."""

from __future__ import annotations

import configparser
import stat
import threading
from pathlib import Path

import pytest
import yaml

from extauthz.mint.aws import AwsCredentials
from extauthz.mint.errors import SinkError
from extauthz.mint.redact import Secret
from extauthz.mint.sinks import (
    prepare_directory,
    render_aws_credentials,
    render_sds_secret,
    safe_name,
    write_atomic,
)


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("claude-3-haiku-20240307", "claude-3-haiku-20240307"),
        ("aws/claude-3-5-sonnet", "aws_claude-3-5-sonnet"),
        ("gpt-4o 2024:05", "gpt-4o_2024_05"),
        ("é", "_"),
    ],
)
def test_safe_name_replaces_everything_outside_the_allowed_set(
    model_name: str, expected: str
) -> None:
    """Characters outside [A-Za-z0-9._-] become '_'."""
    assert safe_name(model_name) == expected


def test_aws_credentials_file_is_the_shared_credentials_ini() -> None:
    """Profile default with key id, secret and session token, as the AWS SDKs read it."""
    text = render_aws_credentials(
        AwsCredentials("ASIAEXAMPLE1234567", Secret("s/e+c=ret"), Secret("tok=="), 1.0)
    )
    ini = configparser.ConfigParser()
    ini.read_string(text)
    assert dict(ini["default"]) == {
        "aws_access_key_id": "ASIAEXAMPLE1234567",
        "aws_secret_access_key": "s/e+c=ret",
        "aws_session_token": "tok==",
    }


def test_a_value_with_a_line_break_is_never_written() -> None:
    """A newline would let a value inject INI lines; the write is refused."""
    with pytest.raises(SinkError):
        render_aws_credentials(AwsCredentials("ASIAEXAMPLE1234567", Secret("a\nb"), None, None))


def test_sds_file_holds_one_generic_secret_named_after_the_model() -> None:
    """resources: [one tls.v3.Secret named NAME whose generic_secret is the value]."""
    doc = yaml.safe_load(render_sds_secret("gpt-4o", 'Bearer a"b: c'))
    assert doc == {
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                "name": "gpt-4o",
                "generic_secret": {"secret": {"inline_string": 'Bearer a"b: c'}},
            }
        ]
    }


def test_write_is_atomic_with_mode_0600_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """The file appears whole with mode 0600 and nothing else is left in the directory."""
    path = write_atomic(tmp_path, "m.sds.yaml", "one\n")
    assert path.read_text() == "one\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(tmp_path, "m.sds.yaml", "two\n")
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sds.yaml"]


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    """While writes of large contents go on, every read is one whole version."""
    versions = [(str(i) * 200_000) + "\n" for i in range(10)]
    write_atomic(tmp_path, "f", versions[0])
    stop = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not stop.is_set():
            seen.append((tmp_path / "f").read_text())

    reader = threading.Thread(target=read)
    reader.start()
    for text in versions * 3:
        write_atomic(tmp_path, "f", text)
    stop.set()
    reader.join()
    assert seen and all(text in versions for text in seen)


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    """When the directory is gone the write fails with SinkError and names the file."""
    missing = tmp_path / "gone"
    with pytest.raises(SinkError, match=r"cannot write .*gone/x"):
        write_atomic(missing, "x", "data")


def test_prepare_directory_creates_it_and_removes_leftover_temp_files(tmp_path: Path) -> None:
    """A crash mid-write leaves .mint-*.tmp; the next start removes it, never a real file."""
    out = tmp_path / "new" / "out"
    prepare_directory(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    (out / ".mint-abc.tmp").write_text("half")
    (out / "m.sds.yaml").write_text("keep")
    prepare_directory(out)
    assert sorted(p.name for p in out.iterdir()) == ["m.sds.yaml"]

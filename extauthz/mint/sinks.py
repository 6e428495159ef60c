"""The files Envoy reads, and writing them so Envoy never sees half of one.

* ``NAME.aws_credentials``: AWS shared-credentials INI, profile ``default``, for
  ``aws_request_signing``'s ``credentials_file_provider``.
* ``NAME.sds.yaml``: SDS ``resources`` with one generic ``Secret`` named ``NAME``, for
  ``credential_injector``'s generic credential.

Both file formats are a contract with Envoy's configuration (see examples/envoy-mint.yaml): do not
change names or shapes. Files are written to a temporary file in the same directory, flushed and
renamed over the old one, because Envoy's ``watched_directory`` reloads on the rename and a reader
must see either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import yaml

from extauthz.mint.aws import AwsCredentials
from extauthz.mint.errors import SinkError

AWS_SUFFIX = ".aws_credentials"
SDS_SUFFIX = ".sds.yaml"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105
TEMP_PREFIX = ".mint-"
TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o600
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(model_name: str) -> str:
    """``model_name`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    return _UNSAFE.sub("_", model_name)


def _one_line(value: str, what: str) -> str:
    if not value or any(ch in value for ch in "\r\n\0"):
        raise SinkError(f"refusing to write {what}: empty or contains a line break")
    return value


def render_aws_credentials(creds: AwsCredentials) -> str:
    """The INI text: ``[default]`` with key id, secret and (when present) session token."""
    lines = [
        "[default]",
        f"aws_access_key_id = {_one_line(creds.access_key_id, 'aws_access_key_id')}",
        "aws_secret_access_key = "
        + _one_line(creds.secret_access_key.reveal(), "aws_secret_access_key"),
    ]
    if creds.session_token is not None:
        lines.append(
            "aws_session_token = " + _one_line(creds.session_token.reveal(), "aws_session_token")
        )
    return "\n".join(lines) + "\n"


def render_sds_secret(name: str, value: str) -> str:
    """The SDS YAML: ``resources`` holding one generic secret ``name`` with ``value``."""
    document = {
        "resources": [
            {
                "@type": SECRET_TYPE,
                "name": name,
                "generic_secret": {"secret": {"inline_string": _one_line(value, name)}},
            }
        ]
    }
    return yaml.safe_dump(document, sort_keys=False, width=1 << 20)


def write_atomic(directory: Path, filename: str, text: str) -> Path:
    """Replace ``directory/filename`` with ``text`` (mode 0600) in one rename.

    Raises SinkError; on failure the old file is untouched and no temporary file is left.
    """
    target = directory / filename
    tmp_name = ""
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
        tmp_name = ""
        _fsync_dir(directory)
    except OSError as exc:
        raise SinkError(f"cannot write {target} ({exc.strerror or exc})") from None
    finally:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
    return target


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; some filesystems refuse, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def prepare_directory(directory: Path) -> None:
    """Create the output directory (0700) if needed and remove temporary files a crash left.

    Raises SinkError when the directory cannot be created or written.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
    except OSError as exc:
        raise SinkError(
            f"cannot use output directory {directory} ({exc.strerror or exc})"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SinkError(f"output directory {directory} is not writable by this user")

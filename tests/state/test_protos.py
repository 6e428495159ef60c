"""The generated admin API code matches protos/ (run scripts/gen_protos.py after editing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import grpc_tools  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from extauthz._gen.extauthz.admin.v1 import admin_pb2, admin_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    return module


def _drop_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    """python_out leaves json_name out of the descriptor it embeds."""
    for field in message.field:
        field.ClearField("json_name")
    for nested in message.nested_type:
        _drop_json_names(nested)


def test_generated_descriptor_matches_the_proto(tmp_path: Path) -> None:
    """The committed admin_pb2 was generated from the admin.proto in the tree."""
    out = tmp_path / "admin.desc"
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    assert (
        protoc.main(
            [
                "protoc",
                f"-I{ROOT / 'protos'}",
                f"-I{include}",
                f"--descriptor_set_out={out}",
                "extauthz/admin/v1/admin.proto",
            ]
        )
        == 0
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    for message in fresh.message_type:
        _drop_json_names(message)
    committed = descriptor_pb2.FileDescriptorProto.FromString(admin_pb2.DESCRIPTOR.serialized_pb)
    assert committed == fresh, "extauthz/_gen is stale: run python scripts/gen_protos.py"


def test_generated_files_are_current() -> None:
    """Regenerating changes nothing but generator version stamps."""
    stale = _script().stale_files(ignore_versions=True)
    assert stale == [], f"stale generated files {stale}: run python scripts/gen_protos.py"


def test_every_rpc_has_a_servicer_method() -> None:
    """The servicer implements every RPC of the service (none falls back to UNIMPLEMENTED)."""
    from extauthz.admin.grpc_api import AdminServicer

    methods = admin_pb2.DESCRIPTOR.services_by_name["Admin"].methods_by_name
    for name in methods:
        assert getattr(AdminServicer, name) is not getattr(admin_pb2_grpc.AdminServicer, name)

"""Validate Istio and Gateway API objects with npm's ``@kubernetes-models`` packages, offline.

Two checks per object, both from the packages' own definitions (generated from the projects'
CRDs): ``tsc --strict`` type-checks each object as a literal of its model's TypeScript type, which
refuses unknown fields (the CRDs' JSON schemas allow them), and the model's ``validate()`` runs
its JSON schema (required fields, enums, patterns, ranges).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .tools import validators

PACKAGES = {
    "security.istio.io": "@kubernetes-models/istio",
    "networking.istio.io": "@kubernetes-models/istio",
    "telemetry.istio.io": "@kubernetes-models/istio",
    "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
}


def supported(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).partition("/")[0] in PACKAGES


def validate(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every problem found in ``docs`` (each must be of a supported API group), as text."""
    docs = list(docs)
    imports: dict[str, str] = {}
    entries = []
    for i, doc in enumerate(docs):
        group, _, version = doc["apiVersion"].partition("/")
        kind = doc["kind"]
        alias = f"{kind}_{group.replace('.', '_')}_{version}"
        module = f"{PACKAGES[group]}/{group}/{version}/{kind}"
        imports[alias] = f'import {{ {kind} as {alias} }} from "{module}";'
        name = f"{kind}/{doc['metadata']['name']}"
        # The model sets apiVersion and kind itself: its import path is chosen by them.
        data = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
        entries.append(
            f"  [{json.dumps(name)}, new {alias}({json.dumps(data, indent=1)})],  // {i}"
        )
    source = "\n".join(
        [
            *imports.values(),
            "export const objects: Array<[string, { validate(): void }]> = [",
            *entries,
            "];",
            "",
        ]
    )
    npm = validators()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(dir=npm) as tmp:  # inside: node_modules resolves upwards
        work = Path(tmp)
        (work / "objects.mts").write_text(source)
        (work / "validate.mts").write_text((npm / "validate.mts").read_text())
        tsc = subprocess.run(
            [
                str(npm / "node_modules" / ".bin" / "tsc"),
                "--strict",
                "--skipLibCheck",
                "--module",
                "nodenext",
                "--moduleResolution",
                "nodenext",
                "--target",
                "es2022",
                "--outDir",
                "out",
                "objects.mts",
                "validate.mts",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if tsc.returncode != 0:
            problems.extend(_tsc_errors(tsc.stdout + tsc.stderr, source))
        run = subprocess.run(
            ["node", "out/validate.mjs"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, f"the validator did not run:\n{run.stderr[-2000:]}"
        for result in json.loads(run.stdout):
            if not result["ok"]:
                problems.append(f"{result['name']}: {result['error']}")
    return problems


def _tsc_errors(output: str, source: str) -> list[str]:
    """tsc's messages, each with the name of the object whose literal holds the error."""
    lines = source.splitlines()
    out = []
    for message in output.strip().splitlines():
        where = message.partition("(")[2].partition(",")[0]
        owner = "?"
        if where.isdigit():
            for line in reversed(lines[: int(where)]):
                if line.startswith('  ["'):
                    owner = json.loads(line[3:].partition(",")[0])
                    break
        out.append(f"{owner}: {message}")
    return out

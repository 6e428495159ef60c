"""Render the kustomizations under deploy/ with the real ``kubectl kustomize`` and look inside.

Nothing here talks to a cluster: ``kubectl kustomize`` is an offline build.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
ENVOY_K8S = BASE / "envoy.yaml"
POLICY_K8S = BASE / "policy.yaml"
SETTINGS_ENV = BASE / "settings.env"
KUSTOMIZATIONS = {
    "base": BASE,
    "sqlite": DEPLOY / "overlays" / "sqlite",
    "postgres": DEPLOY / "overlays" / "postgres",
}
# The standalone authorizer and the mesh/gateway attachments (tests/deploy/test_mesh.py).
MESH_KUSTOMIZATIONS = {
    "authorizer": DEPLOY / "authorizer",
    "istio": DEPLOY / "istio",
    "envoy-gateway": DEPLOY / "envoy-gateway",
}
DEPLOYMENT = "extauthz-gateway"

Doc = dict[str, Any]
# What every kustomization here renders (besides what an attachment adds).
CORE_KINDS = (
    "ConfigMap",
    "Deployment",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Service",
    "ServiceAccount",
)


def kubectl() -> str | None:
    """The kubectl binary, or None (the tests that need it are skipped, saying so)."""
    return shutil.which("kubectl")


@functools.cache
def render(name: str) -> tuple[Doc, ...]:
    """``kubectl kustomize`` of one kustomization: every object it renders."""
    binary = kubectl()
    assert binary is not None, "kubectl not found"
    done = subprocess.run(
        [binary, "kustomize", str({**KUSTOMIZATIONS, **MESH_KUSTOMIZATIONS}[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {name} failed:\n{done.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(done.stdout) if d)
    assert docs, f"kubectl kustomize {name} rendered nothing"
    return docs


def schema_problems(docs: Iterable[Doc], version: str) -> list[str]:
    """Every object of a built-in kind checked against the Kubernetes OpenAPI schema of
    ``version`` (kubernetes-validate, strict: unknown fields are errors)."""
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    return problems


def pod_and_envoy_config() -> tuple[Doc, str]:
    """The sqlite overlay's pod spec and the Envoy config its ConfigMap holds, as kustomize renders
    them; without kubectl, the base's files as they are (what the overlay changes, the state
    volume and the strategy, does not matter to a pod run on loopback)."""
    if kubectl() is not None:
        docs = render("sqlite")
        return pod_spec(docs), configmap(docs, "extauthz-envoy")["data"]["envoy.yaml"]
    deployment = yaml.safe_load((BASE / "deployment.yaml").read_text())
    return deployment["spec"]["template"]["spec"], ENVOY_K8S.read_text()


def one(docs: tuple[Doc, ...], kind: str, name: str | None = None) -> Doc:
    """The single object of ``kind`` (named ``name``, if given)."""
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def configmap(docs: tuple[Doc, ...], base_name: str) -> Doc:
    """A generated ConfigMap, whether or not kustomize appended a content hash to its name."""
    found = [
        d
        for d in docs
        if d["kind"] == "ConfigMap"
        and (
            d["metadata"]["name"] == base_name
            or d["metadata"]["name"].rpartition("-")[0] == base_name
        )
    ]
    assert len(found) == 1, f"expected one ConfigMap {base_name}, found {len(found)}"
    return found[0]


def pod_spec(docs: tuple[Doc, ...]) -> Doc:
    spec: Doc = one(docs, "Deployment", DEPLOYMENT)["spec"]["template"]["spec"]
    return spec


def all_containers(pod: Mapping[str, Any]) -> Iterator[Doc]:
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def container(pod: Mapping[str, Any], name: str) -> Doc:
    for c in all_containers(pod):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name!r} in the pod")


def flag(args: list[str], name: str) -> str:
    """The value after ``name`` in a container's args."""
    assert name in args, f"{name} not in {args}"
    return args[args.index(name) + 1]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def container_port(c: Mapping[str, Any], port: int | str) -> int:
    """A probe's port (a number or a containerPort name) as a number."""
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"container {c['name']} has no port named {port!r}")


def mount_of(c: Mapping[str, Any], volume: str) -> Doc:
    found = [m for m in c.get("volumeMounts", []) if m["name"] == volume]
    assert len(found) == 1, f"container {c['name']}: expected one mount of {volume}"
    mount: Doc = found[0]
    return mount


def volume(pod: Mapping[str, Any], name: str) -> Doc:
    for v in pod.get("volumes", []):
        if v["name"] == name:
            return dict(v)
    raise AssertionError(f"no volume {name!r}")


def env_value(c: Mapping[str, Any], name: str) -> Doc:
    for e in c.get("env", []):
        if e["name"] == name:
            return dict(e)
    raise AssertionError(f"container {c['name']} has no env {name}")


def read_env_file(path: Path) -> dict[str, str]:
    """A kustomize ``envs:`` file: KEY=VALUE lines, # comments."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def load_envoy(text: str) -> Doc:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def hcm(config: Mapping[str, Any], listener: str) -> Doc:
    for ln in config["static_resources"]["listeners"]:
        if ln["name"] == listener:
            for chain in ln["filter_chains"]:
                for f in chain["filters"]:
                    if f["name"] == "envoy.filters.network.http_connection_manager":
                        typed: Doc = f["typed_config"]
                        return typed
    raise AssertionError(f"no http_connection_manager on listener {listener!r}")


def http_filter(config: Mapping[str, Any], listener: str, name: str) -> Doc:
    for f in hcm(config, listener)["http_filters"]:
        if f["name"] == name:
            typed: Doc = f["typed_config"]
            return typed
    raise AssertionError(f"no {name} on listener {listener!r}")


def listener(config: Mapping[str, Any], name: str) -> Doc:
    for ln in config["static_resources"]["listeners"]:
        if ln["name"] == name:
            return dict(ln)
    raise AssertionError(f"no listener {name!r}")


def cluster(config: Mapping[str, Any], name: str) -> Doc:
    for c in config["static_resources"]["clusters"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no cluster {name!r}")


def cluster_endpoints(c: Mapping[str, Any]) -> list[Doc]:
    return [
        ep["endpoint"]["address"]["socket_address"]
        for group in c["load_assignment"]["endpoints"]
        for ep in group["lb_endpoints"]
    ]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a nested YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)

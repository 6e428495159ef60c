"""deploy/helm/extauthz: ``helm lint`` and ``helm template`` (helm from tests/deploy/tools.py),
every rendered object validated against the Kubernetes schemas, and the chart's pods, Services,
NetworkPolicies, budgets, volumes and ConfigMaps equal to what kustomize renders from deploy/
for the same shape: the two install paths cannot drift apart."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .kube import DEPLOY, Doc, configmap, one, render, schema_problems
from .tools import helm

pytestmark = pytest.mark.usefixtures("need_kubectl")

CHART = DEPLOY / "helm" / "extauthz"
# chart values -> the kustomization that renders the same shape
SHAPES: dict[str, tuple[list[str], str]] = {
    "gateway-sqlite": ([], "sqlite"),
    "gateway-postgres": (["--set", "state.type=postgres"], "postgres"),
    "authorizer": (["--set", "mode=authorizer"], "authorizer"),
}
SCHEMA_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
_HASHED = re.compile(r"^(extauthz-(?:envoy|env))-[a-z0-9]{10}$")


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120, check=False)


def template(*args: str) -> tuple[Doc, ...]:
    done = run_helm("template", "extauthz", str(CHART), "--namespace", "llm-gateway", *args)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def unhash(node: Any) -> Any:
    """kustomize's generated ConfigMap names without their content hash."""
    if isinstance(node, dict):
        return {k: unhash(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unhash(v) for v in node]
    if isinstance(node, str):
        return _HASHED.sub(r"\1", node)
    return node


def pod(deployment: Doc) -> Doc:
    """A Deployment's pod spec, volumes by name (their order means nothing; a kustomize patch
    moves the one it replaces)."""
    spec = dict(deployment["spec"]["template"]["spec"])
    spec["volumes"] = sorted(spec["volumes"], key=lambda v: v["name"])
    return spec


def by_kind(docs: tuple[Doc, ...]) -> dict[tuple[str, str], Doc]:
    return {(d["kind"], _HASHED.sub(r"\1", d["metadata"]["name"])): d for d in docs}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_helm_lint_is_clean(shape: str) -> None:
    done = run_helm("lint", "--strict", str(CHART), *SHAPES[shape][0])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_rendered_objects_validate_against_the_kubernetes_schema(shape: str, version: str) -> None:
    docs = template(*SHAPES[shape][0])
    problems = schema_problems(docs, version)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_chart_renders_what_kustomize_renders(shape: str) -> None:
    """Same objects (kind and name), same pod spec, replicas, strategy, Service, budget,
    NetworkPolicy, volume claim and ConfigMap data; only labels and annotations differ."""
    values, kustomization = SHAPES[shape]
    chart = by_kind(template(*values))
    kust = by_kind(render(kustomization))
    assert sorted(chart) == sorted(kust)
    for key, ours in chart.items():
        theirs = unhash(kust[key])
        kind = key[0]
        if kind == "Deployment":
            for field in ("replicas", "strategy", "selector"):
                assert ours["spec"].get(field) == theirs["spec"].get(field), (key, field)
            assert pod(ours) == pod(theirs), key
            assert (
                ours["spec"]["template"]["metadata"]["labels"]
                == theirs["spec"]["template"]["metadata"]["labels"]
            )
        elif kind == "ConfigMap":
            assert ours["data"] == theirs["data"], key
        elif kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "PersistentVolumeClaim"):
            assert ours["spec"] == theirs["spec"], key
        else:
            assert kind == "ServiceAccount"
            assert ours["automountServiceAccountToken"] is False


def test_policy_and_settings_come_from_values() -> None:
    policy = (
        "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"
        "extauthz:\n  shadow_mode: true\n"
    )
    docs = template(
        "--set-string", f"policy={policy}", "--set", "settings.JWT_AUDIENCE=other-audience"
    )
    assert configmap(docs, "extauthz-policy")["data"]["policy.yaml"] == policy
    env = configmap(docs, "extauthz-env")["data"]
    assert env["JWT_AUDIENCE"] == "other-audience"
    assert env["JWT_ISSUER"] == "https://idp.example.com"  # the defaults stay


def test_an_envoy_config_change_rolls_the_pods_a_policy_change_does_not() -> None:
    def annotations(*args: str) -> dict[str, str]:
        meta = one(template(*args), "Deployment")["spec"]["template"]["metadata"]
        return dict(meta["annotations"])

    base = annotations()
    assert annotations("--set-string", "envoyConfig=admin: {}\n") != base
    assert annotations("--set-string", "policy=model_list: []\n") == base


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "mode=sidecar"], "mode must be gateway or authorizer"),
        (["--set", "replicas=3"], "replicas must be 1"),
        (["--set", "mode=authorizer", "--set", "state.type=sqlite"], "use state.type postgres"),
    ],
)
def test_impossible_values_are_refused(args: list[str], message: str) -> None:
    done = run_helm("template", "extauthz", str(CHART), *args)
    assert done.returncode != 0
    assert message in done.stderr


def test_the_image_is_configurable() -> None:
    docs = template("--set", "image.tag=0.2.0@sha256:" + "a" * 64, "--set", "minter.enabled=false")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["extauthz"]
    assert pod["initContainers"][0]["image"].endswith(":0.2.0@sha256:" + "a" * 64)
    assert not [v for v in pod["volumes"] if v["name"].endswith("-token")]

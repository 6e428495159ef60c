"""deploy/ as kustomize: every kustomization renders, every object validates against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors), and the pod
is wired the way docs/deploy.md says (start order, probes, mounts, security, network)."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from .kube import (
    CORE_KINDS,
    ENVOY_K8S,
    KUSTOMIZATIONS,
    POLICY_K8S,
    REPO,
    all_containers,
    cluster,
    configmap,
    container,
    container_port,
    env_value,
    flag,
    listener,
    load_envoy,
    mount_of,
    one,
    pod_spec,
    port_of,
    render,
    schema_problems,
    volume,
    walk,
)

pytestmark = pytest.mark.usefixtures("need_kubectl")

NAMES = sorted(KUSTOMIZATIONS)
# The oldest Kubernetes the manifests are written for (native sidecars on by default since 1.29,
# the preStop sleep action since 1.30) and the newest schema kubernetes-validate ships.
SCHEMA_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
SIDECAR_PORTS = {9191, 9192, 9193, 9902}


@pytest.mark.parametrize("name", NAMES)
def test_kustomization_renders(name: str) -> None:
    kinds = sorted({d["kind"] for d in render(name)})
    assert set(CORE_KINDS) <= set(kinds), kinds
    assert "Secret" not in kinds, "secrets are created by the user, never shipped"


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("name", NAMES)
def test_objects_validate_against_the_kubernetes_schema(name: str, version: str) -> None:
    problems = schema_problems(render(name), version)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_configmaps_carry_the_files_as_they_are(name: str) -> None:
    """The Envoy config and the policy in the ConfigMaps are the exact files the tests use;
    the policy's name is stable (edited in place, hot-reloaded), Envoy's carries a hash."""
    docs = render(name)
    envoy_cm = configmap(docs, "extauthz-envoy")
    policy_cm = configmap(docs, "extauthz-policy")
    assert envoy_cm["data"] == {"envoy.yaml": ENVOY_K8S.read_text()}
    assert policy_cm["data"] == {"policy.yaml": POLICY_K8S.read_text()}
    assert policy_cm["metadata"]["name"] == "extauthz-policy"
    assert re.fullmatch(r"extauthz-envoy-[a-z0-9]{10}", envoy_cm["metadata"]["name"])
    pod = pod_spec(docs)
    assert volume(pod, "envoy-config")["configMap"]["name"] == envoy_cm["metadata"]["name"]
    assert volume(pod, "policy")["configMap"]["name"] == "extauthz-policy"


@pytest.mark.parametrize("name", NAMES)
def test_config_files_are_read_from_directory_mounts(name: str) -> None:
    """A subPath mount of a ConfigMap is never updated: policy edits would never arrive."""
    pod = pod_spec(render(name))
    for c in all_containers(pod):
        for m in c.get("volumeMounts", []):
            assert "subPath" not in m and "subPathExpr" not in m, (c["name"], m)
    for name_ in ("extauthz", "mint"):
        c = container(pod, name_)
        config = flag(c["args"], "--config")
        assert config == mount_of(c, "policy")["mountPath"] + "/policy.yaml"
    envoy = container(pod, "envoy")
    assert flag(envoy["args"], "-c") == mount_of(envoy, "envoy-config")["mountPath"] + "/envoy.yaml"


@pytest.mark.parametrize("name", NAMES)
def test_three_containers_start_in_order(name: str) -> None:
    """mint, then extauthz (native sidecars, each started once its startupProbe passes), then
    Envoy; the images are pinned."""
    pod = pod_spec(render(name))
    assert [c["name"] for c in pod["initContainers"]] == ["mint", "extauthz"]
    assert [c["name"] for c in pod["containers"]] == ["envoy"]
    for c in pod["initContainers"]:
        assert c["restartPolicy"] == "Always", c["name"]
        assert "startupProbe" in c, c["name"]
    assert container(pod, "mint")["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container(pod, "mint")["args"][0] == "mint"
    assert "--once" not in container(pod, "mint")["args"]
    assert container(pod, "extauthz")["args"][0] == "serve"
    images = {c["name"]: c["image"] for c in all_containers(pod)}
    assert images == {
        "mint": "ghcr.io/extauthz/extauthz:0.1.0",
        "extauthz": "ghcr.io/extauthz/extauthz:0.1.0",
        "envoy": "envoyproxy/envoy:v1.40.0",
    }


@pytest.mark.parametrize("name", NAMES)
def test_probes_point_at_the_ports_the_processes_listen_on(name: str) -> None:
    pod = pod_spec(render(name))
    serve = container(pod, "extauthz")
    grpc_port = port_of(flag(serve["args"], "--grpc-address"))
    for kind, service in (
        ("startupProbe", ""),
        ("livenessProbe", ""),
        ("readinessProbe", "readiness"),
    ):
        probe = serve[kind]["grpc"]
        assert (probe["port"], probe.get("service", "")) == (grpc_port, service), kind

    mint = container(pod, "mint")
    mint_port = port_of(flag(mint["args"], "--http-address"))
    assert "readinessProbe" not in mint  # documented: an expired credential is not a pod failure
    for kind, path in (("startupProbe", "/readyz"), ("livenessProbe", "/healthz")):
        probe = mint[kind]["httpGet"]
        assert (container_port(mint, probe["port"]), probe["path"]) == (mint_port, path), kind

    envoy = container(pod, "envoy")
    ops = listener(load_envoy(ENVOY_K8S.read_text()), "ops")["address"]["socket_address"]
    probe = envoy["readinessProbe"]["httpGet"]
    assert (container_port(envoy, probe["port"]), probe["path"]) == (ops["port_value"], "/ready")
    assert container_port(envoy, envoy["livenessProbe"]["tcpSocket"]["port"]) == ops["port_value"]


@pytest.mark.parametrize("name", NAMES)
def test_every_container_is_locked_down(name: str) -> None:
    pod = pod_spec(render(name))
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True
    # The image's user (deploy/Dockerfile: USER 65532:65532), and fsGroup for the volumes.
    assert ctx["runAsUser"] == ctx["runAsGroup"] == ctx["fsGroup"] == 65532
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    for c in all_containers(pod):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
        assert not sc.get("privileged"), c["name"]
        assert sc.get("runAsUser", ctx["runAsUser"]) == ctx["runAsUser"], (
            "the minter's 0600 files must be readable by Envoy: one user for all"
        )
        res = c["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]), c["name"]
        assert "memory" in res["limits"], c["name"]


@pytest.mark.parametrize("name", NAMES)
def test_credentials_are_shared_in_memory(name: str) -> None:
    pod = pod_spec(render(name))
    creds = volume(pod, "creds")
    assert creds["emptyDir"]["medium"] == "Memory"
    mint, envoy = container(pod, "mint"), container(pod, "envoy")
    out = flag(mint["args"], "--out")
    assert mount_of(mint, "creds")["mountPath"] == out
    assert not mount_of(mint, "creds").get("readOnly")
    assert mount_of(envoy, "creds") == {"name": "creds", "mountPath": out, "readOnly": True}
    watched = {
        v["path"] for k, v in walk(load_envoy(ENVOY_K8S.read_text())) if k == "watched_directory"
    }
    assert watched == {out}
    assert all(c["name"] in ("mint", "envoy") for c in all_containers(pod) if _mounts(c, "creds"))


@pytest.mark.parametrize("name", NAMES)
def test_only_envoys_listener_is_reachable(name: str) -> None:
    docs = render(name)
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    policy = one(docs, "NetworkPolicy")["spec"]
    selector = policy["podSelector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    assert all(rule.get("ports") for rule in policy["ingress"]), "a rule without ports opens all"
    to_all = {p["port"] for rule in policy["ingress"] if "from" not in rule for p in rule["ports"]}
    envoy_config = load_envoy(ENVOY_K8S.read_text())
    ingress_port = listener(envoy_config, "ingress")["address"]["socket_address"]["port_value"]
    assert to_all == {ingress_port}
    # The sidecar's gRPC port, to the other gateway pods only (their Envoys' fallback).
    pod = pod_spec(docs)
    grpc_port = container_port(container(pod, "extauthz"), "grpc")
    for rule in (r for r in policy["ingress"] if "from" in r):
        assert [p["port"] for p in rule["ports"]] == [grpc_port]
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, "no namespaceSelector or ipBlock"
            assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()
    declared = {p["containerPort"] for c in all_containers(pod) for p in c.get("ports", [])}
    assert declared >= SIDECAR_PORTS and not (to_all & SIDECAR_PORTS)
    # Envoy's admin API: loopback only, and never a container port.
    admin = envoy_config["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1" and admin["port_value"] not in declared
    service = one(docs, "Service", "extauthz-gateway")["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(ingress_port, "http")]
    assert container_port(container(pod, "envoy"), "http") == ingress_port
    # The fleet's sidecars, for Envoy's fallback: ready pods only, the gRPC port only.
    sidecars = one(docs, "Service", "extauthz-gateway-sidecars")["spec"]
    assert sidecars["clusterIP"] == "None" and not sidecars.get("publishNotReadyAddresses")
    assert sidecars["selector"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in sidecars["ports"]] == [(grpc_port, "grpc")]
    fleet = cluster(envoy_config, "extauthz")["load_assignment"]["endpoints"][1]
    address = fleet["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("extauthz-gateway-sidecars", grpc_port)
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()


def test_state_store_per_overlay() -> None:
    """base: SQLite on an emptyDir; sqlite: one replica, Recreate, a PVC; postgres: a fleet with
    the URL from a Secret."""
    for name in ("base", "sqlite"):
        docs = render(name)
        pod = pod_spec(docs)
        serve = container(pod, "extauthz")
        url = env_value(serve, "EXTAUTHZ_STATE_URL")["value"]
        state_dir = mount_of(serve, "state")["mountPath"]
        # Four slashes: an absolute path inside the state volume.
        assert url == f"sqlite:///{state_dir}/state.db"
        assert one(docs, "Deployment")["spec"]["replicas"] == 1
    sqlite = render("sqlite")
    assert one(sqlite, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    claim = volume(pod_spec(sqlite), "state")
    assert set(claim) == {"name", "persistentVolumeClaim"}
    pvc = one(sqlite, "PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]

    fleet = render("postgres")
    deployment = one(fleet, "Deployment")["spec"]
    assert deployment["replicas"] >= 2
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = pod_spec(fleet)
    serve = container(pod, "extauthz")
    assert env_value(serve, "EXTAUTHZ_STATE_URL") == {
        "name": "EXTAUTHZ_STATE_URL",
        "valueFrom": {"secretKeyRef": {"name": "extauthz-state", "key": "url"}},
    }
    assert "state" not in {v["name"] for v in pod["volumes"]}
    assert "state" not in {m["name"] for m in serve["volumeMounts"]}


@pytest.mark.parametrize("name", NAMES)
def test_every_volume_has_one_source_and_every_reference_resolves(name: str) -> None:
    docs = render(name)
    pod = pod_spec(docs)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for v in pod["volumes"]:
        assert len(v) == 2, f"volume {v['name']} has several sources: {v}"
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in names
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in names
    mounted = {m["name"] for c in all_containers(pod) for m in c.get("volumeMounts", [])}
    assert mounted == {v["name"] for v in pod["volumes"]}
    secrets = set()
    for c in all_containers(pod):
        for src in c.get("envFrom", []):
            assert ("ConfigMap", src["configMapRef"]["name"]) in names
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                secrets.add((ref["name"], ref["key"]))
            # Credentials only ever come from Secrets, never as literals in the manifest.
            if re.search(r"KEY|SECRET|PASSWORD|STATE_URL", e["name"]) and "value" in e:
                assert e["value"].startswith("sqlite:"), e
    assert ("ServiceAccount", pod["serviceAccountName"]) in names
    docs_text = (REPO / "docs" / "deploy.md").read_text()
    for secret, key in secrets:  # every Secret the user must create is documented
        assert secret in docs_text and key in docs_text, (secret, key)


def _mounts(c: dict[str, object], name: str) -> bool:
    mounts = c.get("volumeMounts", [])
    assert isinstance(mounts, list)
    return any(m["name"] == name for m in mounts)

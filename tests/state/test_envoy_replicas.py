"""Two replicas behind one real Envoy, under steady load: a replica that gets SIGTERM, and one
that is killed (SIGKILL), cost no request anything.

The Envoy settings under test are the shipped ones: envoy.yaml with both replicas listed as
endpoints of its ``extauthz`` cluster, and deploy/base/envoy.yaml's ``extauthz`` cluster and check
call (the pod's own sidecar first, the fleet behind it) grafted into the same listener, with the
pod's sidecar played by replica A and the fleet by replica B. The load mixes allowed, forbidden,
blocked and token-less requests; each must get its own answer (200, 403, 403, 401) through both
events. During the SIGTERM, replica A's readiness is watched on both surfaces: it must read
NOT_SERVING on gRPC and 503 on ``/readyz`` before its gRPC port stops accepting.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz.dev.envoyconf import EnvoyPorts, EnvoyProcess, load_config, render_envoy_config
from tests.deploy.kube import ENVOY_K8S, load_envoy
from tests.integration.harness import LoopThread, request, start_upstream
from tests.state.conftest import MASTER_KEY, PolicyFiles, token, write_policy
from tests.state.processes import ServeProcess

REPO = Path(__file__).resolve().parents[2]
EXT_AUTHZ = "envoy.filters.http.ext_authz"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

ALLOWED = token({"sub": "svc-b", "client_id": "team-b"}, ttl=3600)
BLOCKED = token({"sub": "svc-a", "client_id": "team-a"}, ttl=3600)
CHAT = json.dumps({"model": "gpt-4o", "messages": []}).encode()
# kind: (path, token, the only acceptable status)
KINDS: dict[str, tuple[str, str | None, int]] = {
    "allowed": ("/v1/chat/completions", ALLOWED, 200),
    "forbidden": ("/key/generate", ALLOWED, 403),  # a management route: admins only
    "blocked": ("/v1/chat/completions", BLOCKED, 403),
    "token-less": ("/v1/chat/completions", None, 401),
}


@dataclass
class Load:
    """Requests through Envoy from a few threads, paced to about ``rate`` per second."""

    port: int
    rate: float = 100.0
    workers: int = 6
    results: list[tuple[float, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        kinds = list(KINDS)

        def run(w: int) -> None:
            i = w
            pause = self.workers / self.rate
            while not self._stop.is_set():
                kind = kinds[i % len(kinds)]
                path, tok, _ = KINDS[kind]
                headers = {"content-type": "application/json"}
                if tok is not None:
                    headers["authorization"] = f"Bearer {tok}"
                try:
                    status = request(self.port, "POST", path, headers, CHAT, timeout=10).status
                except OSError:
                    status = 0
                self.results.append((time.monotonic(), kind, status))
                i += 1
                self._stop.wait(pause)

        self._threads = [threading.Thread(target=run, args=(w,)) for w in range(self.workers)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def failures(self) -> list[tuple[float, str, int]]:
        return [r for r in self.results if r[2] != KINDS[r[1]][2]]

    def settled(self, n: int) -> bool:
        """The last ``n`` requests got their answers."""
        last = self.results[-n:]
        if len(last) == n and all(status == KINDS[kind][2] for _, kind, status in last):
            return True
        print("not yet:", [r for r in last if r[2] != KINDS[r[1]][2]][:5])
        return False

    def between(self, start: float, end: float) -> int:
        return sum(1 for t, _, _ in self.results if start <= t <= end)


@dataclass
class Watch:
    """Replica A's two readiness surfaces and its gRPC port, every 20 ms, until the port closes:
    how often each surface said "not ready" while the port still accepted connections after."""

    replica: ServeProcess
    envoy: EnvoyProcess
    not_serving: int = 0  # gRPC health "readiness" NOT_SERVING, port open afterwards
    readyz_503: int = 0  # GET /readyz 503 saying "draining", port open afterwards
    envoy_off: int = 0  # Envoy's health check took the replica out, port open afterwards
    closed: bool = False  # the port refused a connection before the process ended

    def run(self) -> None:
        proc = self.replica.proc
        assert proc is not None
        channel = grpc.insecure_channel(f"127.0.0.1:{self.replica.grpc_port}")
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            while proc.poll() is None:
                grpc_off = _health(stub) == NOT_SERVING
                http_off = _readyz(self.replica.http_port) == 503
                envoy_off = not healthy_in_envoy(self.envoy, self.replica.grpc_port)
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.replica.grpc_port)) != 0:
                        self.closed = True
                        return
                self.not_serving += grpc_off
                self.readyz_503 += http_off
                self.envoy_off += envoy_off
                time.sleep(0.02)
        finally:
            channel.close()


def _health(stub: health_pb2_grpc.HealthStub) -> int:
    try:
        req = health_pb2.HealthCheckRequest(service="readiness")
        return int(stub.Check(req, timeout=0.5).status)
    except grpc.RpcError:
        return -1


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
        return exc.code if body.get("draining") is True else -exc.code
    except OSError:
        return -1


def _endpoint(port: int) -> dict[str, Any]:
    return {
        "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}
    }


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in config["static_resources"]["clusters"] if c["name"] == name)


def _ext_authz(config: dict[str, Any]) -> dict[str, Any]:
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for h in f["typed_config"].get("http_filters", []):
                    if h["name"] == EXT_AUTHZ:
                        typed: dict[str, Any] = h["typed_config"]
                        return typed
    raise AssertionError("no ext_authz filter")


def envoy_config(variant: str, a: ServeProcess, b: ServeProcess, upstream: int) -> dict[str, Any]:
    """The shipped envoy.yaml on loopback, with the ``extauthz`` cluster of ``variant``."""
    ports = EnvoyPorts(
        listener=0, admin=0, extauthz_grpc=a.grpc_port, extauthz_http=a.http_port, upstream=upstream
    )
    config = render_envoy_config(load_config(REPO / "envoy.yaml"), ports)
    cluster = _cluster(config, "extauthz")
    if variant == "envoy.yaml":
        group = cluster["load_assignment"]["endpoints"][0]
        group["lb_endpoints"] = [_endpoint(a.grpc_port), _endpoint(b.grpc_port)]
        return config
    k8s = load_envoy(ENVOY_K8S.read_text())
    _ext_authz(config)["grpc_service"] = copy.deepcopy(_ext_authz(k8s)["grpc_service"])
    graft = copy.deepcopy(_cluster(k8s, "extauthz"))
    local, fleet = graft["load_assignment"]["endpoints"]
    assert (local.get("priority", 0), fleet["priority"]) == (0, 1)
    local["lb_endpoints"] = [_endpoint(a.grpc_port)]  # the pod's own sidecar
    fleet["lb_endpoints"] = [_endpoint(b.grpc_port)]  # the headless Service's addresses
    config["static_resources"]["clusters"] = [
        graft if c["name"] == "extauthz" else c for c in config["static_resources"]["clusters"]
    ]
    return config


def healthy_in_envoy(envoy: EnvoyProcess, port: int) -> bool:
    with urllib.request.urlopen(envoy.admin_url + "/clusters", timeout=2) as resp:
        text = resp.read().decode()
    return f"extauthz::127.0.0.1:{port}::health_flags::healthy" in text


def wait(what: str, cond: Any, within: float, *procs: ServeProcess) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.log_path.name}\n{p.log_tail()}" for p in procs)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.05)


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@pytest.mark.envoy
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["envoy.yaml", "deploy/base/envoy.yaml"])
def test_a_replica_stopped_or_killed_under_load_costs_no_request(
    variant: str, tmp_path: Path, loop: LoopThread
) -> None:
    files: PolicyFiles = write_policy(tmp_path, upsert=False)
    state = f"sqlite:///{tmp_path}/state.db"
    a = ServeProcess(files, state, tmp_path, "a", drain_delay=None)  # the shipped delays
    b = ServeProcess(files, state, tmp_path, "b", drain_delay=None)
    runner, upstream = loop.run(start_upstream())
    envoy: EnvoyProcess | None = None
    load: Load | None = None
    try:
        a.start()
        b.start()
        loop.run(a.wait_ready())
        loop.run(b.wait_ready())
        admin = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
        body = json.dumps({"team_id": "team-a"}).encode()
        assert request(a.http_port, "POST", "/team/block", admin, body).status == 200

        envoy = EnvoyProcess(envoy_config(variant, a, b, upstream), tmp_path, die_with_parent=True)
        envoy.start()
        envoy.wait_ready(20.0)
        assert envoy.admin_url
        for r in (a, b):
            wait(
                "Envoy's health check to pass",
                lambda r=r: healthy_in_envoy(envoy, r.grpc_port),
                15,
                a,
                b,
            )

        load = Load(envoy.listener_port)
        load.start()
        wait("every kind of request to get its answer", lambda: load.settled(40), 20, a, b)
        # The block reached B through the store (SQLite polling): from here every answer counts.
        load.results.clear()
        time.sleep(1.0)

        # 1. SIGTERM: readiness off on both surfaces, the delay, then the port closes.
        assert a.proc is not None
        watch = Watch(a, envoy)
        watcher = threading.Thread(target=watch.run)
        watcher.start()
        sigterm_at = time.monotonic()
        a.proc.terminate()
        watcher.join(30)
        assert a.proc.wait(15) == 0, a.log_tail()
        drained_at = time.monotonic()
        # Seen not ready on both surfaces while the port still took connections, and Envoy
        # routing around it by then (its health check, not only its retries).
        assert watch.not_serving > 0 and watch.readyz_503 > 0, watch
        assert watch.envoy_off > 0, watch
        time.sleep(1.0)

        a.start()
        loop.run(a.wait_ready())
        wait("Envoy to take A back", lambda: healthy_in_envoy(envoy, a.grpc_port), 15, a, b)
        time.sleep(2.0)

        # 2. SIGKILL: no drain at all; Envoy retries the checks A never answered elsewhere.
        killed_at = time.monotonic()
        a.proc.kill()
        a.proc.wait(10)
        time.sleep(4.0)
        load.stop()

        assert load.between(sigterm_at, drained_at) > 50, "too little load during the SIGTERM"
        assert load.between(killed_at, killed_at + 4.0) > 50, "too little load around the kill"
        failures = load.failures()
        summary = {k: sum(1 for _, kind, _ in load.results if kind == k) for k in KINDS}
        assert not failures, f"{len(failures)} of {len(load.results)} failed: {failures[:20]}"
        print(
            f"{variant}: {len(load.results)} requests {summary}, 0 failed; not ready "
            f"{watch.not_serving}x (gRPC) and {watch.readyz_503}x (/readyz), out of Envoy's "
            f"rotation {watch.envoy_off}x, before the port closed"
        )
    finally:
        if load is not None:
            load.stop()
        if envoy is not None:
            envoy.stop()
        loop.run(a.stop())
        loop.run(b.stop())
        loop.run(runner.cleanup())

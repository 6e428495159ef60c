"""Wire the serving sidecar together, run it, and shut it down gracefully.

Start-up order: policy (refuse to start if invalid) → keys (background) → gRPC (ext_authz,
health, reflection) → HTTP. Liveness (health service "") is SERVING once the port is bound;
readiness (service "readiness") once the policy is loaded and signing keys were fetched.

SIGTERM (or SIGINT), in the order load balancers need:
1. readiness NOT_SERVING on both surfaces (gRPC ``readiness`` and ``GET /readyz``, which says
   ``draining``) while everything keeps serving, liveness included;
2. ``drain_delay`` seconds for health checkers (Envoy's, the kubelet's) to notice and send
   their checks elsewhere; a second signal ends the wait early;
3. stop accepting (gRPC and HTTP-service mode together), answer every check already received
   within ``SHUTDOWN_GRACE_SECONDS``, then close the HTTP side and the store, and exit.
Checks that reach the gRPC port once step 3 has begun are refused (UNAVAILABLE); a client that
honours readiness sends none by then, which is what the delay is for (the shipped Envoy configs
also retry such a check on another replica).

Threads: the gRPC port is grpcio's synchronous server (pygrpc-native's with ``--grpc-server
pygrpc-native``: extauthz/grpcserver.py) on an ``ElasticPool``
(``GRPC_THREADS`` at work, up to ``GRPC_MAX_THREADS`` while some wait for the event loop:
extauthz/threads.py); ext_authz checks are decided on the pool's threads.
Everything else runs on one asyncio loop in the main thread: the HTTP-service mode, the admin API
(the gRPC admin calls are handed to it), key refreshes, the state watcher and policy reloads, and
the rest of any check that must wait for I/O (a key refetch, a large body).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from aiohttp import web
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from extauthz import metrics, threads
from extauthz.admin.grpc_api import add_admin_service
from extauthz.admin.http_api import build_app
from extauthz.admin.state import StateOptions, StateRuntime
from extauthz.authorizer import Authorizer
from extauthz.bodyreader import BodyReader
from extauthz.config.loader import LoadedPolicy, load_policy_file
from extauthz.config.settings import KeySettings
from extauthz.config.watcher import PolicyWatcher
from extauthz.envoy.grpc_service import AuthorizationService, add_authorization_to_server
from extauthz.envoy.http_service import AuthzHttpServer, start_authz_http
from extauthz.grpcserver import GRPCIO, bind, new_server
from extauthz.identity.introspection import IntrospectionClient, Introspector
from extauthz.identity.jwks import HttpFetcher, JwksSource
from extauthz.identity.providers import IssuerKeys
from extauthz.identity.userinfo import UserinfoClient
from extauthz.identity.verifier import TokenVerifier
from extauthz.listen import parse_address, start_http
from extauthz.policy.compiled import Policy
from extauthz.redact import redact_url
from extauthz.threads import ElasticPool

log = logging.getLogger("extauthz.serve")

READINESS_SERVICE = "readiness"
AUTHZ_SERVICE = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name
GRPC_MAX_RECEIVE_BYTES = 64 * 1024 * 1024  # above any sane with_request_body.max_request_bytes
# Threads of the gRPC server. Decisions hold the GIL, so more threads add no CPU, only GIL
# hand-offs (bench/: 4 threads answered ~1.5x the checks 16 did on two cores). A check waiting
# on the loop (a key refetch, a large body, an admin call: at most its deadline) does not count
# against GRPC_THREADS, so it does not hold up the others.
GRPC_THREADS = 4
GRPC_MAX_THREADS = 64
SHUTDOWN_GRACE_SECONDS = 5.0
# Above the shipped Envoy health check's worst case to notice NOT_SERVING (1 s interval, plus
# jitter and the check itself); deployments probed less often set --drain-delay.
DRAIN_DELAY_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """The ``extauthz serve`` command line."""

    config: str
    grpc_address: str = "0.0.0.0:9191"
    http_address: str | None = "0.0.0.0:9192"
    state_url: str = "memory://"
    state: StateOptions = field(default_factory=StateOptions)
    authz_http_address: str | None = None  # Envoy's HTTP-service ext_authz mode (off if None)
    authz_http_path_prefix: str = "/extauthz"
    drain_delay: float = DRAIN_DELAY_SECONDS  # SIGTERM: readiness off this long before closing
    shared_ports: bool = False  # one of --workers N processes: bind with SO_REUSEPORT
    grpc_server: str = GRPCIO  # the gRPC port's server (extauthz/grpcserver.py)


T = TypeVar("T")


def bounded_stream(open_stream: Callable[[], Iterator[T]], context: Any) -> Iterator[T]:
    """``open_stream()``'s responses in a ``threads.stream_slot``. Server reflection and health
    ``Watch`` are streams a client may hold open indefinitely, each on a pool thread (grpcio's
    non-blocking ``Watch`` excepted): so they do not count against the pool's size, and at
    most ``threads.STREAMS_MOST`` are open at once."""
    with threads.stream_slot() as free:
        if not free:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many open streams (at most {threads.STREAMS_MOST} reflection and health "
                "Watch streams at once); close one and retry",
            )
        yield from open_stream()


class BoundedHealth(health.HealthServicer):  # type: ignore[misc]
    """grpc_health's servicer, its blocking ``Watch`` streams bounded."""

    def Watch(  # the gRPC method name
        self, request: Any, context: Any, send_response_callback: Any = None
    ) -> Any:
        if send_response_callback is not None:  # grpcio's non-blocking Watch: no thread held
            return super().Watch(request, context, send_response_callback)
        parent: Any = super()  # the lambda runs later, outside this frame
        return bounded_stream(lambda: parent.Watch(request, context), context)


class BoundedReflection(reflection.ReflectionServicer):  # type: ignore[misc]
    """grpc_reflection's servicer, its streams bounded."""

    def ServerReflectionInfo(self, request_iterator: Any, context: Any) -> Any:  # gRPC name
        parent: Any = super()  # the lambda runs later, outside this frame
        return bounded_stream(
            lambda: parent.ServerReflectionInfo(request_iterator, context), context
        )


def announce_shadow_mode(on: bool, changed: bool = False) -> None:
    """Set the shadow-mode gauge; say loudly that it is on (at start and when a reload turns it
    on), and say when a reload turns it off."""
    metrics.SHADOW_MODE.set(1 if on else 0)
    if on:
        log.warning(
            "SHADOW MODE: every request is allowed; denials are only logged and counted as "
            "would_deny (extauthz.shadow_mode: true). Nothing is enforced."
        )
    elif changed:
        log.warning("shadow mode turned off: denials are enforced again")


def userinfo_client(keys: KeySettings) -> UserinfoClient | None:
    """The userinfo endpoint's client when opaque tokens are resolved there."""
    if keys.userinfo_endpoint is None:
        return None
    return UserinfoClient(keys.userinfo_endpoint, keys.userinfo_cache_ttl, keys.fetch_timeout)


def introspector_for(keys: KeySettings) -> Introspector | None:
    """The OAuth2 introspection client when routing_overrides or enable_oauth2_auth send
    tokens there."""
    if keys.introspection is None:
        return None
    return Introspector(IntrospectionClient(keys.introspection), cache_size=keys.token_cache_size)


def _userinfo_settings(client: UserinfoClient | None) -> tuple[str, float] | None:
    """What a userinfo client was made from (None: no client), to compare with a reload's."""
    return None if client is None else (client.endpoint, client.ttl)


def _key_detail(source: JwksSource) -> dict[str, Any]:
    return {
        "loaded": len(source.ring) if source.ring is not None else 0,
        "urls": [redact_url(u) for u in source.urls],  # anyone may read /readyz
        "last_error": source.last_error,
    }


class Sidecar:
    """A running sidecar: holds its parts so tests can start and stop it in-process."""

    def __init__(self, options: ServeOptions, loaded: LoadedPolicy) -> None:
        self.options = options
        policy, settings = loaded.policy, loaded.settings
        keys = settings.keys
        self.fetcher = HttpFetcher(keys.fetch_timeout)
        self.keys = JwksSource(
            keys.urls, ttl=keys.ttl, refetch_interval=keys.refetch_interval, fetch=self.fetcher
        )
        self.issuer_keys = IssuerKeys(self.fetcher)
        self.issuer_keys.sync(keys.issuers, keys.ttl, keys.refetch_interval)
        self.userinfo = userinfo_client(keys)
        # Blocks and the user registry (--state); a URL that cannot work fails here.
        self.state = StateRuntime(options.state_url, options.state)
        self.body_reader = BodyReader()
        self.authorizer = Authorizer(
            policy,
            self._token_verifier(policy, keys) if policy.enable_jwt_auth else None,
            state=self.state.view,
            body_reader=self.body_reader,
            on_identity=self.state.note_identity,
            check_timeout=settings.check_timeout,
        )
        self.authorizer.introspector = introspector_for(keys)
        self.admin = self.state.admin_service(self.authorizer)
        self.watcher = PolicyWatcher(
            options.config, os.environ, self.apply, interval=settings.reload_interval
        )
        self.health = BoundedHealth()  # sync: thread-safe, set() from the loop
        self.grpc_server: grpc.Server | None = None
        self.grpc_server_kind = ""  # which server start() made (pygrpc-native or grpcio)
        self.grpc_pool: ElasticPool | None = None  # grpcio never shuts its executor down
        self.grpc_port: int | None = None
        self.http_runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.authz_http: AuthzHttpServer | None = None
        self.authz_http_port: int | None = None
        self._ready_task: asyncio.Task[None] | None = None
        self._ready = False
        self.draining = False
        self._stopped = False
        self._background: set[asyncio.Future[Any]] = set()  # reload work, held till done

    def _token_verifier(self, policy: Policy, keys: KeySettings) -> TokenVerifier:
        """The JWT/userinfo verifier over this sidecar's key sources and userinfo client; its
        cache's size is what the ``extauthz_token_cache_entries`` gauge shows."""
        verifier = TokenVerifier(
            self.keys,
            policy.token_rules,
            cache_size=keys.token_cache_size,
            max_age=keys.token_cache_max_age,
            issuer_keys=self.issuer_keys.sources,
            userinfo=self.userinfo,
        )
        held = weakref.ref(verifier)  # the gauge outlives a stopped in-process sidecar

        def size() -> int:
            alive = held()
            return 0 if alive is None else alive.cache_size

        verifier.on_size = metrics.report_token_cache(size)
        return verifier

    def apply(self, loaded: LoadedPolicy) -> None:
        """Take a reloaded policy; key settings that changed are applied to the key source."""
        policy, settings = loaded.policy, loaded.settings
        keys = settings.keys
        self._background = {f for f in self._background if not f.done()}
        refresh = self.keys.reconfigure(keys.urls, keys.ttl, keys.refetch_interval)
        if refresh is not None:
            self._background.add(refresh)

        def watch(source: JwksSource) -> None:
            if self.authorizer.verifier is not None:
                self.authorizer.verifier.watch(source)

        self._background.update(
            self.issuer_keys.sync(keys.issuers, keys.ttl, keys.refetch_interval, on_new=watch)
        )
        wanted = (
            None
            if keys.userinfo_endpoint is None
            else (keys.userinfo_endpoint, keys.userinfo_cache_ttl)
        )
        if wanted != _userinfo_settings(self.userinfo):
            if self.userinfo is not None:
                self._background.add(asyncio.ensure_future(self.userinfo.close()))
            self.userinfo = userinfo_client(keys)
            if self.authorizer.verifier is not None:
                self.authorizer.verifier.set_userinfo(self.userinfo)
        old = self.authorizer.introspector
        if keys.introspection != (None if old is None else old.settings):
            self.authorizer.introspector = introspector_for(keys)  # old answers are dropped
            if old is not None:
                self._background.add(asyncio.ensure_future(old.close()))
        self.watcher.interval = settings.reload_interval
        if policy.enable_jwt_auth and self.authorizer.verifier is None:
            self.authorizer.verifier = self._token_verifier(policy, keys)
            self.keys.start()
            self.issuer_keys.start()
        if policy.shadow_mode != self.policy.shadow_mode:
            announce_shadow_mode(policy.shadow_mode, changed=True)
        self.authorizer.set_policy(policy, settings.check_timeout)

    @property
    def policy(self) -> Policy:
        return self.authorizer.policy

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the policy is loaded, with JWT auth on keys were fetched once, and the
        state store answers (or has failed for less than the debounce)."""
        policy = self.policy
        needs_keys = policy.enable_jwt_auth
        state_ready, state_detail = self.state.readiness()
        ready = (not needs_keys or self._keys_ready()) and state_ready and not self.draining
        detail: dict[str, Any] = {
            "policy": {"path": self.options.config, "reload_error": self.watcher.last_error},
            "state": state_detail,
            "shadow_mode": policy.shadow_mode,  # true: nothing is denied (see the log)
        }
        if self.draining:
            detail["draining"] = True
        if needs_keys:
            detail["keys"] = _key_detail(self.keys)
            if self.issuer_keys.sources:
                detail["issuers"] = {
                    issuer: _key_detail(source)
                    for issuer, source in self.issuer_keys.sources.items()
                }
        return ready, detail

    def _keys_ready(self) -> bool:
        """Some provider's keys were fetched (one provider down must not take every caller
        out of rotation); with only a userinfo endpoint, nothing to wait for."""
        sources = [s for s in (self.keys, *self.issuer_keys.sources.values()) if s.urls]
        return not sources or any(s.ready for s in sources)

    async def start(self) -> None:
        """Bind every port and start the background loops."""
        await self.state.open()  # before any port: never answer from an empty snapshot
        if self.policy.enable_jwt_auth:
            self.keys.start()
            self.issuer_keys.start()
        loop = asyncio.get_running_loop()
        self.grpc_pool = ElasticPool(GRPC_THREADS, GRPC_MAX_THREADS, "grpc")
        server, self.grpc_server_kind = new_server(
            self.options.grpc_server,
            self.grpc_pool,
            [
                ("grpc.max_receive_message_length", GRPC_MAX_RECEIVE_BYTES),
                ("grpc.so_reuseport", 1 if self.options.shared_ports else 0),
            ],
        )
        add_authorization_to_server(AuthorizationService(self.authorizer, loop), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        admin_service = add_admin_service(server, self.admin, loop)
        names = (AUTHZ_SERVICE, health.SERVICE_NAME, admin_service, reflection.SERVICE_NAME)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            BoundedReflection(names), server
        )
        self.grpc_port = bind(server, self.options.grpc_address)
        if self.grpc_port == 0:
            raise OSError(f"cannot bind gRPC address {self.options.grpc_address}")
        self.grpc_server = server  # before start(): stop() closes it even if start() fails
        server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set(READINESS_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.options.http_address:
            app = build_app(self.readiness, self.admin)
            self.http_runner, bound = await start_http(
                app, self.options.http_address, self.options.shared_ports
            )
            self.http_port = parse_address(bound)[1]
        if self.options.authz_http_address:
            if self.options.authz_http_address == self.options.http_address:
                raise OSError(
                    "--authz-http-address must differ from --http-address (the admin API)"
                )
            # Only Envoy should reach the check port: ":PORT" means loopback here.
            host, port = parse_address(self.options.authz_http_address, "127.0.0.1")
            self.authz_http = await start_authz_http(
                self.authorizer,
                host,
                port,
                path_prefix=self.options.authz_http_path_prefix,
                reuse_port=self.options.shared_ports,
            )
            self.authz_http_port = self.authz_http.port
        self.watcher.start()
        self._ready_task = asyncio.ensure_future(self._track_readiness())
        metrics.POLICY_OK.set(1)
        announce_shadow_mode(self.policy.shadow_mode)
        log.info(
            "serving",
            extra={
                "grpc_port": self.grpc_port,
                "http_port": self.http_port,
                "authz_http_port": self.authz_http_port,
                "config": self.options.config,
                "jwt_auth": self.policy.enable_jwt_auth,
                "event_loop": type(loop).__module__.partition(".")[0],  # uvloop or asyncio
                "grpc_server": self.grpc_server_kind,  # pygrpc-native or grpcio
            },
        )

    async def _track_readiness(self) -> None:
        while True:
            ready, _ = self.readiness()
            if ready != self._ready:
                self._ready = ready
                self.health.set(
                    READINESS_SERVICE,
                    health_pb2.HealthCheckResponse.SERVING
                    if ready
                    else health_pb2.HealthCheckResponse.NOT_SERVING,
                )
                log.info("readiness changed", extra={"ready": ready})
            await asyncio.sleep(0.2)

    async def drain(self, delay: float = 0.0, hurry: asyncio.Event | None = None) -> None:
        """Readiness NOT_SERVING on both surfaces at once, then keep serving for ``delay``
        seconds (or until ``hurry`` is set) so health checkers route new checks elsewhere."""
        if not self.draining:
            self.draining = True
            if self._ready_task is not None:
                self._ready_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._ready_task
                self._ready_task = None
            self._ready = False
            self.health.set(READINESS_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
            log.info("draining: readiness NOT_SERVING", extra={"drain_delay_seconds": delay})
        if delay > 0:
            hurried = hurry if hurry is not None else asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await hurried.wait()

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting and answer every check already received within ``grace`` seconds,
        then close everything else. Readiness goes off first if ``drain`` did not do it.
        Stopping again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        await self.drain()
        self.health.enter_graceful_shutdown()  # liveness too, from now on
        closing = []
        if self.authz_http is not None:
            closing.append(self.authz_http.close(grace))
        if self.grpc_server is not None:
            # Answers what it received within grace; checks waiting on the loop still finish,
            # as the loop keeps running while a worker thread waits for the server.
            closing.append(asyncio.to_thread(self.grpc_server.stop(grace).wait))
        await asyncio.gather(*closing)  # one grace period for both check ports
        if self.grpc_pool is not None:
            self.grpc_pool.shutdown(wait=False)  # its idle threads end; none is at work now
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        await self.watcher.stop()
        await self.state.close()
        await self.keys.stop()
        await self.issuer_keys.stop()
        await self.fetcher.close()
        if self.authorizer.verifier is not None:
            await self.authorizer.verifier.stop()
        if self.userinfo is not None:
            await self.userinfo.close()
        if self.authorizer.introspector is not None:
            await self.authorizer.introspector.close()
        self.body_reader.close()


async def run(options: ServeOptions) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    loaded = load_policy_file(options.config, os.environ)
    for warning in loaded.warnings:
        log.warning(warning, extra={"path": options.config})
    sidecar = Sidecar(options, loaded)
    try:
        await sidecar.start()
    except BaseException:  # e.g. a port in use: release what did start, then report
        await sidecar.stop(grace=0)
        raise
    # Start-up objects (modules, compiled policy, protobuf descriptors) live as long as the
    # process: freezing them keeps the collector from walking them on every full collection.
    # Measured with 50,000 new tokens: p99 80 ms -> 38 ms, +7 % throughput.
    gc.collect()
    gc.freeze()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()  # a second signal: skip the rest of the delay

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    log.info(
        "shutting down",
        extra={"drain_delay_seconds": options.drain_delay, "grace_seconds": SHUTDOWN_GRACE_SECONDS},
    )
    await sidecar.drain(options.drain_delay, hurry)
    log.info("draining: no longer accepting; answering the checks already received")
    await sidecar.stop()
    log.info("stopped")
    return 0

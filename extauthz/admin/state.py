"""The sidecar's state wiring: store, watcher, user recorder and admin service, started as one.

``Sidecar`` (runtime.py) builds a ``StateRuntime`` from ``--state``, opens it before binding any
port (so a sidecar never answers from an empty snapshot), and reports its readiness.
``note_identity`` is the authorizer's ``on_identity`` hook: it notes users seen in valid tokens
(``user_id_upsert``); noting is a dict write, the store write happens in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from extauthz.admin.service import AdminService
from extauthz.authorizer import Authorizer, StateView
from extauthz.errors import ConfigError, StoreError
from extauthz.model import Identity, Role
from extauthz.policy.compiled import Policy
from extauthz.policy.decide import email_refusal
from extauthz.state.protocol import StateSnapshot
from extauthz.state.team_upserts import TeamUpserter, UpsertSettings
from extauthz.state.urls import StoreSettings, store_from_url
from extauthz.state.users import RecorderSettings, UserRecorder, recording_paused
from extauthz.state.watcher import StateWatcher, WatchSettings

log = logging.getLogger("extauthz.state")


@dataclass(frozen=True, slots=True)
class StateOptions:
    """Timing of the state machinery (production defaults; tests shorten them)."""

    store: StoreSettings = field(default_factory=StoreSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    users: RecorderSettings = field(default_factory=RecorderSettings)
    teams: UpsertSettings = field(default_factory=UpsertSettings)
    open_timeout: float = 30.0  # at start: how long to keep trying to reach the store


class StateRuntime:
    """Store + watcher + user recorder + admin service for one sidecar."""

    def __init__(self, url: str, options: StateOptions | None = None) -> None:
        self.options = options or StateOptions()
        self.store = store_from_url(url, self.options.store)  # ConfigError for a bad URL
        self.view = StateView()  # what decisions read (give it to the Authorizer)
        self.watcher = StateWatcher(self.store, self._publish, self.options.watch)
        self.recorder = UserRecorder(self.store, self.options.users)
        self.upserter = TeamUpserter(self.store, self.options.teams)
        self._opened = False

    def _publish(self, snapshot: StateSnapshot) -> None:
        self.view.current = snapshot

    def note_identity(self, identity: Identity, role: Role | None, policy: Policy) -> None:
        """The authorizer's ``on_identity`` hook: record a user seen in a valid token, and
        register its team (``team_id_upsert``: the team claim or default, as LiteLLM's
        ``get_team_object(team_id_upsert=True)``; an admin's token registers none).

        ``identity`` and ``role`` are what ``admit`` worked out (the object id applied, the
        acting role; ``decide.named`` where there is no admission): called on every verified
        request (cache hits too), it works out no role itself."""
        if not (policy.user_id_upsert or policy.team_id_upsert) or recording_paused():
            return
        admin = role is Role.PROXY_ADMIN
        if (
            not admin
            and policy.email_domains is not None
            and email_refusal(identity, policy.email_domains) is not None  # the core's gate
        ):
            return
        if policy.user_id_upsert and identity.user_id is not None:
            self.recorder.note(identity.user_id, identity.email, time.time())
        team = identity.team_id
        if (
            policy.team_id_upsert
            and team is not None
            and team not in self.view.current.teams
            and not admin
        ):
            self.upserter.note(team)

    def admin_service(self, authorizer: Authorizer) -> AdminService:
        """The admin API over this store, authenticating callers with ``authorizer``."""
        return AdminService(authorizer, self.store, self.watcher)

    async def open(self) -> None:
        """Open the store (create/migrate), load the first snapshot, start following it.

        Retries an unreachable store for ``open_timeout`` seconds, then raises ``ConfigError``;
        a URL or store that can never work raises ``ConfigError`` at once.
        """
        deadline = time.monotonic() + self.options.open_timeout
        delay = 0.25
        while True:
            try:
                await self.store.open()
                await self.watcher.sync()
                break
            except StoreError as exc:
                if time.monotonic() + delay > deadline:
                    await self.store.close()
                    raise ConfigError(
                        f"cannot reach the state store {self.store.url} "
                        f"(tried for {self.options.open_timeout:g}s): {exc}",
                        source="--state",
                    ) from exc
                log.warning(
                    "state store not reachable yet; retrying",
                    extra={"store": self.store.url, "error": str(exc)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._opened = True
        self.watcher.start()
        self.recorder.start()
        self.upserter.start()
        snapshot = self.watcher.current
        log.info(
            "state store open",
            extra={
                "store": self.store.url,
                "version": snapshot.version if snapshot else None,
                "blocked_teams": len(snapshot.blocked_teams) if snapshot else 0,
            },
        )

    async def close(self) -> None:
        """Stop following, flush recorded users (best effort), release connections."""
        await self.watcher.stop()
        if self._opened:
            await self.recorder.stop()
            await self.upserter.stop()
        await self.store.close()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        w = self.watcher
        snapshot = w.current
        detail: dict[str, Any] = {
            "store": self.store.url,
            "reachable": w.healthy,
            "version": snapshot.version if snapshot else None,
            "teams": len(snapshot.teams) if snapshot else 0,
            "last_sync": w.last_sync,
            "pending_users": self.recorder.pending,
            "pending_teams": self.upserter.pending,
        }
        if w.last_error:
            detail["last_error"] = w.last_error
        return w.ready, detail

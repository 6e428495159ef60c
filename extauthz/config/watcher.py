"""Apply policy-file edits without a restart.

Polls ``os.stat`` of the path (following symlinks, so a Kubernetes ConfigMap update, which
swaps the ``..data`` symlink, is seen) and reloads when the file's identity or content changes.
A broken edit keeps the last good policy; the error is logged, counted and shown by /readyz.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from extauthz import metrics
from extauthz.config.loader import LoadedPolicy, load_policy_file
from extauthz.errors import ConfigError

log = logging.getLogger("extauthz.config")


def _fingerprint(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class PolicyWatcher:
    """Watches one policy file and calls ``apply`` with each good new version."""

    def __init__(
        self,
        path: str,
        environ: Mapping[str, str],
        apply: Callable[[LoadedPolicy], None],
        interval: float = 1.0,
    ) -> None:
        self.path = path
        self.environ = environ
        self.apply = apply
        self.interval = interval
        self.last_error: str | None = None
        self._seen = _fingerprint(path)
        self._digest = _digest(path)
        self._task: asyncio.Task[None] | None = None

    def check_once(self) -> bool | None:
        """Reload if the file changed. True: reloaded; False: change refused; None: no change."""
        seen = _fingerprint(self.path)
        if seen == self._seen:
            return None
        self._seen = seen
        digest = _digest(self.path)
        if digest is not None and digest == self._digest:
            if self.last_error is not None:  # a broken edit was reverted: nothing is wrong now
                self.last_error = None
                metrics.POLICY_OK.set(1)
                log.info("policy file is back to the policy in force", extra={"path": self.path})
            return None
        try:
            loaded = load_policy_file(self.path, self.environ)
        except ConfigError as exc:
            self.last_error = "; ".join(exc.problems)
            metrics.POLICY_RELOADS.labels("error").inc()
            metrics.POLICY_OK.set(0)
            log.error(
                "policy reload refused; keeping the last good policy",
                extra={"path": self.path, "problems": exc.problems},
            )
            return False
        self._digest = digest
        self.last_error = None
        self.apply(loaded)
        metrics.POLICY_RELOADS.labels("ok").inc()
        metrics.POLICY_OK.set(1)
        for warning in loaded.warnings:
            log.warning(warning, extra={"path": self.path})
        log.info("policy reloaded", extra={"path": self.path})
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check_once()  # a stat per interval; reads only on change (small file)
            except Exception as exc:  # the watcher must outlive any surprise
                log.error("policy watcher error", extra={"error_type": type(exc).__name__})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

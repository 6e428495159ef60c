"""Fixtures for HTTP-mode tests: the integration suite's loop thread and keys, reused as is."""

from __future__ import annotations

from tests.integration.conftest import key, loop_thread, rogue_key

__all__ = ["key", "loop_thread", "rogue_key"]

"""Fixtures for the LiteLLM end-to-end tests: the integration suite's loop thread and keys, and
LiteLLM's log lines of a failed test in its report."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import key, loop_thread, rogue_key
from tests.litellm.harness import LOG_FROM

__all__ = ["key", "loop_thread", "rogue_key"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    mark = item.stash.get(LOG_FROM, None)
    if report.failed and mark is not None:
        proxy, since = mark
        report.sections.append(("LiteLLM log during this test", proxy.log_tail(40, since)))

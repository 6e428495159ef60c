"""Prometheus metrics of the serving sidecar (module-level, one registry per process).

Label values are the stable ``Reason`` strings, so dashboards survive message rewording.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

CHECK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class CheckStats(Collector):
    """``extauthz_decisions_total`` and ``extauthz_check_duration_seconds``, counted as plain
    numbers and turned into Prometheus metrics only when scraped.

    Every check updates both; prometheus_client's Counter and Histogram take a lock and run
    Python per update (~3 µs of a ~30 µs check). Updates come from the gRPC server's threads and
    the event loop, so one plain lock guards the three updates together.
    """

    def __init__(self, buckets: tuple[float, ...] = CHECK_BUCKETS) -> None:
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.seconds = 0.0
        self.decisions: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def record(self, labels: tuple[str, str, str], seconds: float) -> None:
        """One decision: ``labels`` are (outcome, reason, status)."""
        decisions = self.decisions
        bucket = bisect_left(self.bounds, seconds)  # le: bound >= value
        with self._lock:
            decisions[labels] = decisions.get(labels, 0) + 1
            self.counts[bucket] += 1
            self.seconds += seconds

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "extauthz_decisions",
            "Authorization decisions by outcome and reason.",
            labels=["outcome", "reason", "status"],
        )
        with self._lock:  # one consistent copy
            counted, counts, total = dict(self.decisions), list(self.counts), self.seconds
        for labels, count in counted.items():
            decisions.add_metric(list(labels), count)
        yield decisions
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            cumulative.append((_le(bound), running))
        yield HistogramMetricFamily(
            "extauthz_check_duration_seconds",
            "Time spent deciding one request inside the sidecar.",
            buckets=cumulative,
            sum_value=total,
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class SharedCheckStats(CheckStats):
    """The same two metrics as prometheus_client Counter and Histogram, for ``--workers N``:
    in its multiprocess mode they are kept in files that any worker's scrape adds up (~3 µs more
    per check than ``CheckStats``, paid only with more than one worker)."""

    def __init__(self, buckets: tuple[float, ...] = CHECK_BUCKETS) -> None:
        super().__init__(buckets)
        self._decisions = Counter(
            "extauthz_decisions",
            "Authorization decisions by outcome and reason.",
            ["outcome", "reason", "status"],
        )
        self._duration = Histogram(
            "extauthz_check_duration_seconds",
            "Time spent deciding one request inside the sidecar.",
            buckets=buckets,
        )

    def record(self, labels: tuple[str, str, str], seconds: float) -> None:
        self._decisions.labels(*labels).inc()
        self._duration.observe(seconds)


# Set (by ``extauthz serve --workers N``) before this module is first imported in a worker:
# prometheus_client then keeps every metric in files in this directory, one set per process.
# Gauges are shown per worker (a ``pid`` label); counters and histograms are summed.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
CHECKS: CheckStats = SharedCheckStats() if MULTIPROCESS_DIR else CheckStats()
if not MULTIPROCESS_DIR:
    REGISTRY.register(CHECKS)


def exposition() -> tuple[bytes, str]:
    """The /metrics body and content type: this process's metrics, or with ``--workers N``
    every worker's, added up from the multiprocess directory."""
    if not MULTIPROCESS_DIR:
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
KEY_FETCHES = Counter(
    "extauthz_jwks_fetches_total", "Signing-key fetches by result.", ["result", "trigger"]
)
KEYS_LOADED = Gauge("extauthz_jwks_keys", "Signing keys currently held.")
KEYS_AGE = Gauge("extauthz_jwks_last_success_timestamp_seconds", "When keys were last fetched.")
TOKEN_CACHE_SIZE = Gauge("extauthz_token_cache_entries", "Verified tokens held in the cache.")
POLICY_RELOADS = Counter("extauthz_policy_reloads_total", "Policy reloads by result.", ["result"])
POLICY_OK = Gauge(
    "extauthz_policy_last_reload_ok", "1 when the last policy (re)load succeeded, else 0."
)
SHADOW_MODE = Gauge(
    "extauthz_shadow_mode",
    "1 while shadow mode is on: every request is allowed, denials are only counted and logged.",
)

# State store (team / end-user blocks, user registry) and the admin API.
STATE_STORE_UP = Gauge(
    "extauthz_state_store_up",
    "1 while the state store answers; 0 while it is unreachable (decisions use the last snapshot).",
)
STATE_VERSION = Gauge("extauthz_state_version", "Version of the state snapshot decisions read.")
STATE_LAST_SYNC = Gauge(
    "extauthz_state_last_sync_timestamp_seconds", "When the state store was last read."
)
STATE_BLOCKED = Gauge(
    "extauthz_state_blocked", "Blocked teams and end users in the snapshot.", ["kind"]
)
STATE_TEAMS = Gauge(
    "extauthz_state_teams", "Registered teams (the team registry) in the snapshot decisions read."
)
STATE_RECONNECTS = Counter(
    "extauthz_state_store_failures_total", "Failed state store reads by the watcher (each retried)."
)
ADMIN_REQUESTS = Counter(
    "extauthz_admin_requests_total",
    "Admin API calls by operation, transport and HTTP status.",
    ["operation", "transport", "status"],
)
USERS_RECORDED = Counter("extauthz_users_recorded_total", "User sightings written to the store.")
TEAMS_UPSERTED = Counter(
    "extauthz_teams_upserted_total", "Teams registered from tokens (team_id_upsert)."
)
TEAMS_UPSERT_DROPPED = Counter(
    "extauthz_teams_upsert_dropped_total", "Teams to register dropped: the buffer was full."
)
USERS_DROPPED = Counter(
    "extauthz_users_dropped_total", "User sightings dropped because the write buffer was full."
)


def report_token_cache(size: Callable[[], int]) -> Callable[[float], None] | None:
    """Have ``extauthz_token_cache_entries`` read ``size()`` when scraped: no gauge update (a
    lock) per new token, and right after the cache is dropped too. With ``--workers N`` a scrape
    reads each worker's file and cannot ask the others: then the setter to call on every change
    comes back instead (None otherwise)."""
    if MULTIPROCESS_DIR:
        return TOKEN_CACHE_SIZE.set
    TOKEN_CACHE_SIZE.set_function(size)
    return None

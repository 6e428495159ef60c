"""Prometheus metrics for the minter, in a registry of its own (never the global one).

Counts and durations are recorded as refreshes happen; everything that follows from a
credential's state (expiry, validity, failures) is read from the states at scrape time, so a
credential that silently expires shows as invalid without any event firing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from extauthz.mint.status import CredentialState

_LABELS = ["credential", "kind"]


class _StateCollector(Collector):
    """Gauges computed from the credential states on every scrape."""

    def __init__(
        self, states: Callable[[], Iterable[CredentialState]], clock: Callable[[], float]
    ) -> None:
        self._states = states
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        expiry = GaugeMetricFamily(
            "extauthz_mint_credential_expiry_timestamp_seconds",
            "When the credential in the file expires (POSIX time); absent for static keys.",
            labels=_LABELS,
        )
        valid = GaugeMetricFamily(
            "extauthz_mint_credential_valid",
            "1 when the file holds an unexpired credential.",
            labels=_LABELS,
        )
        refreshed = GaugeMetricFamily(
            "extauthz_mint_credential_last_refresh_timestamp_seconds",
            "When the credential was last written (POSIX time).",
            labels=_LABELS,
        )
        planned = GaugeMetricFamily(
            "extauthz_mint_credential_next_refresh_timestamp_seconds",
            "When the next refresh or retry is planned (POSIX time).",
            labels=_LABELS,
        )
        failures = GaugeMetricFamily(
            "extauthz_mint_credential_consecutive_failures",
            "Failed attempts since the last success.",
            labels=_LABELS,
        )
        for state in self._states():
            labels = [state.key, state.spec.kind]
            valid.add_metric(labels, 1.0 if state.valid(now) else 0.0)
            failures.add_metric(labels, float(state.failures))
            if state.expires_at is not None:
                expiry.add_metric(labels, state.expires_at)
            if state.refreshed_at is not None:
                refreshed.add_metric(labels, state.refreshed_at)
            if state.next_refresh_at is not None:
                planned.add_metric(labels, state.next_refresh_at)
        yield from (expiry, valid, refreshed, planned, failures)


class MintMetrics:
    """The minter's registry: refresh counters and durations plus state gauges."""

    def __init__(
        self, states: Callable[[], Iterable[CredentialState]], clock: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        self.refreshes = Counter(
            "extauthz_mint_refresh",
            "Refresh attempts by credential and result (success, or the failure's reason).",
            ["credential", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "extauthz_mint_refresh_duration_seconds",
            "Time one refresh attempt took, token fetch and exchange and write included.",
            ["credential"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.registry.register(_StateCollector(states, clock))

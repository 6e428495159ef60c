"""Decision counts and check durations, as a scrape shows them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from extauthz.metrics import CheckStats


def scrape(stats: CheckStats) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(stats)
    samples: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_decisions_are_counted_by_outcome_reason_and_status() -> None:
    stats = CheckStats()
    stats.record(("allow", "allowed", "200"), 0.0002)
    stats.record(("allow", "allowed", "200"), 0.0002)
    stats.record(("deny", "team_blocked", "403"), 0.0002)
    got = scrape(stats)
    assert got['extauthz_decisions_total{outcome="allow",reason="allowed",status="200"}'] == 2
    assert got['extauthz_decisions_total{outcome="deny",reason="team_blocked",status="403"}'] == 1


def test_durations_fill_cumulative_buckets_with_inclusive_bounds() -> None:
    stats = CheckStats(buckets=(0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 3.0):
        stats.record(("allow", "allowed", "200"), seconds)
    got = scrape(stats)
    assert got['extauthz_check_duration_seconds_bucket{le="0.001"}'] == 2  # 0.001 <= 0.001
    assert got['extauthz_check_duration_seconds_bucket{le="0.01"}'] == 3
    assert got['extauthz_check_duration_seconds_bucket{le="+Inf"}'] == 4
    assert got["extauthz_check_duration_seconds_count"] == 4
    assert abs(got["extauthz_check_duration_seconds_sum"] - 3.0065) < 1e-9

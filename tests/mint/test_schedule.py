"""refresher.next_refresh_at: refresh once at 80 % of the lifetime; retries back off to 30 s."""

from __future__ import annotations

import random

import pytest

from extauthz.mint.refresher import next_refresh_at, retry_delay


def rng() -> random.Random:
    return random.Random(7)


class TestRefresh:
    @pytest.mark.parametrize(
        ("lifetime", "expected_delay"),
        [(60.0, 48.0), (3600.0, 2880.0), (900.0, 720.0), (5.0, 4.0)],
    )
    def test_refresh_happens_at_80_percent_of_the_lifetime(
        self, lifetime: float, expected_delay: float
    ) -> None:
        """A 60-s credential is refreshed at 48 s, a one-hour one at 48 minutes."""
        issued = 1_700_000_000.0
        assert next_refresh_at(issued, issued + lifetime, 0, rng()) == pytest.approx(
            issued + expected_delay
        )

    def test_the_next_refresh_is_after_the_current_one_never_a_loop(self) -> None:
        """Each refresh plans exactly one later refresh: the times strictly increase."""
        t = 0.0
        times = []
        for _ in range(5):
            t = next_refresh_at(t, t + 60.0, 0, rng())  # type: ignore[assignment]
            times.append(t)
        assert times == pytest.approx([48.0, 96.0, 144.0, 192.0, 240.0])

    def test_a_credential_that_arrives_nearly_expired_waits_at_least_a_second(self) -> None:
        """A zero or negative lifetime (clock skew) cannot make a tight loop."""
        assert next_refresh_at(100.0, 100.0, 0, rng()) == 101.0
        assert next_refresh_at(100.0, 50.0, 0, rng()) == 101.0

    def test_static_credentials_are_never_refreshed(self) -> None:
        """No expiry, no failure: nothing to plan."""
        assert next_refresh_at(100.0, None, 0, rng()) is None


class TestRetry:
    def test_backoff_doubles_with_jitter_and_is_capped_at_30_s(self) -> None:
        """Retry n waits between half and all of min(30, 2^(n-1)) seconds."""
        r = rng()
        for failures in range(1, 12):
            ceiling = min(30.0, 2.0 ** (failures - 1))
            for _ in range(50):
                delay = retry_delay(failures, r)
                assert ceiling / 2 <= delay <= ceiling
        assert max(retry_delay(1000, r) for _ in range(200)) <= 30.0

    def test_jitter_spreads_retries(self) -> None:
        """Two replicas failing together do not retry in step."""
        delays = {round(retry_delay(5, random.Random(seed)), 6) for seed in range(20)}
        assert len(delays) > 15

    def test_a_retry_is_counted_from_the_failure(self) -> None:
        """After a failure the next attempt is failed_at + backoff, whatever the expiry."""
        when = next_refresh_at(0.0, 3600.0, 1, rng(), failed_at=2880.0)
        assert when is not None and 2880.5 <= when <= 2881.0

    def test_a_first_attempt_failure_needs_no_credential(self) -> None:
        """With nothing minted yet, the retry is planned from the failure time."""
        when = next_refresh_at(None, None, 3, rng(), failed_at=10.0)
        assert when is not None and 12.0 <= when <= 14.0

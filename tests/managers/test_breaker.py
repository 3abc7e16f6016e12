"""
Tests for L{geniam.managers.breaker}: the per-peer circuit breaker, driven by a clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.managers.breaker import BreakerState, CircuitBreaker


class CircuitBreakerTests(SynchronousTestCase):
    """Closed, open, half-open and back."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.breaker = CircuitBreaker(self.clock, failure_threshold=3, reset_timeout=10.0, max_reset_timeout=35.0)

    def fail_times(self, count: int) -> None:
        for _ in range(count):
            self.assertTrue(self.breaker.allow())
            self.breaker.record_failure()

    def test_closed_lets_calls_through(self) -> None:
        """A new breaker is closed and allows every call."""
        self.assertEqual(self.breaker.state, BreakerState.CLOSED)
        self.assertTrue(all(self.breaker.allow() for _ in range(10)))

    def test_opens_after_threshold_consecutive_failures(self) -> None:
        """The third consecutive failure opens the circuit; calls are then refused."""
        self.fail_times(2)
        self.assertEqual(self.breaker.state, BreakerState.CLOSED)
        self.fail_times(1)
        self.assertEqual(self.breaker.state, BreakerState.OPEN)
        self.assertFalse(self.breaker.allow())
        self.assertEqual(self.breaker.retry_at, 10.0)
        self.assertIn("circuit open after 3 consecutive failures", self.breaker.describe())

    def test_success_resets_the_count(self) -> None:
        """Failures must be consecutive: a success in between starts the count again."""
        self.fail_times(2)
        self.assertTrue(self.breaker.allow())
        self.breaker.record_success()
        self.fail_times(2)
        self.assertEqual(self.breaker.state, BreakerState.CLOSED)

    def test_half_open_after_cool_down_allows_one_probe(self) -> None:
        """After the cool-down exactly one probe goes through; others wait for its verdict."""
        self.fail_times(3)
        self.clock.advance(9.9)
        self.assertFalse(self.breaker.allow())
        self.clock.advance(0.1)
        self.assertEqual(self.breaker.state, BreakerState.HALF_OPEN)
        self.assertTrue(self.breaker.allow())
        self.assertFalse(self.breaker.allow())
        self.assertIn("probe call is in progress", self.breaker.describe())

    def test_successful_probe_closes(self) -> None:
        """A successful probe closes the circuit and resets the cool-down."""
        self.fail_times(3)
        self.clock.advance(10)
        self.assertTrue(self.breaker.allow())
        self.breaker.record_success()
        self.assertEqual(self.breaker.state, BreakerState.CLOSED)
        self.assertTrue(self.breaker.allow())
        self.assertIsNone(self.breaker.retry_at)

    def test_failed_probe_reopens_with_longer_cool_down(self) -> None:
        """A failed probe opens the circuit again for twice as long, up to the maximum."""
        self.fail_times(3)
        self.clock.advance(10)
        self.fail_times(1)
        self.assertEqual(self.breaker.state, BreakerState.OPEN)
        self.assertEqual(self.breaker.retry_at, 30.0)
        self.clock.advance(20)
        self.fail_times(1)
        self.assertEqual(self.breaker.retry_at, 30.0 + 35.0)
        self.assertEqual(self.breaker.opened, 3)

    def test_released_probe_frees_the_slot(self) -> None:
        """A probe ended without a verdict (cancelled) lets the next call probe."""
        self.fail_times(3)
        self.clock.advance(10)
        self.assertTrue(self.breaker.allow())
        self.breaker.release()
        self.assertTrue(self.breaker.allow())

    def test_bad_settings(self) -> None:
        """Nonsensical settings are refused."""
        self.assertRaises(ValueError, CircuitBreaker, self.clock, 0)
        self.assertRaises(ValueError, CircuitBreaker, self.clock, 1, 0)
        self.assertRaises(ValueError, CircuitBreaker, self.clock, 1, 10, 5)

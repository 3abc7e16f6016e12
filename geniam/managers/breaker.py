# -*- test-case-name: tests.test_breaker -*-
"""
A circuit breaker per peer aggregate, driven by an injected clock.

The slice manager stops calling an aggregate that keeps failing and
probes it again later:

  - B{closed}: calls go through; C{failure_threshold} consecutive
    failures open the circuit;
  - B{open}: calls are refused at once until the cool-down has passed;
  - B{half-open}: one call (the probe) goes through, the others are
    still refused; its success closes the circuit, its failure opens it
    again with the cool-down doubled (up to C{max_reset_timeout}).

Only failures of the peer itself count (no answer in time, connection or
TLS failure, HTTP error, malformed reply): an answer carrying a GENI error
code is a healthy peer saying no.
"""

from __future__ import annotations

import enum

from twisted.internet.interfaces import IReactorTime


class BreakerState(enum.Enum):
    """The states of a L{CircuitBreaker}."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """
    Decides whether a call to one peer may be made now.

    Every call that L{allow} lets through must be followed by exactly one
    of L{record_success}, L{record_failure} or L{release}.

    @ivar failure_threshold: consecutive failures that open the circuit.
    @ivar reset_timeout: the first cool-down, in seconds.
    @ivar max_reset_timeout: the longest cool-down after repeated failed probes.
    @ivar consecutive_failures: failures since the last success.
    @ivar opened: how many times the circuit has opened.
    """

    def __init__(
        self,
        clock: IReactorTime,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        max_reset_timeout: float = 600.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout <= 0 or max_reset_timeout < reset_timeout:
            raise ValueError("need 0 < reset_timeout <= max_reset_timeout")
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.max_reset_timeout = max_reset_timeout
        self.consecutive_failures = 0
        self.opened = 0
        self._state = BreakerState.CLOSED
        self._cooldown = reset_timeout
        self._retry_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open circuit whose cool-down has passed reads as half-open)."""
        if self._state is BreakerState.OPEN and self._clock.seconds() >= self._retry_at:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def retry_at(self) -> float | None:
        """When an open circuit lets a probe through, or C{None} when not open."""
        return self._retry_at if self._state is BreakerState.OPEN else None

    def allow(self) -> bool:
        """
        May a call be made now? A C{True} answer in the half-open state
        makes the caller the probe.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probing:
            return False
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        return True

    def record_success(self) -> None:
        """The peer answered: close the circuit."""
        self.consecutive_failures = 0
        self._probing = False
        self._state = BreakerState.CLOSED
        self._cooldown = self.reset_timeout

    def record_failure(self) -> None:
        """The peer failed: count it, and open the circuit when due."""
        self.consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._cooldown = min(self._cooldown * 2, self.max_reset_timeout)
            self._open()
        elif self._state is BreakerState.CLOSED and self.consecutive_failures >= self.failure_threshold:
            self._cooldown = self.reset_timeout
            self._open()

    def release(self) -> None:
        """The call let through ended without telling anything about the peer."""
        if self._probing:
            self._probing = False

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._retry_at = self._clock.seconds() + self._cooldown
        self.opened += 1

    def describe(self) -> str:
        """A short explanation of a refusal, for statistics and messages."""
        state = self.state
        if state is BreakerState.OPEN:
            wait = max(0.0, self._retry_at - self._clock.seconds())
            return (
                f"not called: circuit open after {self.consecutive_failures} consecutive failures, "
                f"next probe in {wait:.0f} s"
            )
        if state is BreakerState.HALF_OPEN:
            return "not called: circuit half-open, a probe call is in progress"
        return "circuit closed"

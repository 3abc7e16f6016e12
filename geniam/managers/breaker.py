# -*- test-case-name: tests.managers.test_breaker -*-
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

Besides calls, L{CircuitBreaker.trip} opens the circuit at once (a peer
found hung while calls were in flight) and L{CircuitBreaker.close} closes
it (a background probe succeeded; see L{geniam.managers.health}). Every
change of state is logged and told to the listeners added with
L{CircuitBreaker.on_change}.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


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
    @ivar name: the peer's name in log messages.
    @ivar background_probing: when true, an open circuit is not let
        half-open by time: only L{close} (a background probe answered) or
        a call already in flight succeeding closes it.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        max_reset_timeout: float = 600.0,
        name: str = "a peer",
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
        self.background_probing = False
        self.reason = ""
        self.name = name
        self._listeners: list[Callable[[BreakerState], None]] = []

    def on_change(self, listener: Callable[[BreakerState], None]) -> None:
        """Call C{listener(new_state)} after every change of state."""
        self._listeners.append(listener)

    def _become(self, state: BreakerState, why: str) -> None:
        if state is self._state:
            return
        before = self._state
        self._state = state
        self.log.info(
            "circuit of {peer}: {before} -> {after} ({why})", peer=self.name, before=before.value, after=state.value, why=why
        )
        for listener in list(self._listeners):
            listener(state)

    @property
    def state(self) -> BreakerState:
        """The current state (an open circuit whose cool-down has passed reads as half-open)."""
        if self._state is BreakerState.OPEN and not self.background_probing and self._clock.seconds() >= self._retry_at:
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
        self._probing = True
        self._become(BreakerState.HALF_OPEN, "a call goes through as a probe")
        return True

    def record_success(self) -> None:
        """The peer answered: close the circuit."""
        self.close("the peer answered")

    def close(self, why: str) -> None:
        """Close the circuit now (the peer answered a call or a probe)."""
        self.consecutive_failures = 0
        self._probing = False
        self._cooldown = self.reset_timeout
        self._become(BreakerState.CLOSED, why)

    def record_failure(self) -> None:
        """The peer failed: count it, and open the circuit when due."""
        self.consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._cooldown = min(self._cooldown * 2, self.max_reset_timeout)
            self._open("after its probe call failed")
        elif self._state is BreakerState.CLOSED and self.consecutive_failures >= self.failure_threshold:
            self._cooldown = self.reset_timeout
            self._open(f"after {self.consecutive_failures} consecutive failures")

    def trip(self, why: str) -> None:
        """Open the circuit now, whatever the count (the peer was found hung)."""
        if self._state is BreakerState.OPEN:
            return
        self.consecutive_failures = max(self.consecutive_failures, 1)
        self._probing = False
        self._cooldown = self.reset_timeout
        self._open(why)

    def release(self) -> None:
        """The call let through ended without telling anything about the peer."""
        if self._probing:
            self._probing = False

    def _open(self, why: str) -> None:
        self.reason = why
        self._retry_at = self._clock.seconds() + self._cooldown
        self.opened += 1
        if self._state is BreakerState.OPEN:
            return
        self._become(BreakerState.OPEN, why)

    def describe(self) -> str:
        """A short explanation of a refusal, for statistics and messages."""
        state = self.state
        if state is BreakerState.OPEN and self.background_probing:
            return f"not called: circuit open {self.reason}; it is probed in the background"
        if state is BreakerState.OPEN:
            wait = max(0.0, self._retry_at - self._clock.seconds())
            return (
                f"not called: circuit open {self.reason}, next probe in {wait:.0f} s at the latest"
            )
        if state is BreakerState.HALF_OPEN:
            return "not called: circuit half-open, a probe call is in progress"
        return "circuit closed"

# -*- test-case-name: tests.managers.test_island,tests.loopback.test_island_agent,tests.loopback.test_store_recovery -*-
"""
When the island's checks run: at the next known boundary (a timer re-armed
after every check), every C{sweep_interval} seconds as a safety net, and
whenever a change asks for one; and when failed gateway work is retried
(back-off per booking). Everything runs on the injected clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from geniam.store.errors import StoreError

BOUNDARY_SLACK = 0.001
"""Seconds after a boundary at which its timer fires, so the boundary has passed."""


class Backoff:
    """
    Retry times of failed gateway work, per booking: the first retry after
    C{first} seconds, each next one after twice as long, up to C{longest}.
    """

    def __init__(self, clock: IReactorTime, first: float, longest: float) -> None:
        self._clock = clock
        self._first = first
        self._longest = longest
        self._entries: dict[str, tuple[int, float]] = {}

    def note_failure(self, key: str) -> float:
        """Record one more failure of the booking C{key}; return the delay before its retry."""
        attempts = self._entries.get(key, (0, 0.0))[0] + 1
        delay = min(self._first * 2 ** (attempts - 1), self._longest)
        self._entries[key] = (attempts, self._clock.seconds() + delay)
        return delay

    def may_retry(self, key: str, now: float) -> bool:
        """True unless the booking C{key} waits for a retry later than C{now}."""
        entry = self._entries.get(key)
        return entry is None or entry[1] <= now

    def forget(self, key: str) -> None:
        """The booking C{key} succeeded, or needs no more work."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Retry everything at once (the gateway has come back)."""
        self._entries.clear()

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget every booking but C{keys}."""
        wanted = set(keys)
        self._entries = {key: value for key, value in self._entries.items() if key in wanted}

    def moments(self) -> list[float]:
        """When the waiting retries are due."""
        return [when for _, when in self._entries.values()]


class Scheduler:
    """
    Runs the island's check: overlapping requests share one run, a request
    made during a run gets another run after it, and a failed run is
    logged, never raised.

    @param clock: the clock for the timers.
    @param sweep_interval: seconds between safety sweeps.
    @param check: one check; its argument says whether to repair drift.
        A L{StoreError} makes the check (and a requested repair) wait for
        the next run.
    @param next_boundary: fires with the next moment after the given one
        when a booking changes by itself, or None.
    @param backoff: the retries to wake up for.
    @param background: runs a coroutine without waiting for it.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        sweep_interval: float,
        check: Callable[[bool], Awaitable[None]],
        next_boundary: Callable[[float], Awaitable[float | None]],
        backoff: Backoff,
        background: Callable[[Coroutine[Any, Any, Any], str], None],
    ) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._check = check
        self._next_boundary = next_boundary
        self._backoff = backoff
        self._background = background
        self.running = False
        self._loop: LoopingCall | None = None
        self._timer: IDelayedCall | None = None
        self._sweeping = False
        self._sweep_pending = False
        self._repair_pending = False
        self._waiters: list[Deferred[None]] = []

    def start(self) -> None:
        """Start the safety sweep (its first run one interval from now)."""
        if self.running:
            return
        self.running = True
        loop = LoopingCall(self.sweep)
        loop.clock = self._clock
        self._loop = loop

        def loop_stopped(failure: Failure) -> None:
            self.log.failure("the island's periodic check stopped", failure)

        loop.start(self._sweep_interval, now=False).addErrback(loop_stopped)

    def stop(self) -> None:
        """Stop the safety sweep and the boundary timer."""
        self.running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def sweep(self) -> Deferred[None]:
        """Run the check now (or after the one running); fire with None when done."""
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        self._sweep_pending = True
        if not self._sweeping:
            self._sweeping = True
            self._background(self._sweep_loop(), "island check")
        return d

    def repair(self) -> Deferred[None]:
        """Run the check with a drift repair; fire with None when done."""
        self._repair_pending = True
        return self.sweep()

    def changed(self) -> None:
        """Bookings changed: check them now if running."""
        if self.running:
            self.sweep()

    async def _sweep_loop(self) -> None:
        try:
            while self._sweep_pending:
                self._sweep_pending = False
                repair, self._repair_pending = self._repair_pending, False
                waiters, self._waiters = self._waiters, []
                try:
                    await self._check(repair)
                except StoreError as e:
                    # The store logs the outage and its end once; the next check retries.
                    self.log.debug("island check waits for the database: {error}", error=e.message)
                    self._repair_pending = self._repair_pending or repair
                except Exception:
                    self.log.failure("island check failed")
                for waiter in waiters:
                    waiter.callback(None)
        finally:
            self._sweeping = False

    async def rearm(self) -> None:
        """Set the boundary timer to the next boundary or retry, whichever comes first."""
        if not self.running:
            return
        moments = self._backoff.moments()
        boundary = await self._next_boundary(self._clock.seconds())
        if boundary is not None:
            moments.append(boundary)
        if moments:
            self._schedule(min(moments))

    def _schedule(self, moment: float) -> None:
        if not self.running:
            return
        target = moment + BOUNDARY_SLACK
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= target:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(max(0.0, target - self._clock.seconds()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.sweep()

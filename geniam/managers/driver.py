# -*- test-case-name: tests.managers.test_driver,tests.loopback.test_driver_postgres,tests.loopback.test_driver_processes -*-
"""
Which aggregate-manager process drives the island's gateway.

Several processes may share one island's database and all answer the API,
but only one at a time sends the gateway its configuration: the holder of
an L{IDriverLease} (a session-level PostgreSQL advisory lock, or
L{AlwaysLease} for a store only one process opens). L{GatewayDriver} polls
the lease on the injected clock: a process without it tries to take it, a
process with it checks it still holds it. Gaining or losing the role is
logged once and told to the observers (the island catches up on gaining
it, as after a restart).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from geniam.interfaces import IDriverLease

DEFAULT_DRIVER_POLL = 2.0
"""Seconds between two looks at the driver lease (taking it, or checking it is still held)."""


@implementer(IDriverLease)
class AlwaysLease:
    """The lease of a store only one process opens (SQLite): always held."""

    def acquire(self) -> Deferred[bool]:
        """Fire with True."""
        return succeed(True)

    def confirm(self) -> Deferred[bool]:
        """Fire with True."""
        return succeed(True)

    def release(self) -> Deferred[None]:
        """Nothing to give up."""
        return succeed(None)


class GatewayDriver:
    """
    Whether this process is the island's gateway driver, kept up to date
    every C{poll} seconds on C{clock}.

    @ivar driving: True while this process holds the lease.
    @ivar observers: called with True on gaining the role, False on losing it.
    @ivar ticks: called after every poll while driving (e.g. to re-read
        the next boundary, which another process may have booked).
    """

    log = Logger()

    def __init__(self, lease: IDriverLease, clock: IReactorTime, poll: float = DEFAULT_DRIVER_POLL) -> None:
        if not poll > 0:
            raise ValueError("the driver poll interval must be positive")
        self._lease = lease
        self._clock = clock
        self._poll_interval = poll
        self._loop: LoopingCall | None = None
        self.driving = False
        self.observers: list[Callable[[bool], object]] = []
        self.ticks: list[Callable[[], object]] = []

    def start(self) -> Deferred[None]:
        """Look at the lease now and every poll interval after; fire once the first look is done."""
        if self._loop is not None:
            return succeed(None)
        loop = LoopingCall(self.poll)
        loop.clock = self._clock
        self._loop = loop

        def stopped(failure: Failure) -> None:
            self.log.failure("the gateway driver election stopped", failure)

        first = self.poll()
        loop.start(self._poll_interval, now=False).addErrback(stopped)
        return first

    def stop(self) -> Deferred[None]:
        """Stop polling and give the lease up (another process takes over)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._set(False)
        return self._lease.release()

    def poll(self) -> Deferred[None]:
        """Take the lease if free, or check it is still held; never fails (errors count as not holding it)."""
        return Deferred.fromCoroutine(self._poll())

    async def _poll(self) -> None:
        try:
            held = await (self._lease.confirm() if self.driving else self._lease.acquire())
        except Exception:
            self.log.failure("looking at the gateway driver lease failed")
            held = False
        if self._loop is None:
            return  # stopped meanwhile
        self._set(bool(held))
        if self.driving:
            for tick in list(self.ticks):
                tick()

    async def confirm(self) -> bool:
        """True if this process drives and still holds the lease now (checked with the database)."""
        if not self.driving:
            return False
        try:
            held = bool(await self._lease.confirm())
        except Exception:
            self.log.failure("checking the gateway driver lease failed")
            held = False
        self._set(held)
        return held

    def _set(self, driving: bool) -> None:
        if driving == self.driving:
            return
        self.driving = driving
        if driving:
            self.log.info("this process now drives the island's gateway")
        else:
            self.log.warn("this process no longer drives the island's gateway")
        for observer in list(self.observers):
            observer(driving)

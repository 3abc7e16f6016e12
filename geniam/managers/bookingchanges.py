# -*- test-case-name: tests.managers.test_island,tests.managers.test_island_sqlite -*-
"""
Changes to stored bookings: read, compute the new value (a transition of
L{geniam.booking.lifecycle.step} or a computation of the caller's), write
it if the booking did not change meanwhile, else read again and retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.errors import NotCurrent, NotPermitted
from geniam.booking.lifecycle import Event, step
from geniam.booking.values import Booking
from geniam.errors import GeniCode, GeniError
from geniam.interfaces import IStore
from geniam.store.errors import StaleBooking

CHANGE_ATTEMPTS = 5
"""How often a change is retried when the booking changed meanwhile."""


class BookingChanges:
    """
    Reads and optimistic writes of one island's bookings.

    @param store: where the bookings persist.
    @param clock: the clock that says when a change happens.
    """

    log = Logger()

    def __init__(self, store: IStore, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock
        self.observers: list[Callable[[], object]] = []

    def notify(self) -> None:
        """Call every observer: a booking was written (see L{IslandResourceManager.observe_bookings})."""
        for observer in list(self.observers):
            try:
                observer()
            except Exception:
                self.log.failure("a booking observer failed")

    async def get(self, urn: str) -> Booking:
        """
        Fire with the booking of a sliver URN, holds included.

        @raise GeniError: SEARCHFAILED if there is none.
        """
        booking = await self._store.get(urn)
        if booking is None:
            raise GeniError(GeniCode.SEARCHFAILED, f"no such sliver: {urn}")
        return booking

    async def change(
        self, urns: Sequence[str], compute: Callable[[list[Booking], float], Awaitable[list[Booking]]]
    ) -> list[Booking]:
        """Read the bookings, compute their new values and store them all or none, retrying if they changed meanwhile."""
        for _ in range(CHANGE_ATTEMPTS):
            current = [await self.get(urn) for urn in urns]
            new = await compute(current, self._clock.seconds())
            try:
                changed = list(await self._store.update(new))
            except StaleBooking:
                continue
            self.notify()
            return changed
        raise GeniError(GeniCode.BUSY, "the slivers kept changing; try again")

    async def change_one(self, urn: str, change: Callable[[Booking, float], Booking | None]) -> Booking:
        """Apply C{change} to one booking (None: leave it), retrying if it changed meanwhile; return it as stored."""
        for _ in range(CHANGE_ATTEMPTS):
            current = await self.get(urn)
            new = change(current, self._clock.seconds())
            if new is None or new is current:
                return current
            try:
                stored = (await self._store.update([new]))[0]
            except StaleBooking:
                continue
            self.notify()
            return stored
        raise GeniError(GeniCode.BUSY, f"sliver {urn} kept changing; try again")

    async def step_one(
        self, urn: str, event: Event, *, only_if: Callable[[Booking], bool] | None = None, **details: Any
    ) -> Booking:
        """
        Move one booking on by C{event} (L{step}, with C{details} as its
        keyword arguments); return it as stored. A booking the event does not
        apply to, or that fails C{only_if}, is left as it is.
        """

        def stepped(current: Booking, now: float) -> Booking | None:
            if only_if is not None and not only_if(current):
                return None
            try:
                return step(current, event, now, **details)
            except (NotPermitted, NotCurrent):
                return None

        return await self.change_one(urn, stepped)

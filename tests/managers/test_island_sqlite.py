"""
The island resource manager on SQLite with real threads: concurrent
allocations of one slot, from one manager and from two sharing a file.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.agent.inprocess import InProcessGateway
from geniam.booking.errors import BookingConflict
from geniam.booking.values import Booking, Slot
from geniam.errors import GeniCode
from geniam.managers.errors import TranslatedError
from geniam.managers.island import IslandResourceManager
from geniam.store.sqlite import SQLiteStore

T0 = 1_800_000_000.0
AUTHORITY = "geni.example.net:island"
ALICE = "urn:publicid:IDN+geni.example.net+user+alice"


class ConcurrentAllocateTests(TestCase):
    """Only the database decides which of many simultaneous allocations wins."""

    async def manager(self, path: str) -> IslandResourceManager:
        store = SQLiteStore(path, reactor=reactor)
        await store.start()
        self.addCleanup(store.stop)
        clock = Clock()
        clock.advance(T0)
        return IslandResourceManager(store, InProcessGateway(), clock, AUTHORITY)

    async def race(self, managers: list[IslandResourceManager], count: int) -> list[tuple[bool, object]]:
        slot = Slot(T0 + 100, T0 + 200)
        calls: list[Deferred[Any]] = [
            managers[i % len(managers)].allocate(f"urn:publicid:IDN+geni.example.net+slice+s{i}", ALICE, "", slot, None)
            for i in range(count)
        ]
        return await DeferredList(calls, consumeErrors=True)

    def check_one_winner(self, outcomes: list[tuple[bool, object]]) -> None:
        winners = [value for ok, value in outcomes if ok]
        self.assertEqual(len(winners), 1)
        self.assertIsInstance(winners[0], Booking)
        for ok, value in outcomes:
            if not ok:
                value.trap(TranslatedError)  # type: ignore[attr-defined]
                self.assertIsInstance(value.value.cause, BookingConflict)  # type: ignore[attr-defined]
                self.assertEqual(value.value.code, GeniCode.UNAVAILABLE)  # type: ignore[attr-defined]

    async def test_one_manager(self) -> None:
        """Thirty allocations of one slot at once: exactly one succeeds, the rest are UNAVAILABLE."""
        manager = await self.manager(self.mktemp())
        self.check_one_winner(await self.race([manager], 30))

    async def test_two_managers_one_file(self) -> None:
        """Two managers with their own connections to one file: still exactly one succeeds."""
        path = self.mktemp()
        first = await self.manager(path)
        second = await self.manager(path)
        self.check_one_winner(await self.race([first, second], 30))
        self.assertEqual(len(await first.booked_slots(Slot(T0, T0 + 1000))), 1)

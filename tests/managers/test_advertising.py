"""
Tests for L{geniam.managers.advertising}: the ListResources answer is kept
while nothing it shows changes, and changes as soon as a booking, a slot
boundary or another process's booking does.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from geniam.managers.advertising import RECHECK_INTERVAL, AdvertisementCache
from geniam.protocols.marshal import EncodedResponse, dump_response
from geniam.rspec.resources import IslandResources
from geniam.timeutil import format_time
from tests.managers.test_island import AUTHORITY, HOUR, Island, at

AM_URN = f"urn:publicid:IDN+{AUTHORITY}+authority+am"


def cache_for(island: Island) -> AdvertisementCache:
    """An advertisement cache of an island's manager."""
    resources = IslandResources.create(AM_URN, ("00:00:00:00:00:00:00:99",))

    async def current() -> IslandResources:
        return resources

    return AdvertisementCache(island.manager, current, island.clock)


def booked(slot_start: float, slot_end: float) -> str:
    """How the schedule shows a booked slot."""
    return f'start="{format_time(slot_start)}" end="{format_time(slot_end)}"'


class AdvertisementCacheTests(SynchronousTestCase):
    """What ListResources answers, and when it is built again."""

    def setUp(self) -> None:
        self.island = Island(self)
        self.island.start()
        self.cache = cache_for(self.island)

    def answer(self, cache: AdvertisementCache | None = None, available: bool = False) -> EncodedResponse:
        answer: EncodedResponse = self.successResultOf(
            Deferred.fromCoroutine((cache or self.cache).answer(available, False))
        )
        return answer

    def rspec(self, answer: Any) -> str:
        self.assertEqual(answer["code"]["geni_code"], 0)
        rspec: str = answer["value"]
        return rspec

    def test_kept_while_nothing_changes(self) -> None:
        """Calls within one second get the very same encoded answer, which encodes as the struct it holds."""
        first = self.answer()
        self.assertIs(self.answer(), first)
        self.assertEqual(first.body, dump_response(dict(first)))
        self.island.clock.advance(0.5)
        self.assertIs(self.answer(), first)

    def test_allocate_and_delete_show_at_once(self) -> None:
        """A booking made or deleted through the island manager shows in the very next answer, at the same instant."""
        before = self.rspec(self.answer())
        booking = self.island.allocate(2 * HOUR, 3 * HOUR)
        after = self.rspec(self.answer())
        self.assertNotIn(booked(at(2 * HOUR), at(3 * HOUR)), before)
        self.assertIn(booked(at(2 * HOUR), at(3 * HOUR)), after)
        self.island.ok(self.island.manager.delete([booking.sliver_urn]))
        self.assertNotIn(booked(at(2 * HOUR), at(3 * HOUR)), self.rspec(self.answer()))

    def test_expiry_shows_at_once(self) -> None:
        """An unprovisioned allocation that expires leaves the schedule at the expiry, not a recheck later."""
        island = Island(self, allocation_ttl=HOUR)
        island.start()
        cache = cache_for(island)
        island.allocate(5 * HOUR, 6 * HOUR)
        island.advance_to(HOUR - RECHECK_INTERVAL / 4)
        self.assertIn(booked(at(5 * HOUR), at(6 * HOUR)), self.rspec(self.answer(cache)))
        island.advance_to(HOUR + RECHECK_INTERVAL / 4)
        self.assertNotIn(booked(at(5 * HOUR), at(6 * HOUR)), self.rspec(self.answer(cache)))

    def test_slot_start_and_end_show_at_once(self) -> None:
        """
        At the start of an allocated slot (nothing is written then) the
        switches show unavailable, and at its end available again, without
        waiting for a recheck, even within one second.
        """
        start, end = HOUR + 0.5, 2 * HOUR + 0.5
        self.island.allocate(start, end)
        self.island.advance_to(start - 0.25)
        self.assertIn('now="true"', self.rspec(self.answer()))
        self.island.advance_to(start + 0.25)
        self.assertIn('now="false"', self.rspec(self.answer()))
        self.assertNotIn('now="true"', self.rspec(self.answer()))
        self.island.advance_to(end - 0.25)
        self.assertIn('now="false"', self.rspec(self.answer()))
        self.island.advance_to(end + 0.25)
        self.assertIn('now="true"', self.rspec(self.answer()))

    def test_available_only_is_its_own_answer(self) -> None:
        """geni_available gets its own answer: while the island is booked it leaves the switches out."""
        self.island.provisioned(0, HOUR)
        self.island.advance_to(1)
        self.assertIn("<node", self.rspec(self.answer()))
        self.assertNotIn("<node", self.rspec(self.answer(available=True)))

    def test_other_process_seen_within_recheck(self) -> None:
        """
        A booking another manager writes to the same database (another
        process) shows once the recheck interval has passed.
        """
        path = self.mktemp()
        mine = Island(self, path)
        theirs = Island(self, path, clock=mine.clock)
        mine.start()
        theirs.start()
        cache = cache_for(mine)
        first = self.answer(cache)
        theirs.allocate(2 * HOUR, 3 * HOUR)
        mine.clock.advance(RECHECK_INTERVAL)
        self.assertIn(booked(at(2 * HOUR), at(3 * HOUR)), self.rspec(self.answer(cache)))
        self.assertNotIn(booked(at(2 * HOUR), at(3 * HOUR)), self.rspec(first))

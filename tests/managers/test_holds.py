"""
Tests of holds in L{geniam.managers.island} and through the AM API v3
adapter (L{geniam.managers.aggregate}): a hold keeps other slices off its
slot, but is not a sliver, so Status, Describe and the manifests never
show it. Holds are made in the store directly, as their makers will.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.lifecycle import new_hold
from geniam.booking.values import AllocationState, Booking, Slot, make_sliver_urn
from geniam.errors import GeniCode, GeniError
from geniam.managers.aggregate import AggregateInfo, AggregateManager
from geniam.rspec.island import read_schedule
from geniam.rspec.namespaces import ISLAND_NS
from geniam.trust.context import CallContext
from tests.managers.test_aggregate import FakeAuthorizer, grant_for
from tests.trust.test_credential_fixtures import world
from tests.managers.test_island import ALICE, AUTHORITY, DAY, HOUR, OTHER_SLICE, SLICE, Island, at

AM_URN = f"urn:publicid:IDN+{AUTHORITY}+authority+am"
V3 = {"geni_rspec_version": {"type": "GENI", "version": "3"}}


class HoldTests(SynchronousTestCase):
    """A hold of hours 10 to 12 and a provisioned sliver of hours 2 to 3, both of one slice."""

    def setUp(self) -> None:
        self.island = Island(self)
        self.island.start()
        self.sliver = self.island.provisioned(2 * HOUR, 3 * HOUR)
        self.hold = self.hold_of(SLICE, 10 * HOUR, 12 * HOUR)
        self.am = AggregateManager(self.island.manager, AggregateInfo(AM_URN, "https://am.example/"), self.island.clock)
        self.context = CallContext(world().alice.gid, (), FakeAuthorizer(grant_for(world().alice.gid, at(30 * DAY))))

    def hold_of(self, slice_urn: str, start: float, end: float, name: str = "held1") -> Booking:
        """Store a ticket's hold of C{[start, end)} for C{slice_urn}, lapsing in a day."""
        hold = new_hold(
            sliver_urn=make_sliver_urn(AUTHORITY, name),
            slice_urn=slice_urn,
            owner_urn=ALICE,
            owner_email="",
            slot=Slot(at(start), at(end)),
            now=self.island.clock.seconds(),
            expires=self.island.clock.seconds() + DAY,
            held_by="ticket",
            credential_expires=None,
            max_slot_length=self.island.manager.max_slot_length,
        )
        stored: Booking = self.island.ok(self.island.store.insert(hold))
        self.assertIs(stored.allocation_state, AllocationState.HELD)
        return stored

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def refused(self, coroutine: Coroutine[Any, Any, Any], code: GeniCode) -> GeniError:
        error = self.failureResultOf(Deferred.fromCoroutine(coroutine), GeniError).value
        self.assertEqual(error.code, code, error.output)
        return error

    def test_hold_takes_its_slot(self) -> None:
        """The hold's slot is booked and unavailable, and another slice cannot allocate over it."""
        manager = self.island.manager
        booked = self.island.ok(manager.booked_slots(Slot(at(0), at(DAY))))
        self.assertEqual(booked, [self.sliver.slot, self.hold.slot])
        self.assertFalse(self.island.ok(manager.check_availability(Slot(at(11 * HOUR), at(13 * HOUR)))))
        self.assertTrue(self.island.ok(manager.check_availability(Slot(at(12 * HOUR), at(13 * HOUR)))))
        self.island.error(
            manager.allocate(OTHER_SLICE, ALICE, "", Slot(at(11 * HOUR), at(13 * HOUR)), at(30 * DAY)), GeniCode.UNAVAILABLE
        )

    def test_advertisement_shows_the_hold_as_booked(self) -> None:
        """ListResources advertises the hold's slot as taken."""
        advertisement = self.call(self.am.ListResources(self.context, V3))["value"]
        schedule = etree.fromstring(advertisement.encode()).find(f"{{{ISLAND_NS}}}schedule")
        assert schedule is not None
        slots = [(self.sliver.slot.start, self.sliver.slot.end), (self.hold.slot.start, self.hold.slot.end)]
        self.assertEqual(read_schedule(schedule), slots)
        self.assertNotIn(self.hold.sliver_urn, advertisement)

    def test_not_a_sliver_of_its_slice(self) -> None:
        """The slice's reads show its sliver only; the hold keeps its slot."""
        status = self.call(self.am.Status(self.context, [SLICE], {}))["value"]
        self.assertEqual([s["geni_sliver_urn"] for s in status["geni_slivers"]], [self.sliver.sliver_urn])
        described = self.call(self.am.Describe(self.context, [SLICE], V3))["value"]
        self.assertEqual([s["geni_sliver_urn"] for s in described["geni_slivers"]], [self.sliver.sliver_urn])
        self.assertIn(self.sliver.sliver_urn, described["geni_rspec"])
        self.assertNotIn(self.hold.sliver_urn, described["geni_rspec"])
        self.assertEqual(self.island.ok(self.island.manager.slice_bookings(SLICE)), [self.island.get(self.sliver)])

    def test_not_found_by_its_urn(self) -> None:
        """Naming the hold's URN finds no sliver, for reads and for changes."""
        urn = self.hold.sliver_urn
        self.refused(self.am.Status(self.context, [urn], {}), GeniCode.SEARCHFAILED)
        self.refused(self.am.Describe(self.context, [urn], V3), GeniCode.SEARCHFAILED)
        manager = self.island.manager
        self.island.error(manager.lookup([urn]), GeniCode.SEARCHFAILED)
        self.island.error(manager.provision([urn]), GeniCode.SEARCHFAILED)
        self.island.error(manager.renew([urn], at(13 * HOUR)), GeniCode.SEARCHFAILED)
        self.island.error(manager.delete([urn]), GeniCode.SEARCHFAILED)
        self.island.error(manager.perform_action([urn], "geni_stop"), GeniCode.SEARCHFAILED)
        self.assertIs(self.island.get(self.hold).allocation_state, AllocationState.HELD)

    def test_slice_with_only_a_hold(self) -> None:
        """A slice holding a slot but no sliver has no live slivers here; deleting it leaves the hold."""
        self.hold_of(OTHER_SLICE, 20 * HOUR, 21 * HOUR, "held2")
        error = self.refused(self.am.Status(self.context, [OTHER_SLICE], {}), GeniCode.SEARCHFAILED)
        self.assertIn("no live slivers", error.output)
        self.assertEqual(self.call(self.am.Delete(self.context, [OTHER_SLICE], {}))["value"], [])
        self.assertEqual(self.island.ok(self.island.manager.shutdown(OTHER_SLICE)), [])
        held = self.island.ok(self.island.store.list_by_slice(OTHER_SLICE, True))
        self.assertEqual([b.allocation_state for b in held], [AllocationState.HELD])

    def test_hold_lapses_in_the_check(self) -> None:
        """The periodic check lets a hold lapse at its expiry, freeing its slot."""
        self.island.advance_to(DAY + 1)
        self.assertIs(self.island.get(self.hold).allocation_state, AllocationState.EXPIRED)
        self.assertTrue(self.island.ok(self.island.manager.check_availability(self.hold.slot)))

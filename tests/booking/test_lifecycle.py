"""
Tests for L{geniam.booking.lifecycle}: holds and the transitions of
(booking, event, now), and properties over random event sequences.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.errors import BookingConflict, BookingError, NotCurrent, NotPermitted
from geniam.booking.lifecycle import Event, Removal, new_hold, step, taken_up
from geniam.booking.rules import check_free, due, new_booking, next_boundary
from geniam.booking.values import AllocationState, Booking, OperationalState, Slot

TTL = 500.0
LONGEST = 10_000.0


def hold(name: str, start: float, end: float, now: float = 0.0, expires: float = 300.0, slice_name: str = "s") -> Booking:
    """A hold of C{[start, end)} made at C{now} for slice C{slice_name}."""
    return new_hold(
        sliver_urn=f"urn:publicid:IDN+am+sliver+{name}",
        slice_urn=f"urn:publicid:IDN+geni+slice+{slice_name}",
        owner_urn="urn:publicid:IDN+geni+user+alice",
        owner_email="",
        slot=Slot(start, end),
        now=now,
        expires=expires,
        held_by="ticket",
        credential_expires=None,
        max_slot_length=LONGEST,
    )


class HoldTests(SynchronousTestCase):
    """A hold is a live promise that is not a sliver and lapses by itself."""

    def test_hold_is_live_not_sliver(self) -> None:
        """A new hold is live (it keeps others off the slot) but is not a sliver."""
        h = hold("h", 100, 200)
        self.assertTrue(h.live)
        self.assertFalse(h.is_sliver)
        self.assertEqual(h.allocation_state, AllocationState.HELD)
        self.assertRaises(BookingConflict, check_free, Slot(150, 250), [h])

    def test_hold_expiry_capped_by_slot(self) -> None:
        """A hold never outlives its slot."""
        self.assertEqual(hold("h", 100, 200, expires=1000).allocation_expires, 200)

    def test_hold_needs_a_holder_and_a_future(self) -> None:
        """A hold names what holds it and may not lapse at once."""
        self.assertRaises(NotPermitted, new_hold, **{**hold_args(), "held_by": ""})
        self.assertRaises(NotPermitted, new_hold, **{**hold_args(), "expires": 0.0})

    def test_take_up(self) -> None:
        """A hold taken up is an allocation of its slot, a sliver, lapsing as allocations do."""
        a = taken_up(hold("h", 1000, 2000), 10.0, TTL, None)
        self.assertEqual((a.allocation_state, a.allocation_expires, a.held_by, a.is_sliver), (AllocationState.ALLOCATED, 510.0, "", True))
        self.assertRaises(NotPermitted, taken_up, a, 20.0, TTL, None)
        self.assertRaises(NotCurrent, taken_up, hold("h", 1000, 2000), 300.0, TTL, None)

    def test_release_and_expire(self) -> None:
        """A hold given back is released, a lapsed one expired; neither holds the island."""
        self.assertFalse(step(hold("h", 100, 200), Event.RELEASE, 10).live)
        self.assertEqual(step(hold("h", 100, 200, expires=50), Event.EXPIRE, 50).allocation_state, AllocationState.EXPIRED)
        self.assertRaises(NotPermitted, step, hold("h", 100, 200, expires=50), Event.EXPIRE, 49)

    def test_not_provisionable_directly(self) -> None:
        """A hold is provisioned only after it is taken up: it is not yet a sliver."""
        from geniam.booking.rules import provisioned

        self.assertRaises(NotPermitted, provisioned, hold("h", 100, 200), 10)


def hold_args() -> dict[str, object]:
    """The arguments of a valid hold."""
    return dict(
        sliver_urn="urn:publicid:IDN+am+sliver+h",
        slice_urn="urn:publicid:IDN+geni+slice+s",
        owner_urn="urn:publicid:IDN+geni+user+alice",
        owner_email="",
        slot=Slot(100, 200),
        now=0.0,
        expires=50.0,
        held_by="ticket",
        credential_expires=None,
        max_slot_length=LONGEST,
    )


class StepTests(SynchronousTestCase):
    """The operational and ending transitions."""

    def test_started_then_ended(self) -> None:
        """Provisioned -> configuring -> ready during the slot -> ended after it."""
        b = replace(taken_up(hold("h", 100, 200), 0, TTL, None), allocation_state=AllocationState.PROVISIONED)
        b = step(b, Event.CONFIGURE, 100)
        self.assertEqual((b.operational_state, b.applied), (OperationalState.CONFIGURING, True))
        b = step(b, Event.READY, 101)
        self.assertEqual(b.operational_state, OperationalState.READY)
        self.assertRaises(NotPermitted, step, b, Event.END, 199)
        self.assertEqual(step(b, Event.END, 200).allocation_state, AllocationState.ENDED)

    def test_configure_outside_slot_refused(self) -> None:
        """The configuration is applied only while the slot runs."""
        b = replace(taken_up(hold("h", 100, 200), 0, TTL, None), allocation_state=AllocationState.PROVISIONED)
        self.assertRaises(NotPermitted, step, b, Event.CONFIGURE, 99)

    def test_delete_only_slivers(self) -> None:
        """Delete applies to allocations and provisioned bookings; a hold is released instead."""
        self.assertRaises(NotPermitted, step, hold("h", 100, 200), Event.DELETE, 10)
        a = taken_up(hold("h", 100, 200), 0, TTL, None)
        self.assertEqual(step(a, Event.DELETE, 10).allocation_state, AllocationState.DELETED)



def provisioned_booking(start: float = 100, end: float = 200) -> Booking:
    """A provisioned booking of C{[start, end)} (a hold taken up at 0, then provisioned)."""
    return replace(taken_up(hold("p", start, end), 0, TTL, None), allocation_state=AllocationState.PROVISIONED)


class EventTests(SynchronousTestCase):
    """Each event of the hold and the gateway, through L{step} itself."""

    def test_take_up_event(self) -> None:
        """TAKE_UP makes a hold an allocation lapsing at the earliest of the TTL and the credential; only a hold is taken up."""
        a = step(hold("h", 1000, 2000), Event.TAKE_UP, 10.0, allocation_ttl=TTL, credential_expires=400.0)
        self.assertEqual((a.allocation_state, a.allocation_expires, a.held_by, a.updated), (AllocationState.ALLOCATED, 400.0, "", 10.0))
        self.assertEqual(step(hold("h", 1000, 2000), Event.TAKE_UP, 10.0, allocation_ttl=TTL).allocation_expires, 510.0)
        self.assertRaises(NotPermitted, step, a, Event.TAKE_UP, 20.0, allocation_ttl=TTL)

    def test_release_event(self) -> None:
        """RELEASE gives a hold back at once (no longer live); an allocation is deleted, not released."""
        released = step(hold("h", 100, 200), Event.RELEASE, 10.0)
        self.assertEqual((released.allocation_state, released.live, released.updated), (AllocationState.RELEASED, False, 10.0))
        self.assertRaises(NotPermitted, step, released, Event.RELEASE, 11.0)
        self.assertRaises(NotPermitted, step, taken_up(hold("h", 100, 200), 0, TTL, None), Event.RELEASE, 10.0)

    def test_unreachable_event(self) -> None:
        """UNREACHABLE shows a running booking configuring with the reason, keeping what is applied; only while the slot runs."""
        b = step(provisioned_booking(), Event.CONFIGURE, 100)
        u = step(b, Event.UNREACHABLE, 150, error="the gateway agent is unreachable")
        self.assertEqual(
            (u.operational_state, u.applied, u.error, u.updated),
            (OperationalState.CONFIGURING, True, "the gateway agent is unreachable", 150),
        )
        self.assertEqual(step(step(u, Event.READY, 160), Event.UNREACHABLE, 170).error, "")
        self.assertRaises(NotPermitted, step, provisioned_booking(), Event.UNREACHABLE, 99)
        self.assertRaises(NotPermitted, step, provisioned_booking(), Event.UNREACHABLE, 200)
        self.assertRaises(NotPermitted, step, taken_up(hold("h", 100, 200), 0, TTL, None), Event.UNREACHABLE, 150)

    def test_removed_event(self) -> None:
        """REMOVED: a ready booking's configuration replaced on the gateway is no longer applied nor ready; one not applied is refused."""
        ready = step(step(provisioned_booking(), Event.CONFIGURE, 100), Event.READY, 101)
        r = step(ready, Event.REMOVED, 150)
        self.assertEqual((r.applied, r.operational_state, r.updated), (False, OperationalState.NOTREADY, 150))
        failed = step(step(provisioned_booking(), Event.CONFIGURE, 100), Event.FAIL, 101, error="refused")
        kept = step(failed, Event.REMOVED, 150)
        self.assertEqual((kept.applied, kept.operational_state, kept.error), (False, OperationalState.FAILED, "refused"))
        self.assertRaises(NotPermitted, step, r, Event.REMOVED, 151)

    def test_cleaned_event(self) -> None:
        """CLEANED: configuration left by a booking no longer live is gone, with its error; a live applied booking has nothing to clean."""
        ready = step(step(provisioned_booking(), Event.CONFIGURE, 100), Event.READY, 101)
        ended = step(ready, Event.END, 200, removal=Removal(still_applied=True, error="removal failed"))
        self.assertEqual((ended.applied, ended.error), (True, "removal failed"))
        c = step(ended, Event.CLEANED, 210)
        self.assertEqual((c.applied, c.error, c.allocation_state, c.updated), (False, "", AllocationState.ENDED, 210))
        self.assertRaises(NotPermitted, step, ready, Event.CLEANED, 150)
        self.assertRaises(NotPermitted, step, c, Event.CLEANED, 211)

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["hold", "allocate", "take_up", "release", "delete", "tick"]),
        st.integers(0, 3),  # slice
        st.integers(0, 40),  # slot start, in tens
        st.integers(1, 10),  # slot length, in tens
        st.integers(0, 50),  # how far time moves, or which booking
    ),
    max_size=40,
)


class LifecyclePropertyTests(SynchronousTestCase):
    """Random event sequences through the pure transitions and the conflict rule, as a store applies them."""

    @given(OPERATIONS)
    def test_invariants(self, operations: list[tuple[str, int, int, int, int]]) -> None:
        """
        No two live bookings or holds overlap; every lapse is due and, once
        applied, frees its slot; nothing live is past its expiry after a tick.
        """
        now = 0.0
        bookings: list[Booking] = []
        for number, (kind, slice_number, start, length, amount) in enumerate(operations):
            slot = Slot(now + start * 10 + 1, now + (start + length) * 10 + 1)
            name = f"b{number}"
            try:
                if kind in ("hold", "allocate"):
                    if kind == "hold":
                        candidate = hold(name, slot.start, slot.end, now, now + amount * 10 + 1, f"s{slice_number}")
                    else:
                        candidate = new_booking(
                            sliver_urn=f"urn:publicid:IDN+am+sliver+{name}",
                            slice_urn=f"urn:publicid:IDN+geni+slice+s{slice_number}",
                            owner_urn="urn:publicid:IDN+geni+user+alice",
                            owner_email="",
                            slot=slot,
                            now=now,
                            allocation_ttl=TTL,
                            credential_expires=None,
                            max_slot_length=LONGEST,
                        )
                    check_free(candidate.slot, bookings)
                    bookings.append(candidate)
                elif kind == "tick":
                    now += amount
                    for lapsed in due(bookings, now).expire:
                        index = bookings.index(lapsed)
                        bookings[index] = step(lapsed, Event.EXPIRE, now)
                        check_free(lapsed.slot, bookings)  # the slot is free again
                    self.assertFalse([b for b in bookings if b.allocation_state in (AllocationState.HELD, AllocationState.ALLOCATED) and b.allocation_expires <= now])
                    boundary = next_boundary(bookings, now)
                    self.assertTrue(boundary is None or boundary > now)
                elif bookings:
                    index = amount % len(bookings)
                    event = {"take_up": Event.TAKE_UP, "release": Event.RELEASE, "delete": Event.DELETE}[kind]
                    bookings[index] = step(bookings[index], event, now, allocation_ttl=TTL)
            except BookingError:
                pass
            live = [b for b in bookings if b.live]
            for i, first in enumerate(live):
                for second in live[i + 1 :]:
                    self.assertFalse(first.slot.overlaps(second.slot), (first, second))

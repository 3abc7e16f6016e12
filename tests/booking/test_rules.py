"""
Tests for L{geniam.booking}: time slots, the booking lifecycle and its rules.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.errors import BookingConflict
from geniam.booking.rules import (
    allocation_expiry,
    check_current,
    check_free,
    check_slot_allowed,
    due,
    find_conflict,
    merge_users,
    needs_cleanup,
    needs_end,
    needs_expiry,
    needs_start,
    new_booking,
    next_boundary,
    provisioned,
    renewal_end,
    renewed,
)
from geniam.booking.values import MAX_TIME, AllocationState, Booking, OperationalState, Slot, UserKeys, make_sliver_urn
from geniam.managers.arguments import parse_users, validate_controller, validate_email
from geniam.managers.sliverstatus import geni_allocation_status, geni_expires, geni_operational_status
from geniam.booking.errors import BookingError
from geniam.errors import GeniCode, GeniError
from geniam.managers.errors import as_geni_error
from tests.store.test_contract import KEY_A, KEY_B, booking, sliver

ALICE = "urn:publicid:IDN+geni.example.net+user+alice"
BOB = "urn:publicid:IDN+geni.example.net+user+bob"
HOUR = 3600.0
DAY = 24 * HOUR


class SlotTests(SynchronousTestCase):
    """A slot is a validated half-open interval."""

    def test_fields_are_floats(self) -> None:
        """Integer times are kept as floats."""
        slot = Slot(10, 20)
        self.assertEqual((slot.start, slot.end, slot.duration), (10.0, 20.0, 10.0))
        self.assertIsInstance(slot.start, float)

    def test_end_after_start(self) -> None:
        """A slot that does not end after it starts is BADARGS."""
        for start, end in ((10, 10), (20, 10)):
            error = self.assertRaises(BookingError, Slot, start, end)
            self.assertEqual(as_geni_error(error).code, GeniCode.BADARGS)
            self.assertIn("end after it starts", error.message)

    def test_bad_values(self) -> None:
        """Non-numbers, booleans, NaN, infinities and times out of range are BADARGS."""
        for start, end in (("1", 2), (True, 5), (float("nan"), 5), (0, float("inf")), (-1, 5), (0, MAX_TIME + 1)):
            error = self.assertRaises(BookingError, Slot, start, end)
            self.assertEqual(as_geni_error(error).code, GeniCode.BADARGS)

    def test_back_to_back(self) -> None:
        """Touching slots do not overlap; sharing any instant does."""
        self.assertFalse(Slot(0, 10).overlaps(Slot(10, 20)))
        self.assertFalse(Slot(10, 20).overlaps(Slot(0, 10)))
        self.assertTrue(Slot(0, 10).overlaps(Slot(9.5, 20)))
        self.assertTrue(Slot(0, 10).overlaps(Slot(2, 3)))

    def test_contains(self) -> None:
        """The start is inside a slot, the end is not."""
        slot = Slot(10, 20)
        self.assertTrue(slot.contains(10))
        self.assertTrue(slot.contains(19.999))
        self.assertFalse(slot.contains(20))
        self.assertFalse(slot.contains(9.999))

    def test_text(self) -> None:
        """A slot reads as two RFC 3339 times."""
        self.assertEqual(str(Slot(0, 3600)), "1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z")

    @given(st.floats(0, 1e6), st.floats(0.001, 1e4), st.floats(0, 1e6), st.floats(0.001, 1e4))
    def test_overlap_is_interval_intersection(self, a: float, al: float, b: float, bl: float) -> None:
        """Two slots overlap exactly when their intervals share a point, symmetrically."""
        first, second = Slot(a, a + al), Slot(b, b + bl)
        expected = max(first.start, second.start) < min(first.end, second.end)
        self.assertEqual(first.overlaps(second), expected)
        self.assertEqual(second.overlaps(first), expected)

    @given(st.floats(0, 1e6), st.floats(0.001, 1e4), st.floats(0.001, 1e4))
    def test_back_to_back_never_overlap(self, start: float, first: float, second: float) -> None:
        """A slot starting where another ends never overlaps it."""
        a = Slot(start, start + first)
        self.assertFalse(a.overlaps(Slot(a.end, a.end + second)))


class BookingTests(SynchronousTestCase):
    """The booking record and its derived properties."""

    def test_live(self) -> None:
        """Only held, allocated and provisioned bookings are live."""
        live = {state: booking("a", 0, 10, state).live for state in AllocationState}
        self.assertEqual(
            {s for s, v in live.items() if v}, {AllocationState.HELD, AllocationState.ALLOCATED, AllocationState.PROVISIONED}
        )

    def test_ssh_keys(self) -> None:
        """Every user's keys, duplicates dropped, in order."""
        b = booking("a", 0, 10, users=(UserKeys(ALICE, (KEY_A, KEY_B)), UserKeys(BOB, (KEY_B,))))
        self.assertEqual(b.ssh_keys, (KEY_A, KEY_B))

    def test_keys_normalised(self) -> None:
        """Slice and sliver keys ignore the case of the authority and slice name."""
        b = booking("a", 0, 10, slice_urn="urn:publicid:IDN+GENI.example.net+slice+Exp1")
        self.assertEqual(b.slice_key, "urn:publicid:IDN+geni.example.net+slice+exp1")
        upper = booking("a", 0, 10, sliver_urn=sliver("Ab", "GENI.EXAMPLE.NET:island"))
        self.assertEqual(upper.sliver_key, "urn:publicid:IDN+geni.example.net:island+sliver+Ab")

    def test_states_coerced(self) -> None:
        """States given as strings become enums; the VLAN map is a private copy."""
        vlans = {"1": "2"}
        b = booking("a", 0, 10, allocation_state="provisioned", operational_state="ready", vlan_map=vlans)
        vlans["3"] = "4"
        self.assertIs(b.allocation_state, AllocationState.PROVISIONED)
        self.assertIs(b.operational_state, OperationalState.READY)
        self.assertEqual(b.vlan_map, {"1": "2"})

    def test_sliver_urn(self) -> None:
        """Sliver URNs name the AM authority; a bad authority is BADARGS."""
        self.assertEqual(make_sliver_urn("am.example.net", "abc"), "urn:publicid:IDN+am.example.net+sliver+abc")
        self.assertRaises(GeniError, make_sliver_urn, "bad authority", "abc")


class ValidationTests(SynchronousTestCase):
    """User parameters are validated into clean values or BADARGS."""

    def test_users(self) -> None:
        """geni_users becomes UserKeys, entries of one user merged."""
        users = parse_users([{"urn": ALICE, "keys": [KEY_A]}, {"urn": BOB, "keys": []}, {"urn": ALICE.replace("geni.example.net", "GENI.EXAMPLE.NET"), "keys": [KEY_B]}])
        self.assertEqual(users, (UserKeys(ALICE, (KEY_A, KEY_B)), UserKeys(BOB, ())))

    def test_bad_users(self) -> None:
        """Malformed geni_users is BADARGS."""
        bad: object
        for bad in ("x", [{"keys": []}], [{"urn": "urn:publicid:IDN+a+slice+b", "keys": []}], [{"urn": ALICE, "keys": ["nope"]}], [5]):
            error = self.assertRaises(GeniError, parse_users, bad)
            self.assertEqual(error.code, GeniCode.BADARGS)

    def test_email(self) -> None:
        """An e-mail address is a short printable string without spaces, possibly empty."""
        self.assertEqual(validate_email("a@b.c"), "a@b.c")
        self.assertEqual(validate_email(""), "")
        for bad in ("a b@c", "a\n@c", 5, "x" * 300):
            self.assertRaises(GeniError, validate_email, bad)

    def test_controller(self) -> None:
        """A controller is host:port; None and empty mean none."""
        self.assertEqual(validate_controller("10.0.0.1:6633"), "10.0.0.1:6633")
        self.assertIsNone(validate_controller(None))
        self.assertIsNone(validate_controller(""))
        self.assertRaises(GeniError, validate_controller, "10.0.0.1")

    def test_merge_users(self) -> None:
        """Listed users get exactly the listed keys, new users are added, others kept."""
        existing = (UserKeys(ALICE, (KEY_A,)), UserKeys(BOB, (KEY_B,)))
        carol = UserKeys("urn:publicid:IDN+geni.example.net+user+carol", (KEY_A,))
        merged = merge_users(existing, (UserKeys(ALICE.replace("geni.example.net", "GENI.example.net"), (KEY_B,)), carol))
        self.assertEqual([u.keys for u in merged], [(KEY_B,), (KEY_B,), (KEY_A,)])
        self.assertEqual(merged[2], carol)


class ExpiryTests(SynchronousTestCase):
    """When allocations lapse and what geni_expires reports."""

    def test_allocation_expiry(self) -> None:
        """The earliest of now plus the TTL, the credential's expiry and the slot's end."""
        slot = Slot(0, 100 * HOUR)
        self.assertEqual(allocation_expiry(0, 48 * HOUR, slot, None), 48 * HOUR)
        self.assertEqual(allocation_expiry(0, 48 * HOUR, slot, 10 * HOUR), 10 * HOUR)
        self.assertEqual(allocation_expiry(0, 48 * HOUR, Slot(0, HOUR), 10 * HOUR), HOUR)

    def test_geni_expires(self) -> None:
        """Allocated: the allocation expiry; provisioned: the slot end; dead: what it was."""
        a = booking("a", 100, 200, allocation_expires=50)
        self.assertEqual(geni_expires(a), 50)
        self.assertEqual(geni_expires(replace(a, allocation_state=AllocationState.PROVISIONED)), 200)
        self.assertEqual(geni_expires(replace(a, allocation_state=AllocationState.EXPIRED)), 50)
        self.assertEqual(geni_expires(replace(a, allocation_state=AllocationState.DELETED)), 50)
        self.assertEqual(geni_expires(replace(a, allocation_state=AllocationState.DELETED, provisioned_at=60)), 200)
        self.assertEqual(geni_expires(replace(a, allocation_state=AllocationState.ENDED, provisioned_at=60)), 200)

    def test_geni_states(self) -> None:
        """Booking states map onto AM API v3 states."""
        a = booking("a", 100, 200)
        self.assertEqual((geni_allocation_status(a), geni_operational_status(a)), ("geni_allocated", "geni_pending_allocation"))
        p = replace(a, allocation_state=AllocationState.PROVISIONED)
        self.assertEqual(geni_allocation_status(p), "geni_provisioned")
        expected = {
            OperationalState.NOTREADY: "geni_notready",
            OperationalState.CONFIGURING: "geni_configuring",
            OperationalState.READY: "geni_ready",
            OperationalState.FAILED: "geni_failed",
            OperationalState.STOPPED: "geni_notready",
        }
        for state, name in expected.items():
            self.assertEqual(geni_operational_status(replace(p, operational_state=state)), name)
        gone = replace(p, allocation_state=AllocationState.ENDED, operational_state=OperationalState.READY)
        self.assertEqual((geni_allocation_status(gone), geni_operational_status(gone)), ("geni_unallocated", "geni_notready"))

    def test_check_current(self) -> None:
        """Overdue and dead bookings are SEARCHFAILED, saying what became of them."""
        a = booking("a", 100, 200, allocation_expires=50)
        check_current(a, 49)
        self.assertIn("expired", self.assertRaises(BookingError, check_current, a, 50).message)
        p = replace(a, allocation_state=AllocationState.PROVISIONED)
        check_current(p, 199)
        self.assertIn("ended", self.assertRaises(BookingError, check_current, p, 200).message)
        d = replace(a, allocation_state=AllocationState.DELETED)
        error = self.assertRaises(BookingError, check_current, d, 0)
        self.assertEqual(as_geni_error(error).code, GeniCode.SEARCHFAILED)
        self.assertIn("deleted", error.message)


class ConflictTests(SynchronousTestCase):
    """Conflicts are found among live bookings only."""

    def test_find_conflict(self) -> None:
        """A live overlapping booking conflicts unless excluded; dead ones never do."""
        live = booking("a", 100, 200)
        dead = booking("b", 0, 1000, AllocationState.ENDED)
        self.assertEqual(find_conflict(Slot(150, 250), [dead, live]), live)
        self.assertIsNone(find_conflict(Slot(200, 250), [dead, live]))
        self.assertIsNone(find_conflict(Slot(150, 250), [dead, live], exclude=[sliver("a")]))

    def test_check_free(self) -> None:
        """A conflict is UNAVAILABLE and names the conflicting window, not its slice."""
        error = self.assertRaises(BookingConflict, check_free, Slot(150, 250), [booking("a", 100, 200, slice_name="hidden")])
        self.assertEqual(as_geni_error(error).code, GeniCode.UNAVAILABLE)
        self.assertEqual(error.window, Slot(100, 200))
        self.assertIn(str(Slot(100, 200)), error.message)
        self.assertNotIn("hidden", error.message)

    def test_slot_policy(self) -> None:
        """Slots already over, too long, or outliving the credential are OUTOFRANGE."""
        check_slot_allowed(Slot(0, 100), 50, 100, 100)
        for slot, now, credential, longest in ((Slot(0, 100), 100, None, 1000), (Slot(0, 101), 0, None, 100), (Slot(0, 100), 0, 99, 1000)):
            error = self.assertRaises(BookingError, check_slot_allowed, slot, now, credential, longest)
            self.assertEqual(as_geni_error(error).code, GeniCode.OUTOFRANGE)

    def test_new_booking(self) -> None:
        """A new booking is allocated, not ready, and lapses per allocation_expiry."""
        b = new_booking(
            sliver_urn=sliver("n"),
            slice_urn="urn:publicid:IDN+geni.example.net+slice+exp1",
            owner_urn=ALICE,
            owner_email="",
            slot=Slot(10 * HOUR, 12 * HOUR),
            now=0.0,
            allocation_ttl=HOUR,
            credential_expires=DAY,
            max_slot_length=DAY,
            controller="10.0.0.1:6633",
            vlan_map={"1": "2"},
        )
        self.assertEqual(b.allocation_state, AllocationState.ALLOCATED)
        self.assertEqual(b.operational_state, OperationalState.NOTREADY)
        self.assertEqual(b.allocation_expires, HOUR)
        self.assertEqual((b.created, b.updated, b.version), (0.0, 0.0, 0))
        self.assertEqual((b.controller, b.vlan_map), ("10.0.0.1:6633", {"1": "2"}))


class RenewTests(SynchronousTestCase):
    """Renew moves a slot's end within the rules."""

    def test_plain(self) -> None:
        """A free later end within the limits is granted as asked."""
        b = booking("a", 100, 200)
        self.assertEqual(renewal_end(b, 300, 150, 1000, [], 1000), 300)

    def test_shorter(self) -> None:
        """A shorter slot is allowed while it ends after now."""
        b = booking("a", 100, 200)
        self.assertEqual(renewal_end(b, 160, 150, None, [], 1000), 160)

    def test_refused(self) -> None:
        """Ends not after the start or now, past the credential, or too long are OUTOFRANGE."""
        b = booking("a", 100, 200)
        for end, now, credential, longest in ((100, 0, None, 1000), (150, 150, None, 1000), (300, 0, 250, 1000), (300, 0, None, 150)):
            error = self.assertRaises(BookingError, renewal_end, b, end, now, credential, [], longest)
            self.assertEqual(as_geni_error(error).code, GeniCode.OUTOFRANGE, (end, now, credential, longest))

    def test_conflict(self) -> None:
        """A longer slot running into another booking is UNAVAILABLE; the booking itself does not count."""
        b = booking("a", 100, 200)
        error = self.assertRaises(BookingConflict, renewal_end, b, 300, 0, None, [b, booking("b", 250, 400)], 1000)
        self.assertEqual(error.window, Slot(250, 400))

    def test_extend_alap(self) -> None:
        """As late as possible stops at the next booking, the credential's expiry and the maximum length."""
        b = booking("a", 100, 200)
        others = [booking("b", 250, 400), booking("c", 1000, 1100)]
        self.assertEqual(renewal_end(b, 900, 0, None, others, 10000, extend_alap=True), 250)
        self.assertEqual(renewal_end(b, 900, 0, 240, others, 10000, extend_alap=True), 240)
        self.assertEqual(renewal_end(b, 900, 0, None, others, 120, extend_alap=True), 220)
        self.assertEqual(renewal_end(b, 230, 0, None, others, 10000, extend_alap=True), 230)

    def test_extend_alap_nothing_left(self) -> None:
        """As late as possible still fails when no end after now is allowed."""
        b = booking("a", 100, 200)
        error = self.assertRaises(BookingError, renewal_end, b, 900, 150, 140, [], 1000, True)
        self.assertEqual(as_geni_error(error).code, GeniCode.OUTOFRANGE)

    def test_renewed_allocation(self) -> None:
        """Renewing an allocation recomputes its expiry from now."""
        b = booking("a", 100, 20000, allocation_expires=50)
        r = renewed(b, 30000, 40, None, [], 100000, allocation_ttl=1000)
        self.assertEqual((r.slot, r.allocation_expires, r.updated), (Slot(100, 30000), 1040, 40))

    def test_renewed_provisioned(self) -> None:
        """A provisioned booking expires with its slot."""
        b = booking("a", 100, 200, AllocationState.PROVISIONED, allocation_expires=50)
        r = renewed(b, 300, 150, None, [], 1000, allocation_ttl=10)
        self.assertEqual((r.slot.end, geni_expires(r)), (300, 300))


class ProvisionTests(SynchronousTestCase):
    """Provision approves an allocation for its own slot, or updates."""

    def test_first_provision(self) -> None:
        """An allocation becomes provisioned with the given users, controller and VLANs."""
        b = booking("a", 100, 200, allocation_expires=90, controller="10.0.0.1:1")
        users = (UserKeys(ALICE, (KEY_A,)),)
        p = provisioned(b, 50, users=users, vlan_map={"1": "2"}, slot=Slot(100, 200), credential_expires=300)
        self.assertEqual(p.allocation_state, AllocationState.PROVISIONED)
        self.assertEqual((p.users, p.controller, p.vlan_map, p.provisioned_at), (users, "10.0.0.1:1", {"1": "2"}, 50))

    def test_other_slot_refused(self) -> None:
        """First provision for a slot other than the allocated one is REFUSED."""
        b = booking("a", 100, 200, allocation_expires=90)
        error = self.assertRaises(BookingError, provisioned, b, 50, slot=Slot(100, 201))
        self.assertEqual(as_geni_error(error).code, GeniCode.REFUSED)

    def test_credential(self) -> None:
        """A slot outliving the slice credential is OUTOFRANGE."""
        b = booking("a", 100, 200, allocation_expires=90)
        self.assertEqual(as_geni_error(self.assertRaises(BookingError, provisioned, b, 50, credential_expires=150)).code, GeniCode.OUTOFRANGE)

    def test_lapsed_allocation(self) -> None:
        """An allocation past its expiry cannot be provisioned."""
        b = booking("a", 100, 200, allocation_expires=90)
        self.assertEqual(as_geni_error(self.assertRaises(BookingError, provisioned, b, 90)).code, GeniCode.SEARCHFAILED)

    def test_update(self) -> None:
        """On a provisioned booking None keeps values, empty values clear them, and the slot may move."""
        b = booking(
            "a", 100, 200, AllocationState.PROVISIONED, users=(UserKeys(ALICE, (KEY_A,)),), controller="10.0.0.1:1", vlan_map={"1": "2"}
        )
        kept = provisioned(b, 50)
        self.assertEqual((kept.users, kept.controller, kept.vlan_map), (b.users, b.controller, b.vlan_map))
        cleared = provisioned(b, 50, users=(), controller="", vlan_map={}, slot=Slot(300, 400))
        self.assertEqual((cleared.users, cleared.controller, cleared.vlan_map, cleared.slot), ((), None, {}, Slot(300, 400)))

    def test_started_slot(self) -> None:
        """Once a slot has begun only its end may change."""
        b = booking("a", 100, 200, AllocationState.PROVISIONED)
        self.assertEqual(provisioned(b, 150, slot=Slot(100, 300)).slot, Slot(100, 300))
        self.assertEqual(as_geni_error(self.assertRaises(BookingError, provisioned, b, 150, slot=Slot(160, 300))).code, GeniCode.REFUSED)


class DueTests(SynchronousTestCase):
    """Which bookings need an action at a moment."""

    def test_rules(self) -> None:
        """Each rule picks the bookings its action is for."""
        P = AllocationState.PROVISIONED
        alloc = booking("a", 100, 200, allocation_expires=50)
        self.assertFalse(needs_expiry(alloc, 49.9))
        self.assertTrue(needs_expiry(alloc, 50))
        prov = booking("p", 100, 200, P)
        self.assertEqual([needs_start(prov, t) for t in (99, 100, 199, 200)], [False, True, True, False])
        self.assertFalse(needs_start(replace(prov, operational_state=OperationalState.READY), 150))
        self.assertFalse(needs_start(replace(prov, operational_state=OperationalState.STOPPED), 150))
        self.assertTrue(needs_start(replace(prov, operational_state=OperationalState.FAILED, applied=True), 150))
        self.assertEqual([needs_end(prov, t) for t in (199, 200)], [False, True])
        self.assertTrue(needs_cleanup(replace(prov, allocation_state=AllocationState.ENDED, applied=True)))
        self.assertTrue(needs_cleanup(replace(prov, operational_state=OperationalState.STOPPED, applied=True)))
        self.assertFalse(needs_cleanup(replace(prov, operational_state=OperationalState.READY, applied=True)))

    def test_due_and_boundary(self) -> None:
        """due() sorts by action; next_boundary() finds the next self-driven change."""
        items = [booking("a", 100, 200, allocation_expires=50), booking("p", 300, 400, AllocationState.PROVISIONED)]
        found = due(items, 350)
        self.assertEqual(([b.sliver_urn for b in found.expire], [b.sliver_urn for b in found.start]), ([sliver("a")], [sliver("p")]))
        self.assertFalse(due(items, 0))
        self.assertEqual([next_boundary(items, t) for t in (0, 50, 300, 400)], [50, 300, 400, None])


class _Model:
    """The pure rules applied to an in-memory list of bookings."""

    def __init__(self) -> None:
        self.bookings: dict[str, Booking] = {}
        self.counter = 0

    def live(self) -> list[Booking]:
        return [b for b in self.bookings.values() if b.live]

    def allocate(self, slot: Slot, now: float) -> None:
        self.counter += 1
        b = booking(f"m{self.counter}", slot.start, slot.end, allocation_expires=slot.end)
        try:
            check_free(slot, self.live())
        except BookingConflict:
            return
        self.bookings[b.sliver_urn] = b

    def provision(self, key: str, slot: Slot | None, now: float) -> None:
        b = self.bookings[key]
        try:
            p = provisioned(b, now, slot=slot, max_slot_length=1e9)
            check_free(p.slot, self.live(), exclude=[key])
        except BookingError:
            return
        self.bookings[key] = p

    def renew(self, key: str, end: float, now: float, alap: bool) -> None:
        b = self.bookings[key]
        try:
            r = renewed(b, end, now, None, self.live(), 1e9, 1e9, alap)
        except BookingError:
            return
        self.bookings[key] = r

    def delete(self, key: str) -> None:
        b = self.bookings[key]
        if b.live:
            self.bookings[key] = replace(b, allocation_state=AllocationState.DELETED)


_slots = st.builds(lambda start, length: Slot(start, start + length), st.integers(0, 50), st.integers(1, 15))
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), _slots),
        st.tuples(st.just("provision"), st.integers(0, 30), st.one_of(st.none(), _slots)),
        st.tuples(st.just("renew"), st.integers(0, 30), st.integers(1, 80), st.booleans()),
        st.tuples(st.just("delete"), st.integers(0, 30)),
    ),
    max_size=40,
)


class RulePropertyTests(SynchronousTestCase):
    """Whatever sequence of operations the rules allow, live bookings never overlap."""

    @given(_ops)
    def test_no_overlap(self, ops: list[tuple]) -> None:
        """After any allocate/provision/renew/delete sequence, no two live bookings overlap."""
        model = _Model()
        for op in ops:
            keys = sorted(model.bookings)
            if op[0] == "allocate":
                model.allocate(op[1], 0)
            elif keys and op[0] == "provision":
                model.provision(keys[op[1] % len(keys)], op[2], 0)
            elif keys and op[0] == "renew":
                model.renew(keys[op[1] % len(keys)], op[2], 0, op[3])
            elif keys and op[0] == "delete":
                model.delete(keys[op[1] % len(keys)])
            live = sorted(model.live(), key=lambda b: b.slot.start)
            for a, b in zip(live, live[1:]):
                self.assertLessEqual(a.slot.end, b.slot.start)

    @given(st.lists(_slots, max_size=20))
    def test_back_to_back_all_granted(self, slots: list[Slot]) -> None:
        """Slots laid back to back are all granted."""
        model = _Model()
        t = 0.0
        for slot in slots:
            model.allocate(Slot(t, t + slot.duration), 0)
            t += slot.duration
        self.assertEqual(len(model.live()), len(slots))

"""
Property tests of L{geniam.managers.tickets}: random sequences of
component manager operations by two slices and clock advances never give a
slice two valid tickets or two slivers, never lose or leak a promise, and
Resolve (the slice's view) never changes anything.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.values import Slot, may_share_slot
from geniam.errors import GeniError
from geniam.managers.tickets import TRANSITIONS, Operation, SliceState, is_ticket
from tests.managers.test_island import OTHER_SLICE, SLICE, at
from tests.managers.test_tickets import USERS, Tickets

SLICES = (SLICE, OTHER_SLICE)
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["get", "redeem", "release", "update", "delete_sliver", "delete_slice", "resolve", "advance", "replay"]),
        st.integers(0, 1),
        st.integers(0, 5),
        st.sampled_from([1800, 3600, 7200]),
    ),
    max_size=25,
)


class InvariantTests(SynchronousTestCase):
    """The invariants of the minutes over random call sequences."""

    @settings(max_examples=60)
    @given(OPERATIONS)
    def test_invariants(self, operations: list[tuple[str, int, int, int]]) -> None:
        """
        At most one valid ticket and one sliver per slice; moves follow the
        diagram; Resolve changes nothing. Slots of different lengths make
        updates that overlap the slice's own sliver (and other slices').
        """
        t = Tickets(self)
        documents: dict[str, list[str]] = {s: [] for s in SLICES}
        promised: dict[str, Slot] = {}
        for name, which, n, length in operations:
            slice_urn = SLICES[which]
            before = t.state(slice_urn)
            slot_start = 3600 * (1 + n)
            call = {
                "get": lambda: t.manager.get_ticket(slice_urn, t.promise(slot_start, slot_start + length)),
                "update": lambda: t.manager.update_sliver(slice_urn, None, t.promise(slot_start, slot_start + length)),
                "redeem": lambda: t.manager.redeem_ticket(slice_urn, (documents[slice_urn] or [""])[-1], USERS, at(30 * 86400)),
                "release": lambda: t.manager.release_ticket(slice_urn, (documents[slice_urn] or [""])[-1]),
                "replay": lambda: t.manager.redeem_ticket(slice_urn, (documents[slice_urn] or [""])[0], USERS, None),
                "delete_sliver": lambda: t.manager.delete_sliver(slice_urn, None, at(30 * 86400)),
                "delete_slice": lambda: t.manager.delete_slice(slice_urn),
                "resolve": lambda: t.manager.view(slice_urn),
            }.get(name)
            if call is None:
                t.island.advance_to(t.clock.seconds() - at(0) + 200 * (n + 1))
                continue
            rows_before = self.rows(t)
            d = Deferred.fromCoroutine(call())
            outcome: list[object] = []
            d.addBoth(outcome.append)
            [result] = outcome
            failed = not isinstance(result, (tuple, list, object)) or hasattr(result, "value") and hasattr(result, "trap")
            if failed:
                result.trap(GeniError)  # type: ignore[union-attr]
                self.assertEqual(self.rows(t), rows_before, f"{name} failed but changed the store")
            elif name in ("get", "update", "delete_sliver"):
                documents[slice_urn].append(result[1])  # type: ignore[index]
                promised[slice_urn] = result[0].slot  # type: ignore[index]
            elif name == "redeem":  # the promise is kept: the sliver has exactly the ticket's slot
                self.assertEqual(result.slot, promised[slice_urn])  # type: ignore[attr-defined]
            after = t.state(slice_urn)
            if name == "resolve":
                self.assertEqual(self.rows(t), rows_before)
            elif not failed and name != "replay":
                operation = {"get": Operation.GET_TICKET, "update": Operation.UPDATE_SLIVER, "redeem": Operation.REDEEM_TICKET,
                             "release": Operation.RELEASE_TICKET, "delete_sliver": Operation.DELETE_SLIVER,
                             "delete_slice": Operation.DELETE_SLICE}[name]
                self.assertEqual(TRANSITIONS[(before, operation)], after, name)
            self.check(t)

    def rows(self, t: Tickets) -> list[tuple[str, str, int]]:
        return [(b.sliver_urn, b.allocation_state.value, b.version) for s in SLICES for b in self.slice_rows(t, s)]

    def slice_rows(self, t: Tickets, slice_urn: str) -> list:
        return t.island.ok(t.island.store.list_by_slice(slice_urn))

    def check(self, t: Tickets) -> None:
        now = t.clock.seconds()
        live = t.island.ok(t.island.store.list_live(Slot(at(0), at(10 * 86400))))
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                if a.slot.overlaps(b.slot):  # only a ticket's hold and its own slice's sliver may
                    self.assertTrue(may_share_slot(a, b), "two live bookings overlap")
                    self.assertEqual(a.slice_urn, b.slice_urn)
        for slice_urn in SLICES:
            mine = [b for b in live if b.slice_urn == slice_urn]
            self.assertLessEqual(len([b for b in mine if is_ticket(b, now)]), 1)
            self.assertLessEqual(len([b for b in mine if b.is_sliver]), 1)
            # No promise leaks: every live hold is the slice's one valid ticket, or lapsed this very
            # moment (the boundary timer marks it expired a millisecond after its redeem-by time).
            stale = [b for b in mine if not b.is_sliver and not is_ticket(b, now)]
            self.assertEqual([b for b in stale if b.allocation_expires != now], [])
            self.assertIn(t.state(slice_urn), set(SliceState))

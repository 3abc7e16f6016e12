"""
Tests for L{geniam.managers.tickets}: the component manager's per-slice
state machine and the ticket manager over the island's holds, on a
L{Clock}, an SQLite store run inline and the simulated gateway.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.values import AllocationState, Booking, Slot, UserKeys
from geniam.errors import GeniCode, GeniError
from geniam.managers.tickets import (
    REFUSALS,
    TRANSITIONS,
    Operation,
    Promise,
    SliceState,
    SliceView,
    TicketManager,
    next_state,
    ticket_urn_of,
)
from geniam.trust.domain import TrustDomain
from geniam.trust.identity import Identity
from tests.managers.test_island import ALICE, CONTROLLER, DAY, KEY_A, OTHER_SLICE, SLICE, Island, at

TTL = 600.0
USERS = (UserKeys(ALICE, (KEY_A,)),)
_IDENTITIES: dict[str, Identity] = {}


def aggregate_identity(name: str = "am") -> Identity:
    """An aggregate identity of a development domain (made once per name per run)."""
    if name not in _IDENTITIES:
        folder = Path(SynchronousTestCase().mktemp())
        domain = TrustDomain.create(folder / "dev", authority="example:lab", now=time.time() - 60, key_size=1024)
        _IDENTITIES[name] = domain.add_aggregate(name, now=time.time() - 60)
    return _IDENTITIES[name]


class Tickets:
    """An island with a ticket manager."""

    def __init__(
        self, case: SynchronousTestCase, path: str = ":memory:", clock: Clock | None = None, start: bool = True, **options: Any
    ) -> None:
        self.case = case
        self.island = Island(case, path, clock, **options)
        self.clock = self.island.clock
        self.manager = TicketManager(self.island.manager, aggregate_identity(), self.clock, TTL)
        if start:
            self.island.start()

    def ok(self, coroutine: Any) -> Any:
        return self.case.successResultOf(Deferred.fromCoroutine(coroutine))

    def refused(self, coroutine: Any, code: GeniCode) -> GeniError:
        error = self.case.failureResultOf(Deferred.fromCoroutine(coroutine), GeniError).value
        self.case.assertEqual(error.code, code, error.output)
        return error

    def promise(self, start: float = 3600, end: float = 7200, **kw: Any) -> Promise:
        return Promise(Slot(at(start), at(end)), ALICE, "alice@example.net", at(30 * DAY), **kw)

    def state(self, slice_urn: str = SLICE) -> SliceState:
        return self.ok(self.manager.view(slice_urn)).state

    def get(self, slice_urn: str = SLICE, start: float = 3600, end: float = 7200) -> tuple[Booking, str]:
        return self.ok(self.manager.get_ticket(slice_urn, self.promise(start, end, controller=CONTROLLER)))

    def redeem(self, ticket: str, slice_urn: str = SLICE) -> Booking:
        return self.ok(self.manager.redeem_ticket(slice_urn, ticket, USERS, at(30 * DAY)))

    def stored(self, booking: Booking) -> Booking:
        return self.island.get(booking)


class StateMachineTests(SynchronousTestCase):
    """The diagram: every move of every state is either a transition or a refusal with a code."""

    def test_complete(self) -> None:
        """Each (state, operation) pair is decided exactly once."""
        for state in SliceState:
            for operation in Operation:
                key = (state, operation)
                self.assertNotEqual(key in TRANSITIONS, key in REFUSALS, key)

    def test_diagram(self) -> None:
        """The transitions the minutes agreed."""
        S, O = SliceState, Operation
        self.assertEqual(next_state(S.NEITHER, O.GET_TICKET), S.TICKET)
        self.assertEqual(next_state(S.TICKET, O.REDEEM_TICKET), S.SLIVER)
        self.assertEqual(next_state(S.TICKET, O.RELEASE_TICKET), S.NEITHER)
        self.assertEqual(next_state(S.SLIVER, O.UPDATE_SLIVER), S.BOTH)
        self.assertEqual(next_state(S.SLIVER, O.DELETE_SLIVER), S.TICKET)
        self.assertEqual(next_state(S.BOTH, O.REDEEM_TICKET), S.SLIVER)
        self.assertEqual(next_state(S.BOTH, O.RELEASE_TICKET), S.SLIVER)
        for state in S:
            self.assertEqual(next_state(state, O.DELETE_SLICE), S.NEITHER)
            self.assertEqual(next_state(state, O.RESOLVE), state)

    def test_refusals(self) -> None:
        """Illegal moves carry their code; DeleteSliver with sliver and ticket is REFUSED, saying why."""
        with self.assertRaises(GeniError) as e:
            next_state(SliceState.BOTH, Operation.DELETE_SLIVER)
        self.assertEqual(e.exception.code, GeniCode.REFUSED)
        self.assertIn("both a sliver and a ticket", e.exception.output)
        for (state, operation), (code, _) in REFUSALS.items():
            with self.assertRaises(GeniError) as refused:
                next_state(state, operation)
            self.assertEqual(refused.exception.code, code)


class TransitionTests(SynchronousTestCase):
    """Every transition through the manager, and the illegal ones with their codes."""

    def setUp(self) -> None:
        self.t = Tickets(self)

    def test_get_redeem_release(self) -> None:
        """GetTicket holds the slot; RedeemTicket makes it a provisioned sliver of the same slot and parameters."""
        t = self.t
        hold, ticket = t.get()
        self.assertEqual(t.state(), SliceState.TICKET)
        self.assertEqual(hold.allocation_state, AllocationState.HELD)
        self.assertEqual(hold.allocation_expires, at(TTL))
        self.assertIn(ticket_urn_of(hold), ticket)
        sliver = t.redeem(ticket)
        self.assertEqual(sliver.sliver_urn, hold.sliver_urn)
        self.assertEqual(sliver.allocation_state, AllocationState.PROVISIONED)
        self.assertEqual((sliver.slot, sliver.controller), (hold.slot, CONTROLLER))
        self.assertEqual(sliver.ssh_keys, (KEY_A,))
        self.assertEqual(t.state(), SliceState.SLIVER)

    def test_release(self) -> None:
        """ReleaseTicket frees the slot at once."""
        t = self.t
        hold, ticket = t.get()
        t.ok(t.manager.release_ticket(SLICE, ticket))
        self.assertEqual(t.stored(hold).allocation_state, AllocationState.RELEASED)
        self.assertEqual(t.state(), SliceState.NEITHER)
        t.get(OTHER_SLICE)

    def test_get_twice_refused(self) -> None:
        """A second GetTicket while one is valid is REFUSED; so is GetTicket beside a sliver."""
        t = self.t
        _, ticket = t.get()
        t.refused(t.manager.get_ticket(SLICE, t.promise(9000, 9900)), GeniCode.REFUSED)
        t.redeem(ticket)
        t.refused(t.manager.get_ticket(SLICE, t.promise(9000, 9900)), GeniCode.REFUSED)

    def test_v3_sliver_refuses_get_ticket(self) -> None:
        """A slice holding an AM API v3 sliver gets REFUSED from GetTicket."""
        t = self.t
        t.island.allocate(100_000, 103_600)
        t.refused(t.manager.get_ticket(SLICE, t.promise()), GeniCode.REFUSED)

    def test_other_slice_cannot_take_a_held_slot(self) -> None:
        """While a ticket is valid its slot is held against tickets and v3 allocations of other slices."""
        t = self.t
        t.get()
        t.refused(t.manager.get_ticket(OTHER_SLICE, t.promise(3000, 4000)), GeniCode.UNAVAILABLE)
        self.failureResultOf(
            t.island.manager.allocate(OTHER_SLICE, ALICE, "", Slot(at(3000), at(4000)), at(DAY)), GeniError
        )

    def test_update_then_redeem_and_release(self) -> None:
        """UpdateSliver gives a ticket while the sliver runs on; redeeming applies it, releasing keeps the sliver."""
        t = self.t
        _, ticket = t.get()
        sliver = t.redeem(ticket)
        update, document = t.ok(t.manager.update_sliver(SLICE, None, t.promise(8000, 9000)))
        self.assertEqual(t.state(), SliceState.BOTH)
        self.assertEqual(t.stored(sliver).allocation_state, AllocationState.PROVISIONED)
        t.ok(t.manager.release_ticket(SLICE, document))
        self.assertEqual(t.state(), SliceState.SLIVER)
        self.assertEqual(t.stored(sliver).slot, sliver.slot)
        _, document = t.ok(t.manager.update_sliver(SLICE, sliver.sliver_urn, t.promise(8000, 9000)))
        new = t.redeem(document)
        self.assertEqual(new.slot, Slot(at(8000), at(9000)))
        self.assertEqual(t.stored(sliver).allocation_state, AllocationState.DELETED)
        self.assertEqual(t.state(), SliceState.SLIVER)

    def test_update_overlapping_its_own_slot(self) -> None:
        """
        An update whose slot overlaps the sliver's own is held beside it and
        kept from other slices; redeeming moves the sliver to the new slot in
        one change, releasing leaves it as it was.
        """
        t = self.t
        _, ticket = t.get(start=3600, end=7200)
        sliver = t.redeem(ticket)
        for start, end in ((5000, 9000), (3600, 7200), (4000, 6000), (1800, 9000)):
            update, document = t.ok(t.manager.update_sliver(SLICE, None, t.promise(start, end)))
            self.assertEqual(update.slot, Slot(at(start), at(end)))
            self.assertIn(ticket_urn_of(update), document)
            self.assertEqual(t.state(), SliceState.BOTH)
            self.assertEqual(t.stored(sliver), sliver)
            # The promised slot is kept from every other slice, inside the sliver's slot and outside it.
            t.refused(t.manager.get_ticket(OTHER_SLICE, t.promise(end - 60, end + 600)), GeniCode.UNAVAILABLE)
            self.failureResultOf(t.island.manager.allocate(OTHER_SLICE, ALICE, "", Slot(at(start), at(start + 60)), at(DAY)), GeniError)
            t.ok(t.manager.release_ticket(SLICE, document))
            self.assertEqual(t.stored(sliver), sliver)
            self.assertEqual(t.state(), SliceState.SLIVER)
        update, document = t.ok(t.manager.update_sliver(SLICE, None, t.promise(5000, 9000)))
        new = t.redeem(document)
        self.assertEqual((new.sliver_urn, new.slot), (update.sliver_urn, Slot(at(5000), at(9000))))
        self.assertEqual(t.stored(sliver).allocation_state, AllocationState.DELETED)
        self.assertEqual([b.slot for b in t.ok(_live(t))], [Slot(at(5000), at(9000))])
        t.get(OTHER_SLICE, 3600, 5000)  # the part of the old slot the update gave up is free again

    def test_overlap_only_for_a_ticket_and_its_own_sliver(self) -> None:
        """The slice's own v3 allocation may not overlap its sliver, nor its ticket's hold another slice's sliver."""
        t = self.t
        _, ticket = t.get(start=3600, end=7200)
        t.redeem(ticket)
        self.failureResultOf(t.island.manager.allocate(SLICE, ALICE, "", Slot(at(5000), at(9000)), at(DAY)), GeniError)
        t.island.manager.allocate(OTHER_SLICE, ALICE, "", Slot(at(9000), at(9900)), at(DAY))
        t.refused(t.manager.update_sliver(SLICE, None, t.promise(5000, 9500)), GeniCode.UNAVAILABLE)
        self.assertEqual(t.state(), SliceState.SLIVER)

    def test_delete_sliver(self) -> None:
        """DeleteSliver returns a fresh ticket for the rest of the slot; not allowed with sliver and ticket."""
        t = self.t
        hold, ticket = t.get()
        sliver = t.redeem(ticket)
        fresh, document = t.ok(t.manager.delete_sliver(SLICE, None, at(30 * DAY)))
        self.assertNotEqual(ticket_urn_of(fresh), ticket_urn_of(hold))
        self.assertNotEqual(document, ticket)
        self.assertEqual(fresh.slot, sliver.slot)
        self.assertEqual(t.stored(sliver).allocation_state, AllocationState.DELETED)
        self.assertEqual(t.state(), SliceState.TICKET)
        t.redeem(document)
        t.ok(t.manager.update_sliver(SLICE, None, t.promise(8000, 9000)))
        t.refused(t.manager.delete_sliver(SLICE, None, at(DAY)), GeniCode.REFUSED)
        self.assertEqual(t.state(), SliceState.BOTH)

    def test_illegal_without_sliver_or_ticket(self) -> None:
        """Redeem/Release need a valid ticket (FORBIDDEN); Update/DeleteSliver need a sliver (SEARCHFAILED)."""
        t = self.t
        _, ticket = t.get()
        t.ok(t.manager.release_ticket(SLICE, ticket))
        t.refused(t.manager.redeem_ticket(SLICE, ticket, USERS, None), GeniCode.FORBIDDEN)
        t.refused(t.manager.release_ticket(SLICE, ticket), GeniCode.FORBIDDEN)
        t.refused(t.manager.update_sliver(SLICE, None, t.promise()), GeniCode.SEARCHFAILED)
        t.refused(t.manager.delete_sliver(SLICE, None, None), GeniCode.SEARCHFAILED)

    def test_delete_slice_from_every_state(self) -> None:
        """DeleteSlice works in all four states and leaves neither sliver nor ticket."""
        t = self.t
        self.assertEqual(t.ok(t.manager.delete_slice(SLICE)), [])
        _, ticket = t.get()
        t.ok(t.manager.delete_slice(SLICE))
        self.assertEqual(t.state(), SliceState.NEITHER)
        _, ticket = t.get()
        t.redeem(ticket)
        t.ok(t.manager.delete_slice(SLICE))
        self.assertEqual(t.state(), SliceState.NEITHER)
        _, ticket = t.get()
        t.redeem(ticket)
        t.ok(t.manager.update_sliver(SLICE, None, t.promise(8000, 9000)))
        self.assertEqual(t.state(), SliceState.BOTH)
        t.ok(t.manager.delete_slice(SLICE))
        self.assertEqual(t.state(), SliceState.NEITHER)
        self.assertEqual(t.ok(t.manager.view(SLICE)).slivers, ())


class ForgeryTests(SynchronousTestCase):
    """Forged, altered, foreign and replayed tickets are refused and change nothing."""

    def setUp(self) -> None:
        self.t = Tickets(self)

    def test_altered(self) -> None:
        """A ticket whose terms were edited fails its digest: FORBIDDEN."""
        t = self.t
        _, ticket = t.get()
        for altered in (ticket.replace("<controller>", "<controller>1"), ticket[: len(ticket) // 2], "<x/>"):
            error = t.refused(t.manager.redeem_ticket(SLICE, altered, USERS, None), GeniCode.FORBIDDEN)
            self.assertIn("refused", error.output)
        self.assertEqual(t.state(), SliceState.TICKET)

    def test_other_aggregate(self) -> None:
        """A ticket signed by another aggregate is refused, naming this aggregate."""
        t = self.t
        hold, _ = t.get()
        other = TicketManager(t.island.manager, aggregate_identity("other"), t.clock, TTL)
        foreign = other.document(hold)
        error = t.refused(t.manager.redeem_ticket(SLICE, foreign, USERS, None), GeniCode.FORBIDDEN)
        self.assertIn("not signed by this aggregate", error.output)

    def test_other_slice_and_replay(self) -> None:
        """A ticket presented for another slice, or again after redemption, is FORBIDDEN."""
        t = self.t
        _, ticket = t.get()
        t.refused(t.manager.redeem_ticket(OTHER_SLICE, ticket, USERS, None), GeniCode.FORBIDDEN)
        t.redeem(ticket)
        error = t.refused(t.manager.redeem_ticket(SLICE, ticket, USERS, None), GeniCode.FORBIDDEN)
        self.assertIn("no longer valid", error.output)
        self.assertEqual(t.state(), SliceState.SLIVER)

    def test_not_a_string(self) -> None:
        """A ticket that is no string is BADARGS."""
        t = self.t
        t.get()
        t.refused(t.manager.redeem_ticket(SLICE, 42, USERS, None), GeniCode.BADARGS)


class ExpiryTests(SynchronousTestCase):
    """A ticket lapses on the reactor's clock at its redeem-by second, releasing its slot, also after a restart."""

    def test_expiry_at_the_second(self) -> None:
        """Just before the redeem-by time the ticket holds; at it the hold has lapsed without any call."""
        t = Tickets(self)
        t.clock.advance(0.25)
        hold, ticket = t.get()
        self.assertEqual(hold.allocation_expires, at(TTL))
        t.island.advance_to(TTL - 0.01)
        self.assertEqual(t.stored(hold).allocation_state, AllocationState.HELD)
        t.island.advance_to(TTL + 0.01)
        self.assertEqual(t.stored(hold).allocation_state, AllocationState.EXPIRED)
        self.assertEqual(t.state(), SliceState.NEITHER)
        t.refused(t.manager.redeem_ticket(SLICE, ticket, USERS, None), GeniCode.EXPIRED)
        t.get(OTHER_SLICE)

    def test_expiry_after_restart(self) -> None:
        """A ticket outlives a restart; one whose time passed while the AM was down lapses at the first check."""
        path = self.mktemp()
        first = Tickets(self, path)
        hold, ticket = first.get()
        second_hold, _ = first.get(OTHER_SLICE, 9000, 9900)
        self.successResultOf(first.island.manager.stop())
        clock = first.clock
        clock.advance(TTL / 2)
        again = Tickets(self, path, clock)
        self.assertEqual(again.state(), SliceState.TICKET)
        again.redeem(ticket)
        self.assertEqual(again.state(), SliceState.SLIVER)
        self.assertEqual(again.state(OTHER_SLICE), SliceState.TICKET)
        self.successResultOf(again.island.manager.stop())
        clock.advance(TTL)
        third = Tickets(self, path, clock)
        self.assertEqual(third.stored(second_hold).allocation_state, AllocationState.EXPIRED)
        self.assertEqual(third.state(OTHER_SLICE), SliceState.NEITHER)
        self.assertEqual(third.state(), SliceState.SLIVER)


class RestartTests(SynchronousTestCase):
    """Each of the four states survives a restart, and its next legal move works on the new process."""

    def setUp(self) -> None:
        self.path = self.mktemp()

    def restarted(self, first: Tickets) -> Tickets:
        self.successResultOf(first.island.manager.stop())
        names = itertools.count(1)
        return Tickets(self, self.path, first.clock, sliver_names=lambda: f"after-restart-{next(names)}")

    def test_neither(self) -> None:
        """A slice whose ticket was released is still in neither state, and can get a ticket again."""
        first = Tickets(self, self.path)
        _, ticket = first.get()
        first.ok(first.manager.release_ticket(SLICE, ticket))
        again = self.restarted(first)
        self.assertEqual(again.state(), SliceState.NEITHER)
        again.get()

    def test_ticket(self) -> None:
        """A valid ticket is still held (against other slices too) and redeemable."""
        first = Tickets(self, self.path)
        hold, ticket = first.get()
        again = self.restarted(first)
        self.assertEqual(again.state(), SliceState.TICKET)
        again.refused(again.manager.get_ticket(OTHER_SLICE, again.promise()), GeniCode.UNAVAILABLE)
        self.assertEqual(again.redeem(ticket).slot, hold.slot)

    def test_sliver(self) -> None:
        """A sliver is still there; GetTicket is still refused, UpdateSliver works."""
        first = Tickets(self, self.path)
        _, ticket = first.get()
        sliver = first.redeem(ticket)
        again = self.restarted(first)
        self.assertEqual(again.state(), SliceState.SLIVER)
        again.refused(again.manager.get_ticket(SLICE, again.promise(9000, 9900)), GeniCode.REFUSED)
        again.ok(again.manager.update_sliver(SLICE, sliver.sliver_urn, again.promise(5000, 9000)))

    def test_sliver_and_ticket(self) -> None:
        """An update's ticket (overlapping the sliver) survives; redeeming it applies it; DeleteSliver is still refused."""
        first = Tickets(self, self.path)
        _, ticket = first.get()
        sliver = first.redeem(ticket)
        _, update = first.ok(first.manager.update_sliver(SLICE, None, first.promise(5000, 9000)))
        again = self.restarted(first)
        self.assertEqual(again.state(), SliceState.BOTH)
        again.refused(again.manager.delete_sliver(SLICE, None, at(30 * DAY)), GeniCode.REFUSED)
        self.assertEqual(again.redeem(update).slot, Slot(at(5000), at(9000)))
        self.assertEqual(again.stored(sliver).allocation_state, AllocationState.DELETED)
        self.assertEqual(again.state(), SliceState.SLIVER)


class RaceTests(SynchronousTestCase):
    """A ticket, an AM API v3 Allocate and another slice's ticket for one slot: exactly one wins."""

    def test_race(self) -> None:
        """All three start before any finishes; one succeeds, the others are UNAVAILABLE."""
        t = Tickets(self)
        slot = Slot(at(3600), at(7200))
        third = "urn:publicid:IDN+geni.example.net+slice+third"
        calls = [
            Deferred.fromCoroutine(t.manager.get_ticket(SLICE, t.promise())),
            t.island.manager.allocate(OTHER_SLICE, ALICE, "", slot, at(DAY)),
            Deferred.fromCoroutine(t.manager.get_ticket(third, t.promise(3000, 4000))),
        ]
        outcomes: list[Any] = []
        for d in calls:
            d.addBoth(outcomes.append)
        self.assertEqual(len(outcomes), 3)
        wins = [o for o in outcomes if not isinstance(o, Exception) and not hasattr(o, "value")]
        losses = [o for o in outcomes if hasattr(o, "value")]
        self.assertEqual(len(wins), 1)
        self.assertEqual([f.value.code for f in losses], [GeniCode.UNAVAILABLE] * 2)
        live = t.ok(_live(t))
        self.assertEqual(len(live), 1)


class ProcessesTests(SynchronousTestCase):
    """Two aggregate processes on one database: the store keeps one valid ticket per slice."""

    def test_one_ticket_across_processes(self) -> None:
        """
        The second process read the slice's state before the first wrote its
        ticket, so its own check lets GetTicket through; the store refuses it.
        """
        path = self.mktemp()
        one = Tickets(self, path)
        names = itertools.count(1)
        two = Tickets(self, path, one.clock, sliver_names=lambda: f"second-process-{next(names)}")
        read_state = two.manager.view
        held: list[Booking] = []

        async def view_then_the_other_process_writes(slice_urn: str) -> SliceView:
            view = await read_state(slice_urn)
            held.append(one.get()[0])
            return view

        two.manager.view = view_then_the_other_process_writes  # type: ignore[method-assign]
        error = two.refused(two.manager.get_ticket(SLICE, two.promise(9000, 9900)), GeniCode.REFUSED)
        self.assertIn("already holds a valid ticket", error.output)
        self.assertEqual([b.sliver_urn for b in two.ok(_live(two))], [held[0].sliver_urn])


async def _live(t: Tickets) -> list[Booking]:
    return list(await t.island.store.list_live(Slot(at(0), at(DAY))))

"""
PG-A transactions on one island: every legal and illegal transition with
its code, the commit guarantee against other slices, auto-abort at
C{commit_by} on the clock and after a restart, restart in every state, and
the rules as properties over random sequences from several slices.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.transactions import DesiredSlot, SliceState, plan
from geniam.booking.errors import NotPermitted
from geniam.booking.values import AllocationState, Booking, Slot, UserKeys
from geniam.errors import GeniCode, GeniError
from geniam.managers.transactions import DEFAULT_WATCH_INTERVAL, TransactionManager
from geniam.timeutil import format_time
from tests.managers.test_island import ALICE, CONTROLLER, DAY, OTHER_SLICE, SLICE, Island, at

TTL = 600.0
THIRD = "urn:publicid:IDN+geni.example.net+slice+third"
SLICES = (SLICE, OTHER_SLICE, THIRD)


def desired(start: float, end: float, controller: str | None = None, users: tuple[UserKeys, ...] = ()) -> DesiredSlot:
    """One desired slot C{at(start)} to C{at(end)}."""
    return DesiredSlot(Slot(at(start), at(end)), controller, {}, users)


class Transactions:
    """An island with a transaction manager on one SQLite database (in memory unless a path is given)."""

    def __init__(self, case: SynchronousTestCase, path: str = ":memory:", clock: Any = None, ttl: float = TTL, **options: Any) -> None:
        self.case = case
        self.island = Island(case, path, clock, **options)
        self.island.start()
        self.clock = self.island.clock
        self.manager = TransactionManager(self.island.manager, self.clock, ttl)
        self.island.ok(self.manager.start())
        case.addCleanup(self.manager.stop)

    def ok(self, d: Any) -> Any:
        return self.island.ok(d if isinstance(d, Deferred) else Deferred.fromCoroutine(d))

    def error(self, d: Any, code: GeniCode) -> GeniError:
        return self.island.error(d if isinstance(d, Deferred) else Deferred.fromCoroutine(d), code)

    def begin(self, *slots: DesiredSlot, slice_urn: str = SLICE) -> Any:
        return self.ok(self.manager.begin(slice_urn, ALICE, "alice@example.net", slots, at(30 * DAY)))

    def update(self, *slots: DesiredSlot, slice_urn: str = SLICE) -> Any:
        return self.ok(self.manager.update(slice_urn, slots, at(30 * DAY)))

    def state(self, slice_urn: str = SLICE) -> SliceState:
        return self.ok(self.manager.state(slice_urn))  # type: ignore[no-any-return]

    def live(self, slice_urn: str | None = None) -> list[Booking]:
        """The island's live rows (holds included), of one slice if given."""
        rows = self.island.ok(self.island.store.list_live(Slot(at(0), at(400 * DAY))))
        return [b for b in rows if slice_urn is None or b.slice_key == slice_urn.lower() or b.slice_urn == slice_urn]

    def slivers(self, slice_urn: str = SLICE) -> list[tuple[Slot, AllocationState]]:
        """The slice's live slivers (not holds) as (slot, state)."""
        return [(b.slot, b.allocation_state) for b in self.live(slice_urn) if b.is_sliver]


class TransitionTests(SynchronousTestCase):
    """Each state's legal and illegal calls, with their codes."""

    def test_uninitialised(self) -> None:
        """Update, Commit and Abort outside a transaction are ERROR; Begin moves to transaction."""
        t = Transactions(self)
        self.assertEqual(t.state(), SliceState.UNINITIALISED)
        t.error(t.manager.update(SLICE, [desired(100, 200)], None), GeniCode.ERROR)
        t.error(t.manager.commit(SLICE), GeniCode.ERROR)
        t.error(t.manager.abort(SLICE), GeniCode.ERROR)
        proposal = t.begin(desired(1000, 2000))
        self.assertEqual(proposal.transaction.commit_by, at(TTL))
        self.assertEqual(t.state(), SliceState.TRANSACTION)

    def test_begin_in_transaction_is_inprogress(self) -> None:
        """Begin in a transaction answers INPROGRESS and changes nothing."""
        t = Transactions(self)
        first = t.begin(desired(100, 200))
        t.error(t.manager.begin(SLICE, ALICE, "", [desired(300, 400)], None), GeniCode.INPROGRESS)
        now = t.ok(t.manager.island.transaction(SLICE))
        self.assertEqual(now, first.transaction)
        self.assertEqual([b.slot for b in t.live()], [Slot(at(100), at(200))])

    def test_nothing_visible_until_commit(self) -> None:
        """During the transaction the slice has no sliver; the commit makes the allocation."""
        t = Transactions(self)
        t.begin(desired(100, 200, CONTROLLER))
        self.assertEqual(t.slivers(), [])
        [hold] = t.live(SLICE)
        self.assertEqual((hold.allocation_state, hold.held_by), (AllocationState.HELD, "transaction"))
        _, after = t.ok(t.manager.commit(SLICE))
        self.assertEqual([(b.slot, b.allocation_state, b.controller) for b in after], [(Slot(at(100), at(200)), AllocationState.ALLOCATED, CONTROLLER)])
        self.assertEqual(after[0].sliver_urn, hold.sliver_urn)
        self.assertEqual(t.state(), SliceState.ALLOCATED)
        t.error(t.manager.commit(SLICE), GeniCode.ERROR)
        t.error(t.manager.abort(SLICE), GeniCode.ERROR)

    def test_allocated_begin_update_commit(self) -> None:
        """From allocated: the desired state keeps one sliver, drops another and adds a slot; commit applies all three at once."""
        t = Transactions(self)
        keep = t.island.allocate(100, 200)
        drop = t.island.allocate(300, 400)
        self.assertEqual(t.state(), SliceState.ALLOCATED)
        t.begin(desired(100, 200), desired(500, 600))
        t.update(desired(100, 200, CONTROLLER), desired(700, 800))
        self.assertEqual(sorted(b.slot.start for b in t.live(SLICE)), [at(100), at(300), at(700)])
        _, after = t.ok(t.manager.commit(SLICE))
        self.assertEqual([(b.slot, b.controller) for b in after], [(keep.slot, CONTROLLER), (Slot(at(700), at(800)), None)])
        self.assertEqual(t.island.get(drop).allocation_state, AllocationState.DELETED)

    def test_abort_restores_exactly(self) -> None:
        """Abort answers true and leaves every row of the slice as before Begin (the holds released)."""
        t = Transactions(self)
        before = t.island.allocate(100, 200)
        t.begin(desired(300, 400))
        t.update(desired(500, 600))
        self.assertTrue(t.ok(t.manager.abort(SLICE)))
        self.assertEqual(t.live(), [t.island.get(before)])
        self.assertEqual(t.island.get(before), before)
        self.assertEqual(t.state(), SliceState.ALLOCATED)

    def test_running_sliver_refused(self) -> None:
        """A desired state removing or changing a running sliver is REFUSED at Begin and Update, naming it."""
        t = Transactions(self)
        running = t.island.provisioned(10, 1000)
        t.island.advance_to(20)
        error = t.error(t.manager.begin(SLICE, ALICE, "", [desired(2000, 3000)], None), GeniCode.REFUSED)
        self.assertIn(running.sliver_urn, error.output)
        t.error(t.manager.begin(SLICE, ALICE, "", [desired(10, 1000, "192.0.2.99:6633")], None), GeniCode.REFUSED)
        t.begin(DesiredSlot(running.slot, running.controller, running.vlan_map, running.users), desired(2000, 3000))
        t.error(t.manager.update(SLICE, [desired(2000, 3000)], None), GeniCode.REFUSED)

    def test_failed_update_changes_nothing(self) -> None:
        """An Update that conflicts with another slice is UNAVAILABLE; desired state, holds and commit_by stay."""
        t = Transactions(self)
        t.island.allocate(500, 600, OTHER_SLICE)
        before = t.begin(desired(100, 200)).transaction
        rows = t.live()
        t.clock.advance(60)
        t.error(t.manager.update(SLICE, [desired(550, 650)], None), GeniCode.UNAVAILABLE)
        self.assertEqual(t.ok(t.manager.island.transaction(SLICE)), before)
        self.assertEqual(t.live(), rows)

    def test_update_moves_commit_by(self) -> None:
        """A successful Update moves commit_by (and every hold's expiry) to now plus the lifetime."""
        t = Transactions(self)
        t.begin(desired(1000, 2000))
        t.clock.advance(300)
        proposal = t.update(desired(1000, 2000), desired(5000, 6000))
        self.assertEqual(proposal.transaction.commit_by, at(300 + TTL))
        self.assertEqual({b.allocation_expires for b in t.live()}, {at(300 + TTL)})

    def test_plain_calls_wait(self) -> None:
        """The manager tells a plain Allocate, Provision or Delete of the slice that a transaction is open: INPROGRESS."""
        t = Transactions(self)
        t.begin(desired(100, 200))
        error = t.error(t.manager.refuse_if_open(SLICE, "Allocate"), GeniCode.INPROGRESS)
        self.assertIn("Allocate", error.output)
        t.ok(t.manager.refuse_if_open(OTHER_SLICE, "Allocate"))


class CommitGuaranteeTests(SynchronousTestCase):
    """Holds keep other slices off: the commit cannot fail because of them."""

    def test_competitors_refused(self) -> None:
        """Another slice's Allocate and transaction of a held slot are UNAVAILABLE; the commit succeeds."""
        t = Transactions(self)
        t.begin(desired(100, 200))
        t.island.error(t.island.manager.allocate(OTHER_SLICE, ALICE, "", Slot(at(150), at(250)), None), GeniCode.UNAVAILABLE)
        t.error(t.manager.begin(OTHER_SLICE, ALICE, "", [desired(50, 150)], None), GeniCode.UNAVAILABLE)
        _, after = t.ok(t.manager.commit(SLICE))
        self.assertEqual([b.slot for b in after], [Slot(at(100), at(200))])
        self.assertEqual(t.slivers(OTHER_SLICE), [])

    def test_kept_allocation_lapses_no_later_than_commit_by(self) -> None:
        """
        An allocation the desired state keeps would lapse before the commit
        (its slot then free to others): commit_by comes no later than its
        expiry, so the transaction is aborted at that second rather than
        committed without it.
        """
        t = Transactions(self, allocation_ttl=100.0)
        kept = t.island.allocate(5000, 6000)
        proposal = t.begin(desired(5000, 6000), desired(7000, 8000))
        self.assertEqual(proposal.transaction.commit_by, kept.allocation_expires)
        t.island.advance_to(99)
        self.assertEqual(t.state(), SliceState.TRANSACTION)
        t.island.advance_to(101)
        self.assertEqual(t.state(), SliceState.UNINITIALISED)
        t.error(t.manager.commit(SLICE), GeniCode.ERROR)
        t.island.allocate(5000, 6000, OTHER_SLICE)

    def test_lapsed_allocation_not_kept(self) -> None:
        """A desired state keeping an allocation that has lapsed (the sweep has not marked it yet) is SEARCHFAILED, naming it."""
        t = Transactions(self, allocation_ttl=100.0)
        kept = t.island.allocate(5000, 6000)
        t.clock.advance(100)
        error = t.error(t.manager.begin(SLICE, ALICE, "", [desired(5000, 6000)], None), GeniCode.SEARCHFAILED)
        self.assertIn(kept.sliver_urn, error.output)
        self.assertEqual(t.state(), SliceState.ALLOCATED)

    def test_conflict_fails_at_begin(self) -> None:
        """A desired state that conflicts with another slice's booking fails at Begin, leaving the slice uninitialised."""
        t = Transactions(self)
        t.island.allocate(100, 200, OTHER_SLICE)
        t.error(t.manager.begin(SLICE, ALICE, "", [desired(150, 250)], None), GeniCode.UNAVAILABLE)
        self.assertEqual(t.state(), SliceState.UNINITIALISED)


class AutoAbortTests(SynchronousTestCase):
    """At commit_by without commit or abort the island aborts, on the clock and after a restart."""

    def test_aborted_at_the_second(self) -> None:
        """One second before commit_by the transaction is open; at commit_by it is aborted and its holds released."""
        t = Transactions(self)
        t.begin(desired(100, 2000))
        t.clock.advance(TTL - 1)
        self.assertEqual(t.state(), SliceState.TRANSACTION)
        t.clock.advance(1)
        self.assertEqual(t.state(), SliceState.UNINITIALISED)
        self.assertEqual(t.live(), [])
        t.error(t.manager.commit(SLICE), GeniCode.ERROR)

    def test_aborted_after_restart(self) -> None:
        """A transaction whose commit_by passed while the island was down is aborted when it starts again."""
        path = self.mktemp()
        first = Transactions(self, path)
        first.begin(desired(100, 2000))
        first.manager.stop()
        first.clock.advance(TTL + 5)
        second = Transactions(self, path, clock=first.clock)
        self.assertEqual(second.state(), SliceState.UNINITIALISED)
        self.assertEqual(second.live(), [])

    def test_aborted_by_another_process(self) -> None:
        """
        A transaction opened by another process on the island's database is
        aborted here at its commit_by, although that process has stopped:
        this manager finds it within its watch interval and arms a timer.
        """
        t = Transactions(self)
        other = TransactionManager(t.island.manager, t.clock, TTL, watch_interval=60)
        t.ok(other.start())
        self.addCleanup(other.stop)
        t.ok(other.begin(SLICE, ALICE, "", [desired(100, 2000)], None))
        other.stop()
        t.clock.advance(TTL - 1)
        self.assertEqual(t.state(), SliceState.TRANSACTION)
        t.clock.advance(1)
        self.assertEqual(t.state(), SliceState.UNINITIALISED)
        self.assertEqual(t.live(), [])

    def test_restart_in_every_state(self) -> None:
        """After a restart each slice is as it was: uninitialised, allocated, or in its transaction with its holds and commit_by."""
        path = self.mktemp()
        first = Transactions(self, path)
        first.island.allocate(100, 200, OTHER_SLICE)
        opened = first.begin(desired(300, 400)).transaction
        rows = first.live()
        first.manager.stop()
        second = Transactions(self, path, clock=first.clock)
        self.assertEqual(
            [second.state(s) for s in SLICES], [SliceState.TRANSACTION, SliceState.ALLOCATED, SliceState.UNINITIALISED]
        )
        self.assertEqual(second.ok(second.manager.island.transaction(SLICE)), opened)
        self.assertEqual(second.live(), rows)
        second.clock.advance(TTL)
        self.assertEqual(second.state(), SliceState.UNINITIALISED)


class IdentifiedAbortTests(SynchronousTestCase):
    """AbortTransaction naming a transaction: only that one, and a retry answers as the first abort did."""

    def test_abort_retried(self) -> None:
        """An Abort naming the open transaction aborts it; the same Abort again answers True and changes nothing."""
        t = Transactions(self)
        kept = t.island.allocate(3000, 4000)
        identifier = t.begin(desired(3000, 4000), desired(100, 200)).transaction.transaction_id
        before = t.live(SLICE)
        self.assertIs(t.ok(t.manager.abort(SLICE, identifier)), True)
        self.assertEqual(t.state(), SliceState.ALLOCATED)
        after = t.live(SLICE)
        self.assertEqual([b.sliver_urn for b in after], [kept.sliver_urn])
        self.assertNotEqual(after, before)
        self.assertIs(t.ok(t.manager.abort(SLICE, identifier)), True)
        self.assertEqual(t.live(SLICE), after)
        t.error(t.manager.abort(SLICE), GeniCode.ERROR)
        error = t.error(t.manager.commit(SLICE, identifier), GeniCode.ERROR)
        self.assertEqual(error.value["reason"], "AbortTransaction")

    def test_retry_leaves_a_newer_transaction(self) -> None:
        """An Abort retried after the slice began another transaction answers True and leaves the newer one open."""
        t = Transactions(self)
        first = t.begin(desired(100, 200)).transaction.transaction_id
        t.ok(t.manager.abort(SLICE, first))
        second = t.begin(desired(300, 400)).transaction
        rows = t.live()
        self.assertIs(t.ok(t.manager.abort(SLICE, first)), True)
        self.assertEqual(t.ok(t.manager.island.transaction(SLICE)), second)
        self.assertEqual(t.live(), rows)

    def test_abort_after_commit_by(self) -> None:
        """An Abort naming a transaction the island aborted at its commit_by answers True as well."""
        t = Transactions(self)
        identifier = t.begin(desired(100, 2000)).transaction.transaction_id
        t.clock.advance(TTL)
        self.assertIs(t.ok(t.manager.abort(SLICE, identifier)), True)
        self.assertEqual(t.live(), [])

    def test_abort_of_a_committed_transaction(self) -> None:
        """An Abort naming a committed transaction is ERROR saying when it was committed; the slivers stay."""
        t = Transactions(self)
        identifier = t.begin(desired(100, 200)).transaction.transaction_id
        t.clock.advance(7)
        t.ok(t.manager.commit(SLICE, identifier))
        t.clock.advance(3)
        error = t.error(t.manager.abort(SLICE, identifier), GeniCode.ERROR)
        self.assertEqual(
            error.value,
            {"geniam_transaction": identifier, "geniam_transaction_outcome": "committed", "committed_at": format_time(at(7))},
        )
        self.assertIn("committed", error.output)
        self.assertEqual(t.slivers(), [(Slot(at(100), at(200)), AllocationState.ALLOCATED)])

    def test_unknown_identifier_leaves_the_open_transaction(self) -> None:
        """An Abort naming an identifier the island does not know is ERROR; the open transaction keeps its holds."""
        t = Transactions(self)
        opened = t.begin(desired(100, 200)).transaction
        rows = t.live()
        error = t.error(t.manager.abort(SLICE, "f" * 32), GeniCode.ERROR)
        self.assertIn("f" * 32, error.output)
        self.assertEqual(t.ok(t.manager.island.transaction(SLICE)), opened)
        self.assertEqual(t.live(), rows)

    def test_identifier_of_another_slice(self) -> None:
        """An identifier is good only with its own slice: another slice's Abort naming it is ERROR, and both stay open."""
        t = Transactions(self)
        mine = t.begin(desired(100, 200)).transaction
        theirs = t.begin(desired(300, 400), slice_urn=OTHER_SLICE).transaction
        t.error(t.manager.abort(SLICE, theirs.transaction_id), GeniCode.ERROR)
        t.ok(t.manager.abort(OTHER_SLICE, theirs.transaction_id))
        t.error(t.manager.abort(SLICE, theirs.transaction_id), GeniCode.ERROR)
        self.assertEqual(t.ok(t.manager.island.transaction(SLICE)), mine)

    def test_forgotten_after_retention(self) -> None:
        """Once the outcome's retention passed, a retried Abort is ERROR (not known), no longer True."""
        t = Transactions(self)
        identifier = t.begin(desired(100, 2000)).transaction.transaction_id
        t.ok(t.manager.abort(SLICE, identifier))
        t.clock.advance(TTL + t.manager.outcome_retention - 1)
        self.assertIs(t.ok(t.manager.abort(SLICE, identifier)), True)
        t.clock.advance(1 + DEFAULT_WATCH_INTERVAL)
        t.error(t.manager.abort(SLICE, identifier), GeniCode.ERROR)


class PlanTests(SynchronousTestCase):
    """The pure plan refuses what a transaction cannot do."""

    def test_overlapping_desired_slots(self) -> None:
        """Two overlapping desired slots are refused."""
        self.assertRaises(NotPermitted, plan, [desired(0, 100), desired(50, 150)], [], [], at(0), at(TTL))


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["begin", "update", "commit", "abort", "allocate", "delete", "advance"]),
        st.sampled_from(SLICES),
        st.integers(0, 5),
        st.integers(1, 3),
    ),
    max_size=25,
)


class PropertyTests(SynchronousTestCase):
    """The rules hold over random sequences of calls from several slices with the clock advancing."""

    def attempt(self, t: Transactions, work: Any) -> Any:
        """Run a call; its result, or None if it failed with a GENI error."""
        d = work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)
        return self.successResultOf(d.addErrback(lambda f: f.trap(GeniError) and None))

    @settings(max_examples=60)
    @given(ACTIONS)
    def test_rules(self, actions: list[tuple[str, str, int, int]]) -> None:
        """
        Committed state equals the last desired state; abort restores the
        slice exactly; no two live rows overlap; no hold outlives its
        transaction's commit_by. Plain Allocate and Delete wait for an open
        transaction, as the aggregate's API makes them.
        """
        t = Transactions(self)
        last_desired: dict[str, list[Slot]] = {}
        before_begin: dict[str, list[Booking]] = {}
        for action, slice_urn, first, length in actions:
            slots = [desired(1000 * first, 1000 * (first + length))]
            in_transaction = t.state(slice_urn) is SliceState.TRANSACTION
            if action == "advance":
                t.clock.advance(TTL * length / 2)
            elif action == "begin":
                before = [b for b in t.live(slice_urn) if b.is_sliver]
                if self.attempt(t, t.manager.begin(slice_urn, ALICE, "", slots, None)) is not None:
                    self.assertFalse(in_transaction)
                    before_begin[slice_urn] = before
                    last_desired[slice_urn] = [s.slot for s in slots]
            elif action == "update":
                if self.attempt(t, t.manager.update(slice_urn, slots, None)) is not None:
                    last_desired[slice_urn] = [s.slot for s in slots]
            elif action == "commit":
                if self.attempt(t, t.manager.commit(slice_urn)) is not None:
                    self.assertEqual([s for s, _ in t.slivers(slice_urn)], last_desired[slice_urn])
                else:
                    self.assertFalse(in_transaction)
            elif action == "abort":
                if self.attempt(t, t.manager.abort(slice_urn)) is not None:
                    self.assertEqual([b for b in t.live(slice_urn) if b.is_sliver], before_begin[slice_urn])
                else:
                    self.assertFalse(in_transaction)
            elif not in_transaction and action == "allocate":
                self.attempt(t, t.island.manager.allocate(slice_urn, ALICE, "", slots[0].slot, None))
            elif not in_transaction and action == "delete":
                mine = [b.sliver_urn for b in t.live(slice_urn) if b.is_sliver]
                if mine:
                    self.attempt(t, t.island.manager.delete(mine))
            self.check_invariants(t)

    def check_invariants(self, t: Transactions) -> None:
        live = t.live()
        for index, one in enumerate(live):
            for other in live[index + 1 :]:
                self.assertFalse(one.slot.overlaps(other.slot), f"{one} overlaps {other}")
        now = t.clock.seconds()
        for hold in (b for b in live if b.allocation_state is AllocationState.HELD):
            self.assertLess(now, hold.allocation_expires)
            transaction = t.ok(t.manager.island.transaction(hold.slice_urn))
            self.assertIsNotNone(transaction)
            self.assertLessEqual(hold.allocation_expires, transaction.commit_by)
            self.assertIn(hold.sliver_urn, transaction.holds)


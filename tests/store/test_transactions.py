"""
PG-A transactions on a real store, SQLite and PostgreSQL alike: restart in
every state, the commit guarantee, and races between clients of one slice,
between a transaction and other slices' Allocates, and (on PostgreSQL)
between two AM processes with their own pools on one database.

The stores run their queries in threads on the real reactor; the managers'
time is a L{Clock}. The races start their calls together and wait for all
of them with a L{DeferredList}: no sleeps.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from txpostgres.txpostgres import Connection

from geniam.booking.transactions import DesiredSlot, Outcome, SliceState, Transaction
from geniam.booking.values import AllocationState, Booking, Slot
from geniam.errors import GeniCode, GeniError
from geniam.managers.transactions import TransactionManager
from geniam.store.pglease import lock_ids
from geniam.store.postgres import island_lock
from geniam.store.sqlite import SQLiteStore
from tests.managers.test_island import ALICE, DAY, OTHER_SLICE, SLICE, T0, at, island_manager
from tests.store.test_postgres import SKIP, in_schema, scratch_schema, started_store

TTL = 600.0
THIRD = "urn:publicid:IDN+geni.example.net+slice+third"
SLICES = (SLICE, OTHER_SLICE, THIRD)


def desired(start: float, end: float) -> DesiredSlot:
    """One desired slot C{at(start)} to C{at(end)}."""
    return DesiredSlot(Slot(at(start), at(end)), None, {}, ())


def outcomes(results: list[tuple[bool, Any]]) -> tuple[list[Any], list[Failure]]:
    """Split a DeferredList's results into successes and failures."""
    return [v for ok, v in results if ok], [v for ok, v in results if not ok]


async def failure_of(d: Deferred[Any]) -> Failure:
    """The failure C{d} fires with (the test fails if it succeeds)."""
    try:
        result = await d
    except Exception:
        return Failure()
    raise AssertionError(f"expected a failure, got {result!r}")


class Process:
    """One AM process: an island manager and a transaction manager on a store of its own."""

    def __init__(self, case: TestCase, store: Any, clock: Clock) -> None:
        self.case = case
        self.store = store
        self.clock = clock
        prefix = uuid.uuid4().hex[:8]
        names = iter(range(1, 1_000_000))
        self.island = island_manager(store, clock, lambda: f"{prefix}s{next(names)}")
        self.manager = TransactionManager(self.island, clock, TTL)

    async def start(self) -> Process:
        await self.island.start()
        await self.manager.start()
        self.case.addCleanup(self.stop)
        return self

    def stop(self) -> Deferred[None]:
        self.manager.stop()
        return self.island.stop()

    def begin(self, *slots: DesiredSlot, slice_urn: str = SLICE) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.manager.begin(slice_urn, ALICE, "alice@example.net", slots, at(30 * DAY)))

    def allocate(self, start: float, end: float, slice_urn: str) -> Deferred[Booking]:
        return self.island.allocate(slice_urn, ALICE, "", Slot(at(start), at(end)), at(30 * DAY))

    async def state(self, slice_urn: str = SLICE) -> SliceState:
        return await self.manager.state(slice_urn)

    async def live(self, slice_urn: str | None = None) -> list[Booking]:
        rows = await self.store.list_live(Slot(at(0), at(400 * DAY)))
        return [b for b in rows if slice_urn is None or b.slice_urn == slice_urn]

    async def slivers(self, slice_urn: str = SLICE) -> list[Booking]:
        return [b for b in await self.live(slice_urn) if b.is_sliver]


if TYPE_CHECKING:
    _Case = TestCase
else:
    _Case = object


class TransactionStoreMixin(_Case):
    """The tests, for any store; subclasses say how to make one (and another on the same data)."""

    async def make_store(self, share_with: Any = None) -> Any:
        raise NotImplementedError

    async def process(self, clock: Clock | None = None, share_with: Any = None) -> Process:
        if clock is None:
            clock = Clock()
            clock.advance(T0)
        store = await self.make_store(share_with)
        return await Process(self, store, clock).start()

    def assert_code(self, failure: Failure, code: GeniCode) -> None:
        failure.trap(GeniError)
        self.assertEqual(failure.value.code, code, failure.value.output)

    async def test_restart_in_every_state(self) -> None:
        """After a restart each slice is as it was: uninitialised, allocated, or in its transaction with its holds and commit_by."""
        first = await self.process()
        await first.allocate(100, 200, OTHER_SLICE)
        opened = (await first.begin(desired(300, 400))).transaction
        rows = await first.live()
        await first.stop()
        await first.store.stop()
        second = await self.process(first.clock, share_with=first.store)
        self.assertEqual(
            [await second.state(s) for s in SLICES], [SliceState.TRANSACTION, SliceState.ALLOCATED, SliceState.UNINITIALISED]
        )
        self.assertEqual(await second.island.transaction(SLICE), opened)
        self.assertEqual(await second.live(), rows)
        second.clock.advance(TTL)
        # The Abort queues behind the timer's abort of the slice, and finds no transaction.
        self.assert_code(await failure_of(Deferred.fromCoroutine(second.manager.abort(SLICE))), GeniCode.ERROR)
        self.assertEqual(await second.state(), SliceState.UNINITIALISED)
        self.assertEqual(await second.live(SLICE), [])

    async def test_outcomes_survive_restart_until_forgotten(self) -> None:
        """
        How each transaction ended is kept in the store: after a restart a
        Commit naming a committed transaction answers its slivers again, one
        naming an aborted transaction says it was aborted; once kept past
        commit_by plus the retention, both are forgotten.
        """
        first = await self.process()
        committed = (await first.begin(desired(100, 200))).transaction
        _, slivers = await first.manager.commit(SLICE, committed.transaction_id)
        aborted = (await first.begin(desired(300, 400), slice_urn=OTHER_SLICE)).transaction
        self.assertTrue(await first.manager.abort(OTHER_SLICE))
        await first.stop()
        await first.store.stop()
        second = await self.process(first.clock, share_with=first.store)
        recorded, again = await second.manager.commit(SLICE, committed.transaction_id)
        self.assertEqual(again, slivers)
        self.assertEqual((recorded.transaction_id, recorded.request), (committed.transaction_id, committed.request))
        failure = await failure_of(Deferred.fromCoroutine(second.manager.commit(OTHER_SLICE, aborted.transaction_id)))
        self.assert_code(failure, GeniCode.ERROR)
        self.assertEqual(failure.value.value["geniam_transaction_outcome"], "aborted")
        # Another slice cannot learn the outcome by naming the identifier.
        self.assert_code(await failure_of(Deferred.fromCoroutine(second.manager.commit(THIRD, committed.transaction_id))), GeniCode.ERROR)
        second.clock.advance(TTL + second.manager.outcome_retention)
        await second.manager.watch()
        for slice_urn, transaction in ((SLICE, committed), (OTHER_SLICE, aborted)):
            failure = await failure_of(Deferred.fromCoroutine(second.manager.commit(slice_urn, transaction.transaction_id)))
            self.assert_code(failure, GeniCode.ERROR)
            self.assertIsNone(failure.value.value)
            self.assertIn("none of that identifier", failure.value.output)

    async def test_commit_guarantee(self) -> None:
        """Another slice's Allocate and transaction of a held slot are UNAVAILABLE; the commit succeeds."""
        p = await self.process()
        await p.begin(desired(100, 200))
        failure = await failure_of(p.allocate(150, 250, OTHER_SLICE))
        self.assert_code(failure, GeniCode.UNAVAILABLE)
        failure = await failure_of(p.begin(desired(50, 150), slice_urn=OTHER_SLICE))
        self.assert_code(failure, GeniCode.UNAVAILABLE)
        _, after = await p.manager.commit(SLICE)
        self.assertEqual([b.slot for b in after], [Slot(at(100), at(200))])
        self.assertEqual(await p.slivers(OTHER_SLICE), [])

    async def test_conflict_fails_at_begin(self) -> None:
        """A desired state that conflicts with another slice's booking fails at Begin, leaving the slice uninitialised."""
        p = await self.process()
        await p.allocate(100, 200, OTHER_SLICE)
        self.assert_code(await failure_of(p.begin(desired(150, 250))), GeniCode.UNAVAILABLE)
        self.assertEqual(await p.state(), SliceState.UNINITIALISED)
        self.assertEqual(await p.live(SLICE), [])

    async def test_aborted_after_restart(self) -> None:
        """A transaction whose commit_by passed while the island was down is aborted when it starts again."""
        first = await self.process()
        await first.begin(desired(100, 2000))
        await first.stop()
        await first.store.stop()
        first.clock.advance(TTL + 5)
        second = await self.process(first.clock, share_with=first.store)
        self.assertEqual(await second.state(), SliceState.UNINITIALISED)
        self.assertEqual(await second.live(), [])

    async def test_racing_begins(self) -> None:
        """Two clients Begin on one slice at once: exactly one succeeds, the other is INPROGRESS."""
        p = await self.process()
        results = await DeferredList([p.begin(desired(100, 200)), p.begin(desired(300, 400))], consumeErrors=True)
        [won], [lost] = outcomes(results)
        self.assert_code(lost, GeniCode.INPROGRESS)
        self.assertEqual(await p.island.transaction(SLICE), won.transaction)
        self.assertEqual([b.slot for b in await p.live()], [b.slot for b in won.slivers])

    async def test_commit_races_abort(self) -> None:
        """A Commit and an Abort at once: exactly one wins; the slice is fully committed or fully aborted."""
        p = await self.process()
        before = await p.allocate(100, 200, SLICE)
        await p.begin(desired(300, 400), desired(500, 600))
        commit: Deferred[Any] = Deferred.fromCoroutine(p.manager.commit(SLICE))
        abort: Deferred[Any] = Deferred.fromCoroutine(p.manager.abort(SLICE))
        results: list[tuple[bool, Any]] = await DeferredList([commit, abort], consumeErrors=True)
        [won], [lost] = outcomes(results)
        self.assert_code(lost, GeniCode.ERROR)
        self.assertIsNone(await p.island.transaction(SLICE))
        live = await p.live()
        self.assertEqual([b for b in live if b.allocation_state is AllocationState.HELD], [])
        if won is True:
            self.assertEqual(live, [before])
        else:
            self.assertEqual([(b.slot, b.allocation_state) for b in live], [
                (Slot(at(300), at(400)), AllocationState.ALLOCATED),
                (Slot(at(500), at(600)), AllocationState.ALLOCATED),
            ])

    async def test_transaction_races_allocates(self) -> None:
        """A Begin and two other slices' Allocates of one slot at once: exactly one wins, the rest are UNAVAILABLE."""
        p = await self.process()
        attempts = [p.allocate(150, 250, OTHER_SLICE), p.begin(desired(100, 200)), p.allocate(120, 180, THIRD)]
        results = await DeferredList(attempts, consumeErrors=True)
        won, lost = outcomes(results)
        self.assertEqual(len(won), 1)
        for failure in lost:
            self.assert_code(failure, GeniCode.UNAVAILABLE)
        [row] = await p.live()
        self.assertEqual(await p.state(SLICE), SliceState.TRANSACTION if row.slice_urn == SLICE else SliceState.UNINITIALISED)


class SQLiteTransactionTests(TransactionStoreMixin, TestCase):
    """The transaction tests on an SQLite file, its queries in the reactor's threads."""

    async def make_store(self, share_with: Any = None) -> Any:
        path = share_with.path if share_with is not None else self.mktemp()
        store = SQLiteStore(path, reactor=reactor)
        await store.start()
        self.addCleanup(store.stop)
        return store


class PostgresTransactionTests(TransactionStoreMixin, TestCase):
    """The transaction tests on PostgreSQL."""

    skip = SKIP

    async def make_store(self, share_with: Any = None) -> Any:
        dsn = share_with.dsn if share_with is not None else in_schema(await scratch_schema(self))
        return await started_store(self, dsn, pool_size=4)


class IslandLockHolder:
    """
    A connection of its own holding an island's write lock (the advisory
    lock each write of the island takes first), so that writes queue
    behind it in the order they are made.
    """

    def __init__(self, connection: Any, key: int) -> None:
        self._connection = connection
        self._key = key

    @classmethod
    async def take(cls, case: TestCase, dsn: str, island: str) -> IslandLockHolder:
        """Connect and take C{island}'s lock (released at the latest when the test ends)."""
        connection = Connection(reactor=reactor)
        await connection.connect(dsn)
        case.addCleanup(connection.close)
        holder = cls(connection, island_lock(island))
        await connection.runQuery("SELECT pg_advisory_lock(%s)", (holder._key,))
        return holder

    async def waiting(self, count: int) -> None:
        """Fire once C{count} writes wait for the lock (asked of C{pg_locks} until they do)."""
        classid, objid = lock_ids(self._key)
        for _ in range(10_000):
            rows = await self._connection.runQuery(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s",
                (classid, objid),
            )
            if rows[0][0] >= count:
                return
        raise AssertionError(f"{count} writes never waited for the island's lock")

    async def release(self) -> None:
        """Let the waiting writes go, first come first."""
        await self._connection.runQuery("SELECT pg_advisory_unlock(%s)", (self._key,))


class PostgresTwoProcessTests(TestCase):
    """Two AM processes (stores with their own pools, island managers of their own) on one PostgreSQL database."""

    skip = SKIP

    async def two(self) -> tuple[Process, Process]:
        dsn = in_schema(await scratch_schema(self))
        clock = Clock()
        clock.advance(T0)
        first = await Process(self, await started_store(self, dsn, pool_size=4), clock).start()
        second = await Process(self, await started_store(self, dsn, pool_size=4), clock).start()
        return first, second

    async def test_sees_the_others_transaction(self) -> None:
        """A transaction opened through one process is open in the other: its Begin is INPROGRESS, its Commit works."""
        first, second = await self.two()
        opened = (await first.begin(desired(100, 200))).transaction
        self.assertEqual(await second.state(), SliceState.TRANSACTION)
        self.assertEqual(await second.island.transaction(SLICE), opened)
        failure = await failure_of(second.begin(desired(300, 400)))
        failure.trap(GeniError)
        self.assertEqual(failure.value.code, GeniCode.INPROGRESS, failure.value.output)
        _, after = await second.manager.commit(SLICE)
        self.assertEqual([b.slot for b in after], [Slot(at(100), at(200))])
        self.assertEqual(await first.state(), SliceState.ALLOCATED)

    async def test_racing_begins(self) -> None:
        """Each process Begins on one slice at once: exactly one succeeds, the other is INPROGRESS."""
        first, second = await self.two()
        results = await DeferredList([first.begin(desired(100, 200)), second.begin(desired(300, 400))], consumeErrors=True)
        [won], [lost] = outcomes(results)
        lost.trap(GeniError)
        self.assertEqual(lost.value.code, GeniCode.INPROGRESS, lost.value.output)
        self.assertEqual(await first.island.transaction(SLICE), won.transaction)
        self.assertEqual([b.slot for b in await first.live()], [b.slot for b in won.slivers])

    async def race_close(self, commit_first: bool) -> tuple[Process, Any, Any, Transaction]:
        """
        One process commits while the other aborts, both having read the
        open transaction, their writes queued on the island's lock in a
        known order (PostgreSQL grants a lock to its waiters first come,
        first served): C{commit_first} or the abort first. Fire with a
        process, the Commit's and the Abort's results (or failures), and
        the transaction.
        """
        first, second = await self.two()
        transaction = (await first.begin(desired(300, 400), desired(500, 600))).transaction
        holder = await IslandLockHolder.take(self, first.store.dsn, first.store.island)
        sides = [
            lambda: Deferred.fromCoroutine(first.manager.commit(SLICE)),
            lambda: Deferred.fromCoroutine(second.manager.abort(SLICE)),
        ]
        if not commit_first:
            sides.reverse()
        started = []
        for count, side in enumerate(sides, 1):
            started.append(side())
            await holder.waiting(count)
        await holder.release()
        results: list[tuple[bool, Any]] = await DeferredList(started, consumeErrors=True)
        (_, earlier), (_, later) = results
        commit, abort = (earlier, later) if commit_first else (later, earlier)
        self.assertIsNone(await second.island.transaction(SLICE))
        return first, commit, abort, transaction

    def assert_lost(self, failure: Any) -> None:
        self.assertIsInstance(failure, Failure)
        failure.trap(GeniError)
        self.assertEqual(failure.value.code, GeniCode.ERROR, failure.value.output)

    async def test_commit_wins_the_race(self) -> None:
        """The Commit's write comes first: the slice is fully committed, the Abort is ERROR, the outcome recorded as committed."""
        p, commit, abort, transaction = await self.race_close(commit_first=True)
        self.assert_lost(abort)
        _, slivers = commit
        live = await p.live()
        self.assertEqual([(b.slot, b.allocation_state) for b in live], [
            (Slot(at(300), at(400)), AllocationState.ALLOCATED),
            (Slot(at(500), at(600)), AllocationState.ALLOCATED),
        ])
        self.assertEqual(slivers, live)
        outcome = await p.island.transaction_outcome(transaction.transaction_id)
        self.assertEqual(outcome.outcome, Outcome.COMMITTED)

    async def test_abort_wins_the_race(self) -> None:
        """The Abort's write comes first: the slice is fully aborted (nothing live), the Commit is ERROR, the outcome recorded as aborted."""
        p, commit, abort, transaction = await self.race_close(commit_first=False)
        self.assertIs(abort, True)
        self.assert_lost(commit)
        self.assertEqual(await p.live(), [])
        outcome = await p.island.transaction_outcome(transaction.transaction_id)
        self.assertEqual((outcome.outcome, outcome.reason), (Outcome.ABORTED, "AbortTransaction"))

    async def test_other_process_aborts_at_commit_by(self) -> None:
        """When the process that opened a transaction stops, the other aborts it at its commit_by."""
        first, second = await self.two()
        await first.begin(desired(5000, 6000))
        await first.stop()
        second.clock.advance(TTL - 1)
        await second.manager.watch()
        self.assertEqual(await second.state(), SliceState.TRANSACTION)
        second.clock.advance(1)
        await second.manager.watch()
        self.assertEqual(await second.state(), SliceState.UNINITIALISED)
        self.assertEqual(await second.live(), [])
        await second.allocate(5500, 6500, OTHER_SLICE)

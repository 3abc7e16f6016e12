"""
Tests for L{geniam.store.postgres}: the IStore contract on a real
PostgreSQL database, plus what is PostgreSQL's own (the exclusion
constraint, races between two stores with their own connection pools,
schema versions, reconnection).

They need a scratch database: set C{GENIAM_TEST_POSTGRES_DSN} to its libpq
connection string (C{.ci/run} starts a throwaway cluster and sets it).
Each test works in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg2
import psycopg2.extensions
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from txpostgres.txpostgres import Connection

from geniam.booking.errors import BookingConflict
from geniam.booking.values import AllocationState, Slot
from geniam.errors import GeniCode
from geniam.managers.errors import as_geni_error
from geniam.store.errors import SchemaTooNew, StaleBooking, StoreError, TicketHeld
from geniam.store import schema as schema_module
from geniam.store.postgres import PostgresStore, _arguments
from geniam.store.rows import INSERT_BOOKING, Result, booking_to_row, drive
from geniam.store.schema import IN_SLICE_CONSTRAINT, NO_OVERLAP_CONSTRAINT, ONE_TICKET_INDEX, SCHEMA_VERSION, open_schema
from tests.store.test_contract import UNDO_VERSION_6, StoreContractMixin, booking, race_for_slots, sliver

DSN = os.environ.get("GENIAM_TEST_POSTGRES_DSN", "")
SKIP = (
    None
    if DSN
    else "GENIAM_TEST_POSTGRES_DSN is not set: give it the libpq connection string of a scratch"
    " PostgreSQL database (for example 'host=/tmp/pg user=geniam dbname=geniam_test') to run these tests"
)


def in_schema(schema: str, application: str = "geniam-tests") -> str:
    """The test DSN with C{schema} first on the search path."""
    return str(psycopg2.extensions.make_dsn(DSN, options=f"-csearch_path={schema},public", application_name=application))


async def run_sql(sql: str, params: Sequence[Any] | None = None, dsn: str | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own; return its rows (none for a command)."""
    connection = Connection(reactor=reactor)
    await connection.connect(dsn or DSN)

    async def interaction(cursor: Any) -> list[tuple[Any, ...]]:
        await cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description is not None else []

    try:
        rows: list[tuple[Any, ...]] = await connection.runInteraction(lambda c: Deferred.fromCoroutine(interaction(c)))
        return rows
    finally:
        connection.close()


async def scratch_schema(case: TestCase) -> str:
    """
    Make an empty schema for one test and drop it after the test. The
    btree_gist extension goes to C{public}, which outlives the test's schema.
    """
    name = f"geniam_test_{uuid.uuid4().hex[:12]}"
    await run_sql("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public")
    await run_sql(f"CREATE SCHEMA {name}")
    case.addCleanup(run_sql, f"DROP SCHEMA {name} CASCADE")
    return name


async def started_store(case: TestCase, dsn: str, island: str = "default", **kw: Any) -> PostgresStore:
    """A started store on C{dsn}, stopped after the test."""
    store = PostgresStore(dsn, island=island, reactor=reactor, **kw)
    await store.start()
    case.addCleanup(store.stop)
    return store


class PostgresContractTests(StoreContractMixin, TestCase):
    """The IStore contract on PostgreSQL."""

    skip = SKIP

    async def make_store(self, island: str = "default", share_with: PostgresStore | None = None) -> PostgresStore:
        dsn = share_with.dsn if share_with is not None else in_schema(await scratch_schema(self))
        return await started_store(self, dsn, island, pool_size=2)


class PostgresSchemaTests(TestCase):
    """The schema is versioned, created once, and carries the exclusion constraint."""

    skip = SKIP

    async def test_records_version_and_constraint(self) -> None:
        """A new schema records the current version and has the no-overlap exclusion constraint."""
        schema = await scratch_schema(self)
        await started_store(self, in_schema(schema))
        self.assertEqual(await run_sql(f"SELECT version FROM {schema}.schema_version"), [(SCHEMA_VERSION,)])
        found = await run_sql(
            "SELECT contype FROM pg_constraint WHERE conname = %s AND conrelid = %s::regclass",
            (NO_OVERLAP_CONSTRAINT, f"{schema}.bookings"),
        )
        self.assertEqual(found, [("x",)])

    async def test_refuses_newer_schema(self) -> None:
        """A schema from a newer version is refused with DBERROR and left alone."""
        schema = await scratch_schema(self)
        await run_sql(f"CREATE TABLE {schema}.schema_version (version INTEGER NOT NULL)")
        await run_sql(f"INSERT INTO {schema}.schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
        store = PostgresStore(in_schema(schema), reactor=reactor)
        self.addCleanup(store.stop)
        error: Any = await self.assertFailure(store.start(), SchemaTooNew)
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)
        self.assertIn(str(SCHEMA_VERSION + 1), error.message)
        tables = await run_sql("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        self.assertEqual(tables, [("schema_version",)])

    async def test_reopen_keeps_data(self) -> None:
        """Bookings survive stopping and starting again; the schema is not created twice."""
        dsn = in_schema(await scratch_schema(self))
        store = PostgresStore(dsn, reactor=reactor)
        await store.start()
        stored = await store.insert(booking("a", 100, 200))
        await store.stop()
        again = await started_store(self, dsn)
        self.assertEqual(await again.get(sliver("a")), stored)

    async def test_processes_starting_together(self) -> None:
        """Several stores starting at once on an empty schema all start; the schema is made once."""
        schema = await scratch_schema(self)
        stores = [PostgresStore(in_schema(schema), reactor=reactor, pool_size=1) for _ in range(4)]
        for store in stores:
            self.addCleanup(store.stop)
        outcomes: list[Any] = await DeferredList([store.start() for store in stores], consumeErrors=True)
        self.assertEqual([ok for ok, _ in outcomes], [True] * 4)
        self.assertEqual(await run_sql(f"SELECT version FROM {schema}.schema_version"), [(SCHEMA_VERSION,)])

    async def test_database_error_is_dberror(self) -> None:
        """A failing statement reaches the caller as DBERROR, and the store keeps working."""
        schema = await scratch_schema(self)
        store = await started_store(self, in_schema(schema), pool_size=1)
        await run_sql(f"DROP TABLE {schema}.slices")
        error: Any = await self.assertFailure(store.set_shutdown("urn:publicid:IDN+a+slice+b", 1.0), StoreError)
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)
        self.assertIn("slices", error.message)
        self.assertEqual(await store.count(), 0)


class PostgresConstraintTests(TestCase):
    """The database, not the store's own check, keeps live bookings of an island apart."""

    skip = SKIP

    async def raw_insert(self, schema: str, name: str, start: float, end: float, island: str = "default", **kw: Any) -> None:
        """Write a booking row directly, as a writer that skips the store's checks would."""
        row = booking_to_row(booking(name, start, end, **kw), island, 1)
        await run_sql(INSERT_BOOKING.replace("?", "%s"), row, dsn=in_schema(schema))

    async def test_upgrade_from_version_4(self) -> None:
        """
        Version 4's one island-wide constraint gives way to version 5's: a
        ticket's hold may then overlap its own slice's sliver, nothing else.
        """
        schema = await scratch_schema(self)
        store = await started_store(self, in_schema(schema))
        await store.stop()
        for name in (NO_OVERLAP_CONSTRAINT, IN_SLICE_CONSTRAINT, f"{IN_SLICE_CONSTRAINT}_holds"):
            await run_sql(f"ALTER TABLE {schema}.bookings DROP CONSTRAINT {name}")
        await run_sql(
            f"ALTER TABLE {schema}.bookings ADD CONSTRAINT {NO_OVERLAP_CONSTRAINT} EXCLUDE USING gist"
            f" (island WITH =, {schema}.slot_range(start_time, end_time) WITH &&) WHERE (live = 1)"
        )
        for sql in UNDO_VERSION_6:
            await run_sql(sql, dsn=in_schema(schema))
        await run_sql(f"UPDATE {schema}.schema_version SET version = 4")
        store = await started_store(self, in_schema(schema))
        self.assertEqual(await run_sql(f"SELECT version FROM {schema}.schema_version"), [(SCHEMA_VERSION,)])
        await store.insert(booking("s", 1000, 2000))
        await store.insert(booking("t", 1500, 3000, AllocationState.HELD, held_by="ticket", allocation_expires=900.0))
        await self.assertFailure(store.insert(booking("o", 2500, 2600, slice_name="second")), BookingConflict)
        await self.assertFailure(Deferred.fromCoroutine(self.raw_insert(schema, "raw", 1100.0, 1200.0)), psycopg2.IntegrityError)

    async def test_rows_of_a_ticket_and_its_own_sliver_may_overlap(self) -> None:
        """
        Rows written around the store: a ticket's hold may overlap its own
        slice's sliver; another slice's row or the slice's second sliver may not.
        """
        schema = await scratch_schema(self)
        await started_store(self, in_schema(schema))
        await self.raw_insert(schema, "s", 1000.0, 2000.0)
        await self.raw_insert(schema, "t", 1500.0, 3000.0, state=AllocationState.HELD, held_by="ticket")
        for name, start, constraint, kw in (
            ("other", 1600.0, f'"{NO_OVERLAP_CONSTRAINT}"', {"slice_name": "second"}),
            ("second", 1600.0, f'"{IN_SLICE_CONSTRAINT}"', {}),
            ("hold", 2500.0, f'"{IN_SLICE_CONSTRAINT}_holds"', {"state": AllocationState.HELD, "held_by": "transaction"}),
        ):
            error: Any = await self.assertFailure(
                Deferred.fromCoroutine(self.raw_insert(schema, name, start, start + 100, **kw)), psycopg2.IntegrityError
            )
            self.assertEqual(error.pgcode, "23P01")
            self.assertIn(constraint, str(error))

    async def test_one_live_ticket_row_per_slice(self) -> None:
        """Rows written around the store: a slice's second live ticket hold is refused by the unique index."""
        schema = await scratch_schema(self)
        await started_store(self, in_schema(schema))
        await self.raw_insert(schema, "t1", 1000.0, 2000.0, state=AllocationState.HELD, held_by="ticket")
        await self.raw_insert(schema, "old", 5000.0, 6000.0, state=AllocationState.EXPIRED, held_by="ticket")
        error: Any = await self.assertFailure(
            Deferred.fromCoroutine(
                self.raw_insert(schema, "t2", 3000.0, 4000.0, state=AllocationState.HELD, held_by="ticket")
            ),
            psycopg2.IntegrityError,
        )
        self.assertEqual(error.pgcode, "23505")
        self.assertIn(ONE_TICKET_INDEX, str(error))

    async def test_refuses_overlapping_rows(self) -> None:
        """
        Rows written around the store still cannot overlap a live row of
        the same island, even by a fraction of a microsecond; touching
        slots, dead rows and other islands are accepted.
        """
        schema = await scratch_schema(self)
        await started_store(self, in_schema(schema))
        await self.raw_insert(schema, "a", 1_800_000_000.0, 1_800_003_600.0)
        await self.raw_insert(schema, "touching", 1_800_003_600.0, 1_800_007_200.0)
        await self.raw_insert(schema, "dead", 1_800_000_000.0, 1_800_003_600.0, state=AllocationState.ENDED)
        await self.raw_insert(schema, "elsewhere", 1_800_000_000.0, 1_800_003_600.0, island="other")
        for name, start, end in (("inside", 1_800_000_100.0, 1_800_000_200.0), ("sliver", 1_799_990_000.0, 1_800_000_000.0000002)):
            error: Any = await self.assertFailure(Deferred.fromCoroutine(self.raw_insert(schema, name, start, end)), psycopg2.IntegrityError)
            self.assertEqual(error.pgcode, "23P01")
            self.assertIn(NO_OVERLAP_CONSTRAINT, str(error))
        self.assertEqual(await run_sql(f"SELECT COUNT(*) FROM {schema}.bookings"), [(4,)])

    async def behind_rival(self, schema: str, rival: Sequence[tuple[str, Sequence[Any]]], call: Any) -> Deferred[Any]:
        """
        Run the C{rival} statements in another transaction and leave it
        open, then start C{call()} (a store operation on a store whose
        application name is C{geniam-loser}): what the rival wrote is
        invisible to the store's own checks, so the store's write waits on
        the rival's row. Commit the rival once the store's backend is seen
        waiting, and return the store's outcome.
        """
        connection = Connection(reactor=reactor)
        await connection.connect(in_schema(schema, "geniam-rival"))
        self.addCleanup(connection.close)
        cursor = connection.cursor()
        await cursor.execute("BEGIN")
        for sql, params in rival:
            await cursor.execute(sql, params)
        outcome = call()
        for _ in range(500):
            waiting = await run_sql(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'geniam-loser' AND wait_event_type = 'Lock'"
            )
            if waiting:
                break
        else:
            self.fail("the store never waited for the rival's uncommitted row")
        self.assertNoResult(outcome)
        await cursor.execute("COMMIT")
        return outcome

    async def lose_insert_race(self, attempts: int) -> Deferred[Any]:
        """The store inserts a slot overlapping a booking another process is committing."""
        schema = await scratch_schema(self)
        store = await started_store(self, in_schema(schema, "geniam-loser"), attempts=attempts)
        row = booking_to_row(booking("winner", 1000, 2000), "default", 1)
        return await self.behind_rival(
            schema, [(INSERT_BOOKING.replace("?", "%s"), row)], lambda: store.insert(booking("loser", 1500, 2500))
        )

    async def test_lost_race_is_a_conflict(self) -> None:
        """A booking committed while the store was writing makes the store fail with UNAVAILABLE naming its window."""
        error: Any = await self.assertFailure(await self.lose_insert_race(attempts=5), BookingConflict)
        self.assertEqual(error.window, Slot(1000, 2000))

    async def test_lost_races_give_up_busy(self) -> None:
        """With no attempts left, a write that lost its race fails with BUSY, never storing an overlap."""
        error: Any = await self.assertFailure(await self.lose_insert_race(attempts=1), StaleBooking)
        self.assertEqual(as_geni_error(error).code, GeniCode.BUSY)

    async def test_update_behind_another_update(self) -> None:
        """
        An update from a version another process is replacing at the same
        moment fails with BUSY once that process commits; it never
        overwrites the other change.
        """
        schema = await scratch_schema(self)
        store = await started_store(self, in_schema(schema, "geniam-loser"))
        stored = await store.insert(booking("a", 100, 200))
        rival = (f"UPDATE {schema}.bookings SET error = 'rival', version = 2 WHERE sliver_key = %s", (stored.sliver_key,))
        outcome = await self.behind_rival(schema, [rival], lambda: store.update([replace(stored, error="mine")]))
        await self.assertFailure(outcome, StaleBooking)
        found: Any = await store.get(stored.sliver_urn)
        self.assertEqual((found.error, found.version), ("rival", 2))


class PostgresConcurrencyTests(TestCase):
    """Two stores with their own connection pools, as two AM processes, race on one database."""

    skip = SKIP

    async def two_stores(self) -> tuple[PostgresStore, PostgresStore]:
        dsn = in_schema(await scratch_schema(self))
        return await started_store(self, dsn, pool_size=4), await started_store(self, dsn, pool_size=4)

    async def test_one_slot_one_winner(self) -> None:
        """
        Forty inserts of overlapping slots at once through two pools:
        exactly one wins, the rest are UNAVAILABLE; queued on the island's
        lock, no write had to be run again.
        """
        first, second = await self.two_stores()
        with capturedLogs() as events:
            attempts = [
                (first if i % 2 else second).insert(booking(f"r{i}", 1000 + i, 2000 + i, slice_name=f"s{i}")) for i in range(40)
            ]
            outcomes: list[Any] = await DeferredList(attempts, consumeErrors=True)
        self.assertEqual([e for e in events if str(e.get("log_format", "")).startswith("lost a race")], [])
        winners = [value for ok, value in outcomes if ok]
        self.assertEqual(len(winners), 1)
        for ok, value in outcomes:
            if not ok:
                value.trap(BookingConflict)
                self.assertEqual(value.value.window, winners[0].slot)
        self.assertEqual(await first.count(), 1)
        self.assertEqual(await second.list_live(Slot(0, 5000)), winners)

    async def test_many_slots_never_overlap(self) -> None:
        """
        Two stores race on twenty slots, four overlapping candidates each:
        whatever wins, the stored live bookings never overlap and every
        success is stored.
        """
        first, second = await self.two_stores()
        await race_for_slots(self, first, second)

    async def test_racing_tickets_of_one_slice(self) -> None:
        """Two stores each write a ticket's hold of one slice (apart slots) at once: one is stored, the other is REFUSED."""
        first, second = await self.two_stores()
        attempts = [
            store.insert(booking(name, start, start + 100, AllocationState.HELD, held_by="ticket", allocation_expires=900.0))
            for store, name, start in ((first, "t1", 1000), (second, "t2", 3000))
        ]
        outcomes: list[Any] = await DeferredList(attempts, consumeErrors=True)
        self.assertEqual(sorted(ok for ok, _ in outcomes), [False, True])
        [failure] = [value for ok, value in outcomes if not ok]
        failure.trap(TicketHeld)
        self.assertEqual(len(await first.list_live(Slot(0, 5000))), 1)

    async def test_racing_updates(self) -> None:
        """Both stores update one booking from the same version at once: one succeeds, the other is BUSY."""
        first, second = await self.two_stores()
        stored = await first.insert(booking("a", 100, 200))
        outcomes: list[Any] = await DeferredList(
            [first.update([replace(stored, error="first")]), second.update([replace(stored, error="second")])],
            consumeErrors=True,
        )
        self.assertEqual(sorted(ok for ok, _ in outcomes), [False, True])
        [[winner]] = [value for ok, value in outcomes if ok]
        [failure] = [value for ok, value in outcomes if not ok]
        failure.trap(StaleBooking)
        self.assertEqual(await second.get(stored.sliver_urn), winner)

    async def test_racing_moves(self) -> None:
        """Two bookings moved onto one free slot at once, through two stores: one moves, the other is UNAVAILABLE."""
        first, second = await self.two_stores()
        a = await first.insert(booking("a", 100, 200))
        b = await first.insert(booking("b", 300, 400))
        outcomes: list[Any] = await DeferredList(
            [first.update([replace(a, slot=Slot(200, 260))]), second.update([replace(b, slot=Slot(240, 300))])],
            consumeErrors=True,
        )
        self.assertEqual(sorted(ok for ok, _ in outcomes), [False, True])
        [failure] = [value for ok, value in outcomes if not ok]
        failure.trap(BookingConflict)
        live = await second.list_live(Slot(0, 1000))
        for earlier, later in zip(live, live[1:]):
            self.assertLessEqual(earlier.slot.end, later.slot.start)


class PostgresConnectionTests(TestCase):
    """Connections that fail or drop."""

    async def test_cannot_connect(self) -> None:
        """A database that cannot be reached fails start with DBERROR and leaves nothing running."""
        store = PostgresStore(f"host=/nonexistent-{uuid.uuid4().hex} dbname=none connect_timeout=2", reactor=reactor)
        error: Any = await self.assertFailure(store.start(), StoreError)
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)
        self.assertIn("cannot connect", error.message)
        await store.stop()


class PostgresReconnectionTests(TestCase):
    """A connection the server dropped is replaced before a caller's statement runs on it."""

    skip = SKIP

    async def test_reconnects_before_the_call(self) -> None:
        """
        When the server ends the store's only connection, the next read and
        the next write both succeed on a reopened connection, and nothing is
        logged as an outage.
        """
        schema = await scratch_schema(self)
        store = await started_store(self, in_schema(schema, "geniam-reconnect"), pool_size=1)
        await store.insert(booking("a", 100, 200))
        for call in (lambda: store.count(), lambda: store.insert(booking("b", 300, 400))):
            ended = await run_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'geniam-reconnect'"
            )
            self.assertEqual(ended, [(True,)])
            await call()
            self.assertTrue(store.availability.available)
        self.assertEqual(await store.count(), 2)


class PostgresCancellationTests(TestCase):
    """Cancelling a call."""

    skip = SKIP

    async def test_cancelled_write_finishes(self) -> None:
        """
        A cancelled insert fails its caller with CancelledError at once;
        the write itself completes, and stopping the store waits for it.
        """
        dsn = in_schema(await scratch_schema(self))
        store = PostgresStore(dsn, reactor=reactor, pool_size=1)
        await store.start()
        d = store.insert(booking("a", 100, 200))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        await store.stop()
        again = await started_store(self, dsn)
        self.assertEqual(await again.count(), 1)


class PostgresOfflineTests(SynchronousTestCase):
    """What needs no database."""

    def test_not_started(self) -> None:
        """A store used before start fails with DBERROR rather than raising."""
        store = PostgresStore("dbname=none", reactor=object())
        error = self.failureResultOf(store.get(sliver("a")), StoreError).value
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)

    def test_count_of_no_states(self) -> None:
        """Counting bookings in no state needs no database."""
        store = PostgresStore("dbname=none", reactor=object())
        self.assertEqual(self.successResultOf(store.count([])), 0)

    def test_bad_sizes(self) -> None:
        """A pool without connections or a write without attempts is refused."""
        self.assertRaises(ValueError, PostgresStore, "dbname=none", pool_size=0)
        self.assertRaises(ValueError, PostgresStore, "dbname=none", attempts=0)


class SharedStatementTests(SynchronousTestCase):
    """The schema steps both stores run, and how shared statements reach psycopg2."""

    def run_open(self, found: int | None, migrations: dict[int, tuple[str, ...]]) -> list[str]:
        """Drive L{open_schema} against a database whose recorded version is C{found}; return the statements run."""
        ran: list[str] = []

        def execute(sql: str, params: tuple[Any, ...]) -> Result:
            ran.append(sql)
            return Result([(found,)] if sql.startswith("SELECT MAX") else [], 0)

        drive(open_schema(("CREATE TABLE t (x INTEGER)",), migrations, prelude=(("LOCK", ()),)), execute)
        return ran

    def test_creates_empty(self) -> None:
        """An empty database gets the prelude, the version table, the schema and its version."""
        ran = self.run_open(None, {})
        self.assertEqual(ran[0], "LOCK")
        self.assertIn("CREATE TABLE t (x INTEGER)", ran)
        self.assertTrue(ran[-1].startswith("INSERT INTO schema_version"))

    def test_upgrades_step_by_step(self) -> None:
        """An older database runs each later version's migration, in order, then records the version."""
        self.patch(schema_module, "SCHEMA_VERSION", 3)
        ran = self.run_open(1, {2: ("TWO",), 3: ("THREE",)})
        self.assertEqual(ran[-3:], ["TWO", "THREE", "UPDATE schema_version SET version = ?"])
        self.assertNotIn("CREATE TABLE t (x INTEGER)", ran)

    def test_refuses_newer(self) -> None:
        """A newer database is refused, naming both versions."""
        error = self.assertRaises(SchemaTooNew, self.run_open, SCHEMA_VERSION + 1, {})
        self.assertEqual((error.found, error.supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION))

    def test_placeholders(self) -> None:
        """Shared C{?} placeholders become psycopg2's C{%s}; a literal C{%} survives; no parameters, no formatting."""
        self.assertEqual(_arguments(("SELECT ? || '%'", ("a",))), ("SELECT %s || '%%'", ("a",)))
        self.assertEqual(_arguments(("SELECT '%'", ())), ("SELECT '%'",))

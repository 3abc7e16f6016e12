"""
Tests of L{geniam.store.schema}: a real version-1 database, made with the
statements version 1 used and holding bookings, opened by the current
store, which upgrades it in place: the bookings are intact and holds work.
A version-5 database holding an open transaction is upgraded to version 6:
the transaction stays open and outcomes are recorded. SQLite always; PostgreSQL when C{GENIAM_TEST_POSTGRES_DSN} is set.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from geniam.booking.errors import BookingConflict
from geniam.booking.transactions import Outcome, Transaction, outcome_of
from geniam.booking.values import AllocationState, Booking, OperationalState, UserKeys
from geniam.interfaces import IStore
from geniam.store.rows import booking_to_row
from geniam.store.schema import SCHEMA_VERSION
from tests.store.test_contract import KEY_A, UNDO_VERSION_6, booking, inline_sqlite_store
from tests.store.test_postgres import SKIP, in_schema, run_sql, scratch_schema, started_store

V1_SQLITE_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE bookings ( sliver_key TEXT PRIMARY KEY, island TEXT NOT NULL, slice_key TEXT NOT NULL, live INTEGER NOT NULL CHECK (live IN (0, 1)), sliver_urn TEXT NOT NULL, slice_urn TEXT NOT NULL, owner_urn TEXT NOT NULL, owner_email TEXT NOT NULL, start_time REAL NOT NULL, end_time REAL NOT NULL CHECK (end_time > start_time), allocation_state TEXT NOT NULL CHECK (allocation_state IN ('allocated', 'provisioned', 'ended', 'deleted', 'expired')), allocation_expires REAL NOT NULL, operational_state TEXT NOT NULL CHECK (operational_state IN ('notready', 'configuring', 'ready', 'failed', 'stopped')), error TEXT NOT NULL, users TEXT NOT NULL, controller TEXT, vlan_map TEXT NOT NULL, applied INTEGER NOT NULL CHECK (applied IN (0, 1)), created REAL NOT NULL, updated REAL NOT NULL, provisioned_at REAL, version INTEGER NOT NULL )",
    'CREATE INDEX bookings_live_start ON bookings (island, live, start_time)',
    'CREATE INDEX bookings_state_start ON bookings (island, allocation_state, start_time)',
    'CREATE INDEX bookings_state_end ON bookings (island, allocation_state, end_time)',
    'CREATE INDEX bookings_state_expires ON bookings (island, allocation_state, allocation_expires)',
    'CREATE INDEX bookings_slice ON bookings (island, slice_key, start_time)',
    'CREATE INDEX bookings_applied ON bookings (island) WHERE applied = 1',
    'CREATE TABLE slices ( island TEXT NOT NULL, slice_key TEXT NOT NULL, slice_urn TEXT NOT NULL, shutdown_at REAL NOT NULL, PRIMARY KEY (island, slice_key) )',
)
"""The statements that created a version-1 SQLite database."""

V1_POSTGRES_SCHEMA: tuple[str, ...] = (
    'CREATE EXTENSION IF NOT EXISTS btree_gist',
    'CREATE TYPE slot_range AS RANGE (subtype = double precision, subtype_diff = float8mi)',
    "CREATE TABLE bookings ( sliver_key TEXT PRIMARY KEY, island TEXT NOT NULL, slice_key TEXT NOT NULL, live INTEGER NOT NULL CHECK (live IN (0, 1)), sliver_urn TEXT NOT NULL, slice_urn TEXT NOT NULL, owner_urn TEXT NOT NULL, owner_email TEXT NOT NULL, start_time DOUBLE PRECISION NOT NULL, end_time DOUBLE PRECISION NOT NULL CHECK (end_time > start_time), allocation_state TEXT NOT NULL CHECK (allocation_state IN ('allocated', 'provisioned', 'ended', 'deleted', 'expired')), allocation_expires DOUBLE PRECISION NOT NULL, operational_state TEXT NOT NULL CHECK (operational_state IN ('notready', 'configuring', 'ready', 'failed', 'stopped')), error TEXT NOT NULL, users TEXT NOT NULL, controller TEXT, vlan_map TEXT NOT NULL, applied INTEGER NOT NULL CHECK (applied IN (0, 1)), created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, provisioned_at DOUBLE PRECISION, version INTEGER NOT NULL, CONSTRAINT bookings_live_apart EXCLUDE USING gist (island WITH =, slot_range(start_time, end_time) WITH &&) WHERE (live = 1) )",
    'CREATE INDEX bookings_live_start ON bookings (island, live, start_time)',
    'CREATE INDEX bookings_state_start ON bookings (island, allocation_state, start_time)',
    'CREATE INDEX bookings_state_end ON bookings (island, allocation_state, end_time)',
    'CREATE INDEX bookings_state_expires ON bookings (island, allocation_state, allocation_expires)',
    'CREATE INDEX bookings_slice ON bookings (island, slice_key, start_time)',
    'CREATE INDEX bookings_applied ON bookings (island) WHERE applied = 1',
    'CREATE TABLE slices ( island TEXT NOT NULL, slice_key TEXT NOT NULL, slice_urn TEXT NOT NULL, shutdown_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (island, slice_key) )',
)
"""The statements that created a version-1 PostgreSQL schema."""


def v1_bookings() -> list[Booking]:
    """An allocation and a provisioned booking with users, controller and VLAN map, as version 1 stored them."""
    allocated = booking("a", 1000, 2000, version=1)
    provisioned = booking(
        "p",
        3000,
        4000,
        AllocationState.PROVISIONED,
        operational_state=OperationalState.READY,
        users=(UserKeys("urn:publicid:IDN+geni.example.net+user+alice", (KEY_A,)),),
        controller="192.0.2.10:6633",
        vlan_map={"10": "0xffff"},
        applied=True,
        provisioned_at=5.0,
        version=3,
    )
    return [allocated, provisioned]


def v1_row(b: Booking) -> tuple[object, ...]:
    """The values of a version-1 row: every column but C{held_by}, the last."""
    return booking_to_row(b, "default", b.version)[:-1]


async def check_upgraded(case: SynchronousTestCase, store: IStore) -> None:
    """The version-1 bookings read back unchanged, and a hold keeps a booking off its slot."""
    for old in v1_bookings():
        found = await store.get(old.sliver_urn)
        case.assertEqual(found, old)
    held = await store.insert(booking("h", 5000, 6000, AllocationState.HELD, held_by="ticket", allocation_expires=5500.0))
    case.assertEqual((held.allocation_state, held.held_by), (AllocationState.HELD, "ticket"))
    try:
        await store.insert(booking("x", 5500, 6500, slice_name="other"))
    except BookingConflict:
        pass
    else:
        case.fail("a booking overlapping a hold was stored")
    case.assertEqual(await store.count(), 3)


class SQLiteUpgradeTests(SynchronousTestCase):
    """A version-1 SQLite database is upgraded in place."""

    def test_v1_database_upgraded(self) -> None:
        """Opening a version-1 database upgrades it to the current version, keeping its bookings."""
        path = self.mktemp()
        with sqlite3.connect(path) as db:
            for sql in V1_SQLITE_SCHEMA:
                db.execute(sql)
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version (version) VALUES (1)")
            for b in v1_bookings():
                db.execute(f"INSERT INTO bookings VALUES ({', '.join('?' * len(v1_row(b)))})", v1_row(b))
        db.close()
        self.assertRaises(sqlite3.IntegrityError, self._insert_hold_v1, path)
        store = inline_sqlite_store(self, path)
        self.successResultOf(Deferred.fromCoroutine(check_upgraded(self, store)))
        with sqlite3.connect(path) as db:
            self.assertEqual(db.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
        db.close()

    def _insert_hold_v1(self, path: str) -> None:
        """Version 1 refuses the held state (so the upgrade is what makes holds work)."""
        with sqlite3.connect(path) as db:
            row = v1_row(booking("h0", 7000, 8000, AllocationState.HELD))
            db.execute(f"INSERT INTO bookings VALUES ({', '.join('?' * len(row))})", row)
        db.close()


class PostgresUpgradeTests(TestCase):
    """A version-1 PostgreSQL schema is upgraded in place."""

    skip = SKIP

    async def test_v1_database_upgraded(self) -> None:
        """Opening a version-1 schema upgrades it to the current version, keeping its bookings."""
        dsn = in_schema(await scratch_schema(self))
        for sql in V1_POSTGRES_SCHEMA:
            await run_sql(sql, dsn=dsn)
        await run_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)", dsn=dsn)
        await run_sql("INSERT INTO schema_version (version) VALUES (1)", dsn=dsn)
        for b in v1_bookings():
            row = v1_row(b)
            await run_sql(f"INSERT INTO bookings VALUES ({', '.join(['%s'] * len(row))})", row, dsn=dsn)
        store = await started_store(self, dsn)
        await check_upgraded(self, store)
        self.assertEqual(await run_sql("SELECT version FROM schema_version", dsn=dsn), [(SCHEMA_VERSION,)])


SLICE_V5 = "urn:publicid:IDN+geni.example.net+slice+exp1"


def open_v5_transaction() -> Transaction:
    """A transaction as version 5 kept it: no identifier."""
    return Transaction(SLICE_V5, "urn:publicid:IDN+geni.example.net+user+alice", "", (), (), 900.0, 100.0, "<rspec/>")


async def check_version_6(case: SynchronousTestCase, store: IStore) -> None:
    """The transaction open under version 5 reads back without an identifier and closes; closes record outcomes."""
    found = await store.get_transaction(SLICE_V5)
    case.assertEqual(found, replace(open_v5_transaction(), version=1))
    await store.close_transaction(found, [])
    opened, _ = await store.save_transaction(replace(open_v5_transaction(), transaction_id="t6"), [], [])
    outcome = outcome_of(opened, Outcome.COMMITTED, 200.0, "CommitTransaction", 60.0, ["urn:x"])
    await store.close_transaction(opened, [], outcome)
    case.assertEqual(await store.get_transaction_outcome("t6"), outcome)
    await store.forget_transaction_outcomes(959.0)
    case.assertEqual(await store.get_transaction_outcome("t6"), outcome)
    await store.forget_transaction_outcomes(960.0)
    case.assertIsNone(await store.get_transaction_outcome("t6"))


class Version5UpgradeTests(TestCase):
    """A version-5 database with a transaction open is upgraded to version 6 in place, on both databases."""

    async def test_sqlite(self) -> None:
        """SQLite: the open transaction is kept, without an identifier; outcomes are recorded from then on."""
        path = self.mktemp()
        store = inline_sqlite_store(self, path)
        await store.save_transaction(open_v5_transaction(), [], [])
        await store.stop()
        with sqlite3.connect(path) as db:
            for sql in UNDO_VERSION_6:
                db.execute(sql)
            db.execute("UPDATE schema_version SET version = 5")
        db.close()
        await check_version_6(self, inline_sqlite_store(self, path))
        with sqlite3.connect(path) as db:
            self.assertEqual(db.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
        db.close()

    async def test_postgres(self) -> None:
        """PostgreSQL: the same."""
        if SKIP:
            raise SkipTest(SKIP)
        dsn = in_schema(await scratch_schema(self))
        store = await started_store(self, dsn)
        await store.save_transaction(open_v5_transaction(), [], [])
        await store.stop()
        for sql in (*UNDO_VERSION_6, "UPDATE schema_version SET version = 5"):
            await run_sql(sql, dsn=dsn)
        await check_version_6(self, await started_store(self, dsn))
        self.assertEqual(await run_sql("SELECT version FROM schema_version", dsn=dsn), [(SCHEMA_VERSION,)])

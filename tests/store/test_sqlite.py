"""
Tests for L{geniam.store.sqlite}: the IStore contract on real threads and
inline, plus what is SQLite's own (schema versions, WAL, indexes, two
writers on one file).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.booking.values import AllocationState
from geniam.errors import GeniCode
from geniam.managers.errors import as_geni_error
from geniam.store.errors import SchemaTooNew, StoreError
from geniam.store.schema import SCHEMA_VERSION
from geniam.store.sqlite import SQLiteStore
from tests.store.test_contract import InlineReactor, InlineThreadPool, StoreContractMixin, booking, inline_sqlite_store, race_for_slots, sliver


def query(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the file with a separate connection and return its rows."""
    db = sqlite3.connect(path)
    try:
        with db:
            return db.execute(sql, params).fetchall()
    finally:
        db.close()


class ThreadedSQLiteContractTests(StoreContractMixin, TestCase):
    """The IStore contract on an SQLite file, queries on adbapi's thread."""

    async def make_store(self, island: str = "default", share_with: SQLiteStore | None = None) -> SQLiteStore:
        path = share_with.path if share_with is not None else self.mktemp()
        store = SQLiteStore(path, island=island, reactor=reactor)
        await store.start()
        self.addCleanup(store.stop)
        return store


class InlineSQLiteContractTests(StoreContractMixin, TestCase):
    """The IStore contract on an SQLite file, queries run inline (as the island tests use it)."""

    async def make_store(self, island: str = "default", share_with: SQLiteStore | None = None) -> SQLiteStore:
        path = share_with.path if share_with is not None else self.mktemp()
        store = SQLiteStore(path, island=island, reactor=InlineReactor(), threadpool=InlineThreadPool())
        await store.start()
        self.addCleanup(store.stop)
        return store


class SQLiteSchemaTests(SynchronousTestCase):
    """The schema is versioned and the database set up as documented."""

    def test_records_version(self) -> None:
        """A new database records the current schema version."""
        path = self.mktemp()
        inline_sqlite_store(self, path)
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(SCHEMA_VERSION,)])

    def test_refuses_newer_schema(self) -> None:
        """A database from a newer version is refused with DBERROR and left alone."""
        path = self.mktemp()
        query(path, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
        query(path, "INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
        store = SQLiteStore(path, reactor=InlineReactor(), threadpool=InlineThreadPool())
        error = self.failureResultOf(store.start(), SchemaTooNew).value
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)
        self.assertIn(str(SCHEMA_VERSION + 1), error.message)
        self.successResultOf(store.stop())
        tables = {row[0] for row in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertEqual(tables, {"schema_version"})

    def test_reopen_keeps_data(self) -> None:
        """Bookings survive closing and reopening the file; the schema is not created twice."""
        path = self.mktemp()
        store = SQLiteStore(path, reactor=InlineReactor(), threadpool=InlineThreadPool())
        self.successResultOf(store.start())
        stored = self.successResultOf(store.insert(booking("a", 100, 200)))
        self.successResultOf(store.stop())
        again = inline_sqlite_store(self, path)
        self.assertEqual(self.successResultOf(again.get(sliver("a"))), stored)

    def test_wal_journal(self) -> None:
        """The database file uses a write-ahead log."""
        path = self.mktemp()
        inline_sqlite_store(self, path)
        self.assertEqual(query(path, "PRAGMA journal_mode"), [("wal",)])

    def test_not_started(self) -> None:
        """A store used before start fails with DBERROR rather than raising."""
        store = SQLiteStore(":memory:", reactor=InlineReactor(), threadpool=InlineThreadPool())
        error = self.failureResultOf(store.get(sliver("a")), StoreError).value
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)

    def test_database_error_is_dberror(self) -> None:
        """An SQLite error inside a query reaches the caller as DBERROR."""
        path = self.mktemp()
        store = inline_sqlite_store(self, path)
        query(path, "DROP TABLE slices")
        error = self.failureResultOf(store.is_shutdown("urn:publicid:IDN+a+slice+b"), StoreError).value
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)


class SQLiteIndexTests(SynchronousTestCase):
    """The queries behind Allocate and the periodic checks use indexes, not table scans."""

    def plan(self, sql: str, params: tuple[Any, ...]) -> str:
        path = self.mktemp()
        inline_sqlite_store(self, path)
        rows = query(path, "EXPLAIN QUERY PLAN " + sql, params)
        return " | ".join(str(row[-1]) for row in rows)

    def test_conflict_probe(self) -> None:
        """The conflict check walks the live-start index backwards."""
        plan = self.plan(
            "SELECT start_time, end_time FROM bookings WHERE island = ? AND live = 1 AND start_time < ?"
            " ORDER BY start_time DESC LIMIT 1",
            ("default", 10.0),
        )
        self.assertIn("bookings_live_start", plan)
        self.assertNotIn("TEMP B-TREE", plan)

    def test_due_queries(self) -> None:
        """The expiry and slot-end checks use their indexes."""
        for column in ("allocation_expires", "end_time"):
            plan = self.plan(f"SELECT * FROM bookings WHERE island = ? AND allocation_state = ? AND {column} <= ?", ("d", "x", 1.0))
            self.assertIn("USING INDEX", plan)


class SQLiteConcurrencyTests(TestCase):
    """The database itself keeps bookings apart, even across processes."""

    async def test_two_writers_one_slot(self) -> None:
        """
        Two stores on one file (as two AM processes) race to book the same
        slot many times over: exactly one booking wins each slot.
        """
        path = self.mktemp()
        first = SQLiteStore(path, reactor=reactor)
        second = SQLiteStore(path, reactor=reactor)
        await first.start()
        await second.start()
        self.addCleanup(first.stop)
        self.addCleanup(second.stop)
        live = await race_for_slots(self, first, second)
        self.assertEqual(await second.count([AllocationState.ALLOCATED]), len(live))

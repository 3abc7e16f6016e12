"""
Tests for L{geniam.store.operatorrows}: maintenance windows and the audit
log on a real SQLite file and, when C{GENIAM_TEST_POSTGRES_DSN} is set, on
PostgreSQL; and the schema migration that adds their tables.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from geniam.booking.maintenance import MaintenanceWindow
from geniam.booking.values import Slot
from geniam.store.operatorrows import AuditEntry
from geniam.store.schema import SCHEMA_VERSION
from geniam.store.sqlite import SQLiteStore
from tests.store.test_postgres import SKIP, in_schema, run_sql, scratch_schema, started_store
from tests.store.test_contract import UNDO_VERSION_6
from tests.store.test_sqlite import query


class OperatorRecordsMixin:
    """The maintenance and audit records of a store made by C{make_store}."""

    async def make_store(self, island: str = "default", share_with: Any = None) -> Any:
        raise NotImplementedError

    async def test_maintenance_windows(self) -> None:
        """Windows are stored, listed by start when they overlap the range asked for, and removed by name."""
        store = await self.make_store()
        late = MaintenanceWindow("w2", Slot(5000.0, 6000.0), "new switch", "urn:publicid:IDN+ops+user+ann", 10.0)
        early = MaintenanceWindow("w1", Slot(1000.0, 2000.0), "firmware", "urn:publicid:IDN+ops+user+bob", 11.0)
        await store.add_maintenance(late)
        await store.add_maintenance(early)
        self.assertEqual(await store.list_maintenance(Slot(0.0, 10000.0)), [early, late])  # type: ignore[attr-defined]
        # Half-open: a range ending at a window's start does not overlap it.
        self.assertEqual(await store.list_maintenance(Slot(2000.0, 5000.0)), [])  # type: ignore[attr-defined]
        self.assertEqual(await store.list_maintenance(Slot(1999.0, 5001.0)), [early, late])  # type: ignore[attr-defined]
        self.assertEqual(await store.remove_maintenance("w1"), early)  # type: ignore[attr-defined]
        self.assertIsNone(await store.remove_maintenance("w1"))
        self.assertEqual(await store.list_maintenance(Slot(0.0, 10000.0)), [late])  # type: ignore[attr-defined]

    async def test_islands_apart(self) -> None:
        """Another island sharing the database sees none of this island's windows or audit entries."""
        store = await self.make_store()
        other = await self.make_store("other", share_with=store)
        await store.add_maintenance(MaintenanceWindow("w", Slot(1.0, 2.0), "why", "op", 0.0))
        await store.add_audit(AuditEntry(1.0, "op", "cancel", "x"))
        self.assertEqual(await other.list_maintenance(Slot(0.0, 10.0)), [])  # type: ignore[attr-defined]
        self.assertEqual(await other.list_audit(), [])  # type: ignore[attr-defined]

    async def test_audit_log(self) -> None:
        """Entries come back oldest first, from a time on, at most as many as asked."""
        store = await self.make_store()
        entries = [AuditEntry(float(t), f"urn:op{t}", "cancel", f"detail {t}") for t in (30, 10, 20)]
        for entry in entries:
            await store.add_audit(entry)
        everything = sorted(entries, key=lambda e: e.at)
        self.assertEqual(await store.list_audit(), everything)  # type: ignore[attr-defined]
        self.assertEqual(await store.list_audit(15.0), everything[1:])  # type: ignore[attr-defined]
        self.assertEqual(await store.list_audit(0.0, 1), everything[:1])  # type: ignore[attr-defined]


class SQLiteOperatorRecordsTests(OperatorRecordsMixin, TestCase):
    """Maintenance windows and the audit log in SQLite."""

    async def make_store(self, island: str = "default", share_with: Any = None) -> SQLiteStore:
        path = share_with.path if share_with is not None else self.mktemp()
        store = SQLiteStore(path, island=island, reactor=reactor)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def test_upgrade_from_version_3(self) -> None:
        """A database of schema version 3 gains the operators' tables, its bookings kept."""
        path = self.mktemp()
        store = SQLiteStore(path, reactor=reactor)
        await store.start()
        await store.stop()
        query(path, "DROP TABLE maintenance")
        query(path, "DROP TABLE audit_log")
        for sql in UNDO_VERSION_6:
            query(path, sql)
        query(path, "UPDATE schema_version SET version = 3")
        store = await self.make_store(share_with=store)
        self.assertEqual(query(path, "SELECT version FROM schema_version"), [(SCHEMA_VERSION,)])
        await store.add_maintenance(MaintenanceWindow("w", Slot(1.0, 2.0), "why", "op", 0.0))
        self.assertEqual(len(await store.list_maintenance(Slot(0.0, 3.0))), 1)


class PostgresOperatorRecordsTests(OperatorRecordsMixin, TestCase):
    """Maintenance windows and the audit log in PostgreSQL."""

    skip = SKIP

    async def make_store(self, island: str = "default", share_with: Any = None) -> Any:
        dsn = share_with.dsn if share_with is not None else in_schema(await scratch_schema(self))
        return await started_store(self, dsn, island, pool_size=2)

    async def test_upgrade_from_version_3(self) -> None:
        """A database of schema version 3 gains the operators' tables."""
        schema = await scratch_schema(self)
        store = await started_store(self, in_schema(schema))
        await store.stop()
        await run_sql(f"DROP TABLE {schema}.maintenance")
        await run_sql(f"DROP TABLE {schema}.audit_log")
        for sql in UNDO_VERSION_6:
            await run_sql(sql, dsn=in_schema(schema))
        await run_sql(f"UPDATE {schema}.schema_version SET version = 3")
        store = await started_store(self, in_schema(schema))
        self.assertEqual(await run_sql(f"SELECT version FROM {schema}.schema_version"), [(SCHEMA_VERSION,)])
        await store.add_audit(AuditEntry(1.0, "op", "cancel", "x"))
        self.assertEqual(len(await store.list_audit()), 1)

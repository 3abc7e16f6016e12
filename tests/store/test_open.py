"""
Tests for L{geniam.store.open}: which store a C{--database} value builds.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.interfaces import IStore
from geniam.store.open import is_postgres_dsn, open_store
from geniam.store.postgres import PostgresStore
from geniam.store.sqlite import SQLiteStore


class IsPostgresDsnTests(SynchronousTestCase):
    """Connection strings are told apart from file paths."""

    def test_connection_strings(self) -> None:
        """URIs of both schemes and key=value strings naming a dbname are PostgreSQL."""
        for value in (
            "postgresql://am@db.example.net/geniam",
            "postgres://db.example.net:5433/geniam?sslmode=require",
            "POSTGRESQL://db/geniam",
            "host=/run/postgresql dbname=geniam",
            "dbname=geniam",
            "  dbname=geniam user=am  ",
        ):
            self.assertTrue(is_postgres_dsn(value), value)

    def test_paths(self) -> None:
        """File paths, even ones mentioning postgres, are not connection strings."""
        for value in ("am.sqlite", "/var/lib/geniam/am.sqlite", "postgres.sqlite", "./postgresql/am.db", ":memory:"):
            self.assertFalse(is_postgres_dsn(value), value)


class OpenStoreTests(SynchronousTestCase):
    """open_store builds, without starting, the store a value names."""

    def test_default_is_sqlite_in_data_dir(self) -> None:
        """No database (None or empty) means SQLite at <data_dir>/am.sqlite, for the given island and reactor."""
        clock = Clock()
        for database in (None, ""):
            store = open_store(database, "/srv/geniam", "island-1", clock)
            self.assertIsInstance(store, SQLiteStore)
            assert isinstance(store, SQLiteStore)
            self.assertEqual(store.path, os.path.join("/srv/geniam", "am.sqlite"))
            self.assertEqual(store.island, "island-1")
            self.assertIs(store._reactor, clock)
            self.assertTrue(verifyObject(IStore, store))

    def test_path_is_sqlite(self) -> None:
        """A path means SQLite at that path; the data folder is not used."""
        store = open_store("/var/lib/geniam/bookings.db", "/srv/geniam", "default", Clock())
        assert isinstance(store, SQLiteStore)
        self.assertEqual(store.path, "/var/lib/geniam/bookings.db")

    def test_dsn_is_postgres(self) -> None:
        """A connection string means PostgreSQL with that string, the island and the reactor."""
        clock = Clock()
        for dsn in ("postgresql://am@db.example.net/geniam", "host=/run/postgresql dbname=geniam"):
            store = open_store(dsn, "/srv/geniam", "island-2", clock)
            self.assertIsInstance(store, PostgresStore)
            assert isinstance(store, PostgresStore)
            self.assertEqual(store.dsn, dsn)
            self.assertEqual(store.island, "island-2")
            self.assertIs(store._reactor, clock)
            self.assertTrue(verifyObject(IStore, store))

    def test_nothing_opened(self) -> None:
        """Building a store touches nothing: no file is made and no connection is tried."""
        folder = self.mktemp()
        open_store(None, folder, "default", Clock())
        open_store("host=/nonexistent dbname=none", folder, "default", Clock())
        self.assertFalse(os.path.exists(folder))

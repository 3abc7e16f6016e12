# -*- test-case-name: tests.store.test_open -*-
"""
Choose and build the booking store a C{--database} value names.

Nothing or a file path means SQLite (the embedded default); a libpq
connection string (a C{postgresql://} or C{postgres://} URI, or
C{key=value} pairs naming a C{dbname}) means PostgreSQL, for several
aggregate-manager processes sharing one database. The store is built, not
started: its owner calls C{start()}.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geniam.interfaces import IDriverLease, IStore
from geniam.managers.driver import AlwaysLease
from geniam.store.pglease import PostgresLease
from geniam.store.postgres import PostgresStore
from geniam.store.sqlite import SQLiteStore

DEFAULT_SQLITE_NAME = "am.sqlite"
"""The SQLite file made in the data folder when no database is named."""

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(database: str) -> bool:
    """True if C{database} is a PostgreSQL connection string rather than a file path."""
    value = database.strip()
    return value.lower().startswith(_POSTGRES_SCHEMES) or "dbname=" in value


def open_store(database: str | None, data_dir: str | os.PathLike[str], island: str, reactor: Any) -> IStore:
    """
    Build the store for C{database}.

    @param database: a PostgreSQL connection string, an SQLite file path,
        or None (or empty) for C{<data_dir>/am.sqlite}.
    @param data_dir: the folder of the default SQLite file.
    @param island: the island whose bookings the store holds.
    @param reactor: the reactor the store runs on.
    @return: an unstarted L{geniam.store.postgres.PostgresStore} or
        L{geniam.store.sqlite.SQLiteStore}.
    """
    if database and is_postgres_dsn(database):
        return PostgresStore(database.strip(), island=island, reactor=reactor)
    path = database or os.fspath(Path(data_dir) / DEFAULT_SQLITE_NAME)
    return SQLiteStore(path, island=island, reactor=reactor)


def driver_lease(store: IStore, reactor: Any) -> IDriverLease:
    """
    The lease that makes one process the gateway driver of C{store}'s
    island: the island's advisory lock on PostgreSQL, which several
    processes share; always held on SQLite, which one process opens.
    """
    if isinstance(store, PostgresStore):
        return PostgresLease(reactor, store.dsn, store.island)
    return AlwaysLease()

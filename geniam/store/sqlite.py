# -*- test-case-name: tests.store.test_sqlite -*-
"""
The embedded booking store: SQLite through L{twisted.enterprise.adbapi}.

One connection on one thread does every read and write, so the process
has a single writer. Each change runs in a C{BEGIN IMMEDIATE} transaction,
which takes SQLite's write lock before reading: the conflict check and the
write that depends on it cannot interleave with another writer, in this
process or another one sharing the file (which waits up to
C{busy_timeout} seconds for the lock). The journal is in WAL mode.

Conflicts are found through the index on C{(island, live, start_time)}:
because the live bookings of an island never overlap (this store's
invariant), the only live booking that can overlap C{[start, end)} is the
one with the latest start before C{end}, found in one index probe however
many bookings the database holds. The statements are
L{geniam.store.rows.BookingQueries}, shared with the PostgreSQL store
through L{geniam.store.rows.SQLStore}.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from geniam.errors import GeniError
from geniam.interfaces import IStore
from geniam.store.errors import StoreError
from geniam.store.operatorrows import OperatorRecords
from geniam.store.rows import READ, SNAPSHOT, WRITE, Result, SQLStore, Statement, Steps, drive
from geniam.store.schema import SQLITE_MIGRATIONS, SQLITE_SCHEMA, open_schema
from geniam.store.transactions import TransactionStore

T = TypeVar("T")

_BEGIN = {READ: None, SNAPSHOT: "BEGIN", WRITE: "BEGIN IMMEDIATE"}
"""How each kind of operation begins: reads of several statements see one
snapshot; writes take the write lock before they read."""


def _configure(connection: sqlite3.Connection) -> None:
    """Set up a new connection: WAL journal, normal sync, foreign keys."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")


def _thd_execute(cursor: Any, sql: str, params: tuple[Any, ...]) -> Result:
    """Run one statement; return its rows and how many rows it changed."""
    cursor.execute(sql, params)
    rows = cursor.fetchall() if cursor.description is not None else []
    return Result(rows, cursor.rowcount)


class _ConnectionPool(adbapi.ConnectionPool):
    """An adbapi pool that runs on the thread pool passed in, if any."""

    def __init__(self, threadpool: Any, *args: Any, **kw: Any) -> None:
        self._threadpool_override = threadpool
        super().__init__(*args, **kw)

    def start(self) -> None:
        if self._threadpool_override is not None:
            self.threadpool = self._threadpool_override
        super().start()


@implementer(IStore)
class SQLiteStore(TransactionStore, OperatorRecords, SQLStore):
    """
    L{IStore} on an SQLite file (or C{":memory:"}).

    @param path: the database file.
    @param island: the island whose bookings this store holds; several
        islands may share one file.
    @param reactor: an L{IReactorThreads} and L{IReactorCore}; the global
        reactor if None.
    @param threadpool: a thread pool to run the queries on instead of
        adbapi's own one-thread pool (tests pass one that runs inline).
    @param busy_timeout: how long a write waits for another process's lock.
    """

    _pool: adbapi.ConnectionPool | None

    log = Logger()

    def __init__(
        self,
        path: str,
        island: str = "default",
        reactor: Any = None,
        threadpool: Any = None,
        busy_timeout: float = 10.0,
    ) -> None:
        super().__init__(island, path)
        self.path = path
        self._reactor = reactor
        self._threadpool = threadpool
        self._busy_timeout = busy_timeout

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r} island={self.island!r}>"

    # Running work on the connection.

    def _run(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None:
            return fail(StoreError("the booking store is not open"))
        d: Deferred[T] = self._pool.runWithConnection(self._thd_guard, work, *args)
        self._in_flight.add(d)

        def done(result: Any) -> Any:
            self._in_flight.discard(d)
            return result

        d.addBoth(done)
        return d

    def _thd_guard(self, connection: Any, work: Callable[..., T], *args: Any) -> T:
        try:
            return work(connection.cursor(), *args)
        except GeniError:
            raise
        except sqlite3.Error as e:
            raise StoreError(f"database error: {e}") from e

    def _steps(self, make: Callable[[], Steps[T]], kind: str, contended: str | None = None) -> Deferred[T]:
        """
        Run the operation C{make()} builds on the connection, in a
        transaction begun as C{kind} needs; adbapi commits once it returns
        and rolls back if it raises. An operation that needs no statement
        completes at once. With one writer, C{contended} is not needed.
        """
        steps = make()
        try:
            first = next(steps)
        except StopIteration as done:
            return succeed(done.value)
        except GeniError:
            return fail()
        return self._run(self._thd_steps, steps, first, _BEGIN[kind])

    @staticmethod
    def _thd_steps(cursor: Any, steps: Steps[T], first: Statement, begin: str | None) -> T:
        """
        Run the steps, in a transaction begun with C{begin} if given, and
        commit it here, so that a failing COMMIT (the disk is full, the
        file cannot be written) is a database error like any other.
        """
        if begin is None:
            return drive(steps, lambda sql, params: _thd_execute(cursor, sql, params), first)
        cursor.execute(begin)
        try:
            result = drive(steps, lambda sql, params: _thd_execute(cursor, sql, params), first)
            cursor.execute("COMMIT")
        except BaseException:
            if cursor.connection.in_transaction:
                try:
                    cursor.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return result

    # Lifecycle.

    def start(self) -> Deferred[None]:
        """Open the database and create or upgrade its schema (see L{IStore.start})."""
        if self._pool is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor as global_reactor

                reactor = global_reactor
            pool = _ConnectionPool(
                self._threadpool,
                "sqlite3",
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout,
                cp_min=1,
                cp_max=1,
                cp_noisy=False,
                cp_openfun=_configure,
                cp_reactor=reactor,
            )
            pool.start()
            self._pool = pool
        return self._steps(lambda: open_schema(SQLITE_SCHEMA, SQLITE_MIGRATIONS), WRITE)

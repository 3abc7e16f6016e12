# -*- test-case-name: tests.store.test_postgres -*-
"""
The shared booking store: PostgreSQL through txpostgres, for several
aggregate-manager processes using one database.

The database itself keeps the live bookings of an island apart, whoever
writes them: the C{bookings} table carries exclusion constraints
(L{geniam.store.schema.NO_OVERLAP_CONSTRAINT} between slices,
C{EXCLUDE USING gist (island WITH =, slice_key WITH <>,
slot_range(start_time, end_time) WITH &&) WHERE (live = 1)}, and
L{geniam.store.schema.IN_SLICE_CONSTRAINT} within one, which lets only a
ticket's hold and a sliver of its slice overlap), over an exact range of
the stored doubles (C{btree_gist} supplies equality on text). Two
transactions writing overlapping live slots cannot both commit: the later
one fails with SQLSTATE 23P01. A unique partial index
(L{geniam.store.schema.ONE_TICKET_INDEX}) keeps a slice to one live
ticket's hold (23505).

Why the constraint, rather than a transaction-scoped advisory lock per
island, is the guarantee: a lock protects only writers that take it (a
second code path, an older release, a hand-written fix-up may not), while
the constraint holds for every writer and is visible in the schema.

Each write also takes the island's advisory lock (L{island_lock}) first,
for speed rather than safety. PostgreSQL checks an exclusion constraint by
waiting for any uncommitted row that conflicts; two transactions inserting
overlapping slots at once each see the other's row and wait on each other
until the deadlock detector aborts one, a second later. Queued on the lock,
the writers of one island (who all want the same whole island) run one
after the other and never meet inside the constraint's check. Reads take
no lock.

Each operation runs the same statements as the SQLite store
(L{geniam.store.rows.BookingQueries}, through
L{geniam.store.rows.SQLStore}) in one READ COMMITTED transaction.
They look for a conflicting live booking first, so a conflict with a
committed booking fails with L{geniam.booking.BookingConflict} naming its
window. If the constraint still refuses the write (a writer without the
lock committed a conflicting row meanwhile), or the sliver's unique key
or the one-ticket index does (23505), or a deadlock (40P01) or
serialization failure (40001) aborts it, the transaction is rolled back
and run again, up to C{attempts} times; the fresh attempt sees the other
writer's row and fails with the L{geniam.booking.BookingConflict},
L{geniam.store.errors.DuplicateBooking} or
L{geniam.store.errors.TicketHeld} naming it. An update writes a row
only if its version is still the one it read, so concurrent updates never
overwrite each other. Reads of several statements (L{PostgresStore.due},
L{PostgresStore.next_boundary}) run in a REPEATABLE READ, READ ONLY
transaction, single-statement reads outside one.

Connections come from a fixed-size pool of txpostgres connections on the
reactor passed in (L{geniam.store.pgpool.LivePool}): a connection the
server dropped is reopened before a caller's statement runs on it, and a
statement that lost its connection before it could have been applied runs
again on a fresh one, so the first call after the database is back
succeeds. While the database is down, calls fail with DBERROR.

Schema creation takes another advisory lock (L{SCHEMA_LOCK}), so processes
starting together on an empty database create it once. The schema goes to
the first schema of the connection's C{search_path} (set it in the DSN with
C{options=-csearch_path=...} to keep several deployments in one database);
the C{btree_gist} extension is created if it is missing, which needs the
privileges C{CREATE EXTENSION} asks for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import psycopg2
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionClosed
from twisted.logger import Logger
from zope.interface import implementer

from geniam.errors import GeniError
from geniam.interfaces import IStore
from geniam.store.errors import StaleBooking, StoreError
from geniam.store.pgpool import LivePool, Progress, describe, in_transaction
from geniam.store.operatorrows import OperatorRecords
from geniam.store.rows import READ, SNAPSHOT, WRITE, Result, SQLStore, Statement, Steps
from geniam.store.schema import POSTGRES_MIGRATIONS, POSTGRES_SCHEMA, open_schema
from geniam.store.transactions import TransactionStore

T = TypeVar("T")

SCHEMA_LOCK = 0x67656E69616D
"""The advisory lock key held while the schema is created or upgraded."""

RETRIED_SQLSTATES = frozenset({"23P01", "23505", "40P01", "40001"})
"""Errors after which a write is run again from the start: a concurrent writer won a race."""

_SCHEMA = "schema"
"""A schema change: a plain transaction, run again after lost races."""


def island_lock(island: str) -> int:
    """The advisory lock key (a signed 64-bit integer) a write of C{island} holds."""
    digest = hashlib.blake2b(f"geniam island {island}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """Turn the shared statements' C{?} placeholders into psycopg2's C{%s}."""
    return sql.replace("%", "%%").replace("?", "%s")


def _arguments(statement: Statement) -> tuple[Any, ...]:
    """The arguments of C{cursor.execute} for a shared statement."""
    sql, params = statement
    return (_pyformat(sql), params) if params else (sql,)


@implementer(IStore)
class PostgresStore(TransactionStore, OperatorRecords, SQLStore):
    """
    L{IStore} on a PostgreSQL database, shared by any number of processes.

    @param dsn: a libpq connection string (C{"host=... dbname=..."} or a
        C{postgresql://} URI).
    @param island: the island whose bookings this store holds; several
        islands may share one database.
    @param reactor: an L{IReactorFDSet} and L{IReactorTime}; the global
        reactor if None.
    @param pool_size: how many connections to open (fixed).
    @param attempts: how many times a write runs when concurrent writers
        keep winning races (see the module docstring).
    """

    _pool: LivePool | None

    log = Logger()

    def __init__(
        self,
        dsn: str,
        island: str = "default",
        reactor: Any = None,
        pool_size: int = 4,
        attempts: int = 5,
    ) -> None:
        if pool_size < 1 or attempts < 1:
            raise ValueError("pool_size and attempts must be at least 1")
        super().__init__(island, "PostgreSQL")
        self.dsn = dsn
        self._reactor = reactor
        self._pool_size = pool_size
        self._attempts = attempts
        self._island_lock = island_lock(island)

    def __repr__(self) -> str:
        return f"<PostgresStore island={self.island!r}>"

    # Running statements.

    def _steps(self, make: Callable[[], Steps[T]], kind: str, contended: str | None = None) -> Deferred[T]:
        """
        Run the operation C{make()} builds: a C{READ} of one statement
        outside a transaction, a C{SNAPSHOT} in a read-only snapshot, a
        C{WRITE} in a transaction holding the island's lock, a C{_SCHEMA}
        change in a plain transaction; both of the last run again after
        lost races. C{contended} names the sliver a write gives up on as
        BUSY.
        """
        steps = make()
        try:
            first = next(steps)
        except StopIteration as done:
            return succeed(done.value)
        except GeniError:
            return fail()
        if self._pool is None:
            return fail(StoreError("the booking store is not open"))
        work = Deferred.fromCoroutine(self._run(self._pool, make, steps, first, kind, contended))
        self._in_flight.add(work)

        def finished(result: Any) -> Any:
            self._in_flight.discard(work)
            return result

        # Cancelling the caller's Deferred fails it at once but leaves the
        # statement to finish: txpostgres cannot abandon a query midway.
        outcome: Deferred[T] = Deferred()
        work.addBoth(finished).addCallbacks(outcome.callback, outcome.errback)
        return outcome

    async def _run(
        self,
        pool: LivePool,
        make: Callable[[], Steps[T]],
        steps: Steps[T],
        first: Statement,
        kind: str,
        contended: str | None,
    ) -> T:
        pending = [(steps, first)]

        def next_attempt() -> tuple[Steps[T], Statement]:
            if pending:
                return pending.pop()
            again = make()
            return again, next(again)

        async def work(connection: Any, progress: Progress) -> T:
            attempt_steps, attempt_first = next_attempt()
            if kind == READ:
                return await self._read(connection, attempt_steps, attempt_first)
            return await in_transaction(
                connection, progress, lambda cursor: self._drive(cursor, attempt_steps, attempt_first, kind)
            )

        attempt = 1
        while True:
            try:
                return await pool.run(work, read_only=kind in (READ, SNAPSHOT))
            except GeniError:
                raise
            except psycopg2.Error as e:
                if kind not in (WRITE, _SCHEMA) or e.pgcode not in RETRIED_SQLSTATES:
                    raise StoreError(f"database error: {describe(e)}") from e
                if attempt >= self._attempts:
                    if contended is not None:
                        raise StaleBooking(contended) from e
                    raise StoreError(f"database error after {attempt} attempts: {describe(e)}") from e
                self.log.debug("lost a race ({code}); running the write again", code=e.pgcode)
                attempt += 1
            except ConnectionClosed as e:
                raise StoreError("the database connection was lost") from e

    @staticmethod
    async def _read(connection: Any, steps: Steps[T], first: Statement) -> T:
        rows = await connection.runQuery(*_arguments(first))
        try:
            steps.send(Result(list(rows), len(rows)))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        raise StoreError("a read needed more than one statement")

    async def _drive(self, cursor: Any, steps: Steps[T], first: Statement, kind: str) -> T:
        if kind == SNAPSHOT:
            await cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        elif kind == WRITE:
            await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self._island_lock,))
        statement = first
        try:
            while True:
                await cursor.execute(*_arguments(statement))
                rows = cursor.fetchall() if cursor.description is not None else []
                statement = steps.send(Result(rows, cursor.rowcount))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # Lifecycle.

    def start(self) -> Deferred[None]:
        """Connect, then create or upgrade the schema (see L{IStore.start})."""
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        if self._pool is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor as global_reactor

                reactor = global_reactor
            pool = LivePool(reactor, self._pool_size, self.dsn)
            await pool.start()
            self._pool = pool
        await self._steps(
            lambda: open_schema(POSTGRES_SCHEMA, POSTGRES_MIGRATIONS, prelude=(("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,)),)),
            _SCHEMA,
        )

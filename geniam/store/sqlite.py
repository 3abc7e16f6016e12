# -*- test-case-name: tests.test_store_sqlite -*-
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
many bookings the database holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from geniam.booking import AllocationState, Booking, BookingConflict, Due, Slot, urn_key
from geniam.errors import GeniError
from geniam.interfaces import IStore
from geniam.store.errors import DuplicateBooking, SchemaTooNew, StaleBooking, StoreError, UnknownBooking
from geniam.store.rows import ALL_COLUMNS, SELECT_LIST, booking_to_row, row_to_booking
from geniam.store.schema import SCHEMA_VERSION, SQLITE_MIGRATIONS, SQLITE_SCHEMA

T = TypeVar("T")

_INSERT = f"INSERT INTO bookings ({', '.join(ALL_COLUMNS)}) VALUES ({', '.join('?' for _ in ALL_COLUMNS)})"
_UPDATE = f"UPDATE bookings SET {', '.join(c + ' = ?' for c in ALL_COLUMNS)} WHERE sliver_key = ? AND island = ?"
_SELECT = f"SELECT {SELECT_LIST} FROM bookings"
_PROVISIONED = AllocationState.PROVISIONED.value
_ALLOCATED = AllocationState.ALLOCATED.value


def _configure(connection: sqlite3.Connection) -> None:
    """Set up a new connection: WAL journal, normal sync, foreign keys."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")


def _thd_conflict(cursor: Any, island: str, slot: Slot, exclude: Sequence[str]) -> Slot | None:
    """
    Return the slot of a live booking overlapping C{slot} (other than
    C{exclude}, sliver keys), or None.
    """
    sql = "SELECT start_time, end_time FROM bookings WHERE island = ? AND live = 1 AND start_time < ?"
    params: list[Any] = [island, slot.end]
    if exclude:
        sql += f" AND sliver_key NOT IN ({', '.join('?' for _ in exclude)})"
        params.extend(exclude)
    sql += " ORDER BY start_time DESC LIMIT 1"
    row = cursor.execute(sql, params).fetchone()
    if row is not None and row[1] > slot.start:
        return Slot(row[0], row[1])
    return None


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
class SQLiteStore:
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

    log = Logger()

    def __init__(
        self,
        path: str,
        island: str = "default",
        reactor: Any = None,
        threadpool: Any = None,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = path
        self.island = island
        self._reactor = reactor
        self._threadpool = threadpool
        self._busy_timeout = busy_timeout
        self._pool: adbapi.ConnectionPool | None = None
        self._in_flight: set[Deferred[Any]] = set()

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
        return self._run(self._thd_open)

    def _thd_open(self, cursor: Any) -> None:
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = cursor.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if found is None:
            for statement in SQLITE_SCHEMA:
                cursor.execute(statement)
            cursor.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            return
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in SQLITE_MIGRATIONS[version]:
                cursor.execute(statement)
        cursor.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def stop(self) -> Deferred[None]:
        """Wait for queries in flight, then close the connection."""
        pool, self._pool = self._pool, None
        waiting: Deferred[Any] = DeferredList(list(self._in_flight), consumeErrors=True)

        def close(_: object) -> None:
            if pool is not None:
                pool.close()

        return waiting.addCallback(close)

    # Writes.

    def insert(self, booking: Booking) -> Deferred[Booking]:
        """Store a new booking unless it conflicts (see L{IStore.insert})."""
        return self._run(self._thd_insert, booking)

    def _thd_insert(self, cursor: Any, booking: Booking) -> Booking:
        cursor.execute("BEGIN IMMEDIATE")
        if cursor.execute("SELECT 1 FROM bookings WHERE sliver_key = ?", (booking.sliver_key,)).fetchone():
            raise DuplicateBooking(booking.sliver_urn)
        if booking.live:
            conflict = _thd_conflict(cursor, self.island, booking.slot, ())
            if conflict is not None:
                raise BookingConflict(conflict)
        cursor.execute(_INSERT, booking_to_row(booking, self.island, 1))
        return replace(booking, version=1)

    def update(self, bookings: Sequence[Booking]) -> Deferred[list[Booking]]:
        """Replace bookings, all or none, with version and conflict checks (see L{IStore.update})."""
        return self._run(self._thd_update, list(bookings))

    def _thd_update(self, cursor: Any, bookings: list[Booking]) -> list[Booking]:
        keys = [b.sliver_key for b in bookings]
        if len(set(keys)) != len(keys):
            raise StoreError("the same booking appears twice in one update")
        cursor.execute("BEGIN IMMEDIATE")
        for booking in bookings:
            row = cursor.execute(
                "SELECT version FROM bookings WHERE sliver_key = ? AND island = ?", (booking.sliver_key, self.island)
            ).fetchone()
            if row is None:
                raise UnknownBooking(booking.sliver_urn)
            if row[0] != booking.version:
                raise StaleBooking(booking.sliver_urn)
        for index, booking in enumerate(bookings):
            if not booking.live:
                continue
            conflict = _thd_conflict(cursor, self.island, booking.slot, keys)
            if conflict is None:
                conflict = next((o.slot for o in bookings[:index] if o.live and o.slot.overlaps(booking.slot)), None)
            if conflict is not None:
                raise BookingConflict(conflict)
        stored = []
        for booking in bookings:
            new = replace(booking, version=booking.version + 1)
            cursor.execute(_UPDATE, booking_to_row(new, self.island, new.version) + (new.sliver_key, self.island))
            stored.append(new)
        return stored

    def set_shutdown(self, slice_urn: str, when: float) -> Deferred[bool]:
        """Mark the slice shut down; fire with True unless it already was."""
        return self._run(self._thd_set_shutdown, slice_urn, when)

    def _thd_set_shutdown(self, cursor: Any, slice_urn: str, when: float) -> bool:
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(
            "INSERT OR IGNORE INTO slices (island, slice_key, slice_urn, shutdown_at) VALUES (?, ?, ?, ?)",
            (self.island, urn_key(slice_urn), slice_urn, when),
        )
        return bool(cursor.rowcount == 1)

    # Reads.

    def _thd_select(self, cursor: Any, where: str, params: Sequence[Any]) -> list[Booking]:
        return [row_to_booking(row) for row in cursor.execute(f"{_SELECT} WHERE {where}", params).fetchall()]

    def get(self, sliver_urn: str) -> Deferred[Booking | None]:
        """Fire with the booking of this sliver, or None."""

        def thd_get(cursor: Any) -> Booking | None:
            found = self._thd_select(cursor, "sliver_key = ? AND island = ?", (urn_key(sliver_urn), self.island))
            return found[0] if found else None

        return self._run(thd_get)

    def list_by_slice(self, slice_urn: str, live_only: bool = False) -> Deferred[list[Booking]]:
        """Fire with the slice's bookings by slot start."""
        where = "island = ? AND slice_key = ?" + (" AND live = 1" if live_only else "")
        return self._run(self._thd_select, where + " ORDER BY start_time, created", (self.island, urn_key(slice_urn)))

    def list_live(self, window: Slot, limit: int | None = None) -> Deferred[list[Booking]]:
        """Fire with the live bookings overlapping C{window}, by start."""
        where = "island = ? AND live = 1 AND start_time < ? AND end_time > ? ORDER BY start_time"
        params: list[Any] = [self.island, window.end, window.start]
        if limit is not None:
            where += " LIMIT ?"
            params.append(int(limit))
        return self._run(self._thd_select, where, params)

    def list_applied(self) -> Deferred[list[Booking]]:
        """Fire with the bookings whose configuration is on the gateway."""
        return self._run(self._thd_select, "island = ? AND applied = 1 ORDER BY start_time", (self.island,))

    def due(self, now: float, limit: int = 500) -> Deferred[Due]:
        """Fire with the bookings needing an action at C{now} (see L{geniam.booking.due})."""
        return self._run(self._thd_due, now, limit)

    def _thd_due(self, cursor: Any, now: float, limit: int) -> Due:
        cursor.execute("BEGIN")
        island = self.island
        return Due(
            expire=tuple(
                self._thd_select(
                    cursor,
                    "island = ? AND allocation_state = ? AND allocation_expires <= ? ORDER BY allocation_expires LIMIT ?",
                    (island, _ALLOCATED, now, limit),
                )
            ),
            end=tuple(
                self._thd_select(
                    cursor,
                    "island = ? AND allocation_state = ? AND end_time <= ? ORDER BY end_time LIMIT ?",
                    (island, _PROVISIONED, now, limit),
                )
            ),
            start=tuple(
                self._thd_select(
                    cursor,
                    "island = ? AND allocation_state = ? AND start_time <= ? AND end_time > ?"
                    " AND operational_state IN ('notready', 'configuring', 'failed') ORDER BY start_time LIMIT ?",
                    (island, _PROVISIONED, now, now, limit),
                )
            ),
            cleanup=tuple(
                self._thd_select(
                    cursor,
                    "island = ? AND applied = 1 AND (live = 0 OR operational_state = 'stopped') ORDER BY updated LIMIT ?",
                    (island, limit),
                )
            ),
        )

    def next_boundary(self, after: float) -> Deferred[float | None]:
        """Fire with the next moment a live booking changes by itself, or None."""
        return self._run(self._thd_next_boundary, after)

    def _thd_next_boundary(self, cursor: Any, after: float) -> float | None:
        cursor.execute("BEGIN")
        queries = (
            ("allocation_expires", _ALLOCATED),
            ("start_time", _PROVISIONED),
            ("end_time", _PROVISIONED),
        )
        moments = []
        for column, state in queries:
            row = cursor.execute(
                f"SELECT MIN({column}) FROM bookings WHERE island = ? AND allocation_state = ? AND {column} > ?",
                (self.island, state, after),
            ).fetchone()
            if row[0] is not None:
                moments.append(float(row[0]))
        return min(moments) if moments else None

    def is_shutdown(self, slice_urn: str) -> Deferred[bool]:
        """Fire with True if the slice has been shut down."""

        def thd_is_shutdown(cursor: Any) -> bool:
            row = cursor.execute(
                "SELECT 1 FROM slices WHERE island = ? AND slice_key = ?", (self.island, urn_key(slice_urn))
            ).fetchone()
            return row is not None

        return self._run(thd_is_shutdown)

    def count(self, states: Iterable[AllocationState | str] | None = None) -> Deferred[int]:
        """Fire with the number of bookings, in C{states} if given."""
        sql = "SELECT COUNT(*) FROM bookings WHERE island = ?"
        params: list[Any] = [self.island]
        if states is not None:
            wanted = [AllocationState(s).value for s in states]
            if not wanted:
                return succeed(0)
            sql += f" AND allocation_state IN ({', '.join('?' for _ in wanted)})"
            params.extend(wanted)

        def thd_count(cursor: Any) -> int:
            return int(cursor.execute(sql, params).fetchone()[0])

        return self._run(thd_count)


# -*- test-case-name: tests.store.test_postgres,tests.loopback.test_store_recovery -*-
"""
A fixed-size pool of txpostgres connections that hands out live ones.

A connection the server dropped (the database restarted, an administrator
ended the session, the network failed) is found and replaced before a
caller's statement runs on it, not by failing that statement:

 - at checkout, a connection known to be closed (the server's goodbye
   arrived while it was idle) is reopened first;
 - a statement that fails because the connection died is run again once on
   a reopened connection when it is known not to have been applied: a
   read, or a transaction that had not yet asked to commit (the server
   rolls back the transaction of a session that ends).

Only if reopening fails does the caller get
L{geniam.store.errors.StoreError} ("the database is unreachable: ..."),
so the first call after the database is back succeeds. Nothing reconnects
in the background and nothing is logged here: the store reports an outage
and its end (L{geniam.store.health.Availability}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg2
from psycopg2.extensions import parse_dsn
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.task import Cooperator
from txpostgres.txpostgres import Connection

from geniam.store.errors import StoreError

T = TypeVar("T")


def describe(error: BaseException) -> str:
    """The first line of a database error's message."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class _Connection(Connection):  # type: ignore[misc]
    """
    A txpostgres connection that takes a server that went away while the
    connection was idle as the end of the connection, instead of raising it
    into the reactor (which would log it as an unhandled error).
    """

    def doRead(self) -> Any:
        try:
            return super().doRead()
        except (psycopg2.Error, ValueError) as e:  # ValueError: the socket is gone (descriptor -1)
            return e

    @property
    def alive(self) -> bool:
        """Whether the connection is open as far as anyone knows (psycopg2's flag, and a socket)."""
        connection = self.pollable()
        if connection is None or connection.closed:
            return False
        try:
            return bool(connection.fileno() >= 0)
        except psycopg2.Error:
            return False

    def discard(self) -> None:
        """Close it, whatever state it is in."""
        if self.pollable() is not None:
            try:
                self.close()
            except psycopg2.Error:
                pass


class Progress:
    """
    How far one attempt of a transaction got, so that a lost connection
    can tell whether the transaction may have been applied.

    @ivar committing: True once COMMIT was sent.
    """

    def __init__(self) -> None:
        self.committing = False


Work = Callable[[_Connection, Progress], Awaitable[T]]
"""What runs on a checked-out connection: a coroutine function of the connection and the attempt's progress."""


async def in_transaction(
    connection: _Connection, progress: Progress, body: Callable[[Any], Awaitable[T]]
) -> T:
    """
    Run C{body(cursor)} in a transaction on C{connection}: commit if it
    returns, roll back if it raises (quietly if the connection is gone:
    the server has rolled back already).
    """
    cursor = connection.cursor()
    await cursor.execute("BEGIN")
    try:
        result = await body(cursor)
    except BaseException:
        if connection.alive:
            try:
                await cursor.execute("ROLLBACK")
            except psycopg2.Error:
                pass
        raise
    progress.committing = True
    await cursor.execute("COMMIT")
    return result


DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds opening a connection may take when the DSN names no C{connect_timeout}."""


def dsn_connect_timeout(dsn: str) -> float:
    """The DSN's C{connect_timeout} in seconds if it names a positive one, else L{DEFAULT_CONNECT_TIMEOUT}."""
    try:
        value = float(parse_dsn(dsn).get("connect_timeout", 0))
    except (psycopg2.Error, ValueError):
        return DEFAULT_CONNECT_TIMEOUT
    return value if value > 0 else DEFAULT_CONNECT_TIMEOUT


class NoAnswer(Exception):
    """The server accepted no connection within the connect timeout."""


class LivePool:
    """
    C{size} connections to C{dsn} on C{reactor}; L{run} checks one out for
    a piece of work (see the module docstring).

    @param connect_timeout: how long opening a connection may take; by
        default the DSN's C{connect_timeout}, else L{DEFAULT_CONNECT_TIMEOUT}
        (libpq ignores it for the asynchronous connections txpostgres
        makes, so the pool enforces it).
    @param clock: the clock of that timeout (C{reactor} by default).
    """

    def __init__(self, reactor: Any, size: int, dsn: str, connect_timeout: float | None = None, clock: Any = None) -> None:
        self._reactor = reactor
        self._clock = reactor if clock is None else clock
        self._dsn = dsn
        self._connect_timeout = connect_timeout if connect_timeout is not None else dsn_connect_timeout(dsn)
        self._cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))
        self._idle = [self._new() for _ in range(size)]
        self._semaphore = DeferredSemaphore(size)
        self._closed = False

    def _new(self) -> _Connection:
        return _Connection(self._reactor, self._cooperator)

    async def _connect(self, connection: _Connection) -> None:
        """
        Open C{connection}, giving up after the connect timeout.

        @raise NoAnswer: if the server did not answer in time.
        """
        timer = self._clock.callLater(self._connect_timeout, connection.discard)
        try:
            await connection.connect(self._dsn)
        except Exception:
            if not timer.active():
                raise NoAnswer(f"no answer within {self._connect_timeout:g} s") from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    async def start(self) -> None:
        """
        Open every connection.

        @raise StoreError: if any cannot be opened (then none stays open).
        """
        opening = [Deferred.fromCoroutine(self._connect(c)) for c in self._idle]
        outcomes = await DeferredList(opening, consumeErrors=True)
        for ok, outcome in outcomes:
            if not ok:
                self.close()
                failure: Any = outcome
                raise StoreError(f"cannot connect to the database: {describe(failure.value)}")

    async def run(self, work: Work[T], read_only: bool = False) -> T:
        """
        Run C{work} on a live connection; run it again once on a reopened
        connection if the connection died before the work could have been
        applied (C{read_only} work, or a transaction that had not sent COMMIT).

        @raise StoreError: if no connection can be opened, or the connection
            died while committing (the outcome is then unknown).
        """
        await self._semaphore.acquire()
        connection = self._idle.pop()
        try:
            if not connection.alive:
                connection = await self._reopen(connection)
            progress = Progress()
            try:
                return await work(connection, progress)
            except Exception:
                if connection.alive or self._closed:
                    raise
                if progress.committing and not read_only:
                    raise StoreError("the database connection was lost while committing; the change may not have been applied")
            connection = await self._reopen(connection)
            return await work(connection, Progress())
        finally:
            self._idle.append(connection)
            self._semaphore.release()

    async def _reopen(self, dead: _Connection) -> _Connection:
        dead.discard()
        if self._closed:
            raise StoreError("the booking store is not open")
        fresh = self._new()
        try:
            await self._connect(fresh)
        except (psycopg2.Error, NoAnswer) as e:
            raise StoreError(f"the database is unreachable: {describe(e)}") from e
        return fresh

    def close(self) -> None:
        """Close every connection not in use (the store waits for work in flight first)."""
        self._closed = True
        for connection in self._idle:
            connection.discard()
        self._cooperator.stop()

# -*- test-case-name: tests.loopback.test_driver_postgres,tests.loopback.test_driver_processes -*-
"""
The gateway driver's lease on PostgreSQL: a session-level advisory lock
(C{pg_try_advisory_lock}) on a key derived from the island, held on a
connection of its own. PostgreSQL releases it when that session ends, so
a process that dies, or whose connection an administrator ends, loses it
at once, and another process's next try takes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg2
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from geniam.interfaces import IDriverLease
from geniam.store.pgpool import LivePool, NoAnswer, _Connection


def driver_lock(island: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of the island's gateway driver."""
    digest = hashlib.blake2b(f"geniam gateway driver {island}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_ids(key: int) -> tuple[int, int]:
    """The C{(classid, objid)} under which C{pg_locks} shows the advisory lock of a 64-bit C{key}."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
    " AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s"
)
"""Whether this session holds the advisory lock of the C{(classid, objid)} given."""


@implementer(IDriverLease)
class PostgresLease:
    """
    The island's driver lock on a dedicated connection to C{dsn}.

    @param reactor: the reactor the connection runs on.
    @param dsn: the libpq connection string of the island's database.
    @param island: the island whose gateway the lease is for.
    """

    def __init__(self, reactor: Any, dsn: str, island: str) -> None:
        # A pool of one: its connect timeout and connection type, not its checkout.
        self._pool = LivePool(reactor, 1, dsn)
        self._key = driver_lock(island)
        self._connection: _Connection | None = None

    def acquire(self) -> Deferred[bool]:
        """Open the connection if needed and try the lock once."""
        return Deferred.fromCoroutine(self._acquire())

    async def _acquire(self) -> bool:
        if self._connection is None or not self._connection.alive:
            self._drop()
            connection = self._pool._new()
            try:
                await self._pool._connect(connection)
            except (psycopg2.Error, NoAnswer):
                connection.discard()
                return False
            self._connection = connection
        try:
            rows = await self._connection.runQuery("SELECT pg_try_advisory_lock(%s)", (self._key,))
        except Exception:  # the session failed or ended: the lock is gone with it
            self._drop()
            return False
        return bool(rows[0][0])

    def confirm(self) -> Deferred[bool]:
        """Fire with True if the session holding the lock still answers and holds it."""
        return Deferred.fromCoroutine(self._confirm())

    async def _confirm(self) -> bool:
        connection = self._connection
        if connection is None or not connection.alive:
            self._drop()
            return False
        try:
            rows = await connection.runQuery(HELD, lock_ids(self._key))
        except Exception:  # the session failed or ended: the lock is gone with it
            self._drop()
            return False
        return bool(rows[0][0])

    def release(self) -> Deferred[None]:
        """End the session, which releases the lock."""
        self._drop()
        return succeed(None)

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.discard()
        self._connection = None

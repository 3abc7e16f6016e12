"""
Tests for a store whose database goes away and comes back: calls answer
DBERROR meanwhile, the first call after it is back succeeds, the island's
periodic checks resume by themselves, and the log says it once each way
(L{geniam.store.health}, L{geniam.store.pgpool}), also through two aggregate
managers called over TLS.

The PostgreSQL case runs a throwaway cluster the test owns
(L{tests.pgcluster}) and stops and starts it under load; the SQLite case
makes the database file immutable (C{chattr +i}, which needs root on a file
system with that attribute) and then writable again.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import provider

from geniam.agent.inprocess import InProcessGateway
from geniam.booking.values import AllocationState, Booking, Slot
from geniam.client import value_of
from geniam.errors import GeniCode, GeniError
from geniam.loopback import LoopbackFederation
from geniam.managers.errors import as_geni_error
from geniam.managers.island import IslandResourceManager
from geniam.rspec.request import build_request
from geniam.store.errors import StoreError
from geniam.store.health import Availability
from geniam.store.open import open_store
from geniam.store.pgpool import DEFAULT_CONNECT_TIMEOUT, LivePool, dsn_connect_timeout
from geniam.store.postgres import PostgresStore
from geniam.store.sqlite import SQLiteStore
from geniam.tap.am import AggregateService
from geniam.tap.common import ServerTrust
from tests.domains import copied_domain
from tests.pgcluster import SKIP, Cluster
from tests.loopback.test_am import make_domain

NOW = 1_900_000_000.0
AUTHORITY = "geni.example.net"
OWNER = "urn:publicid:IDN+geni.example.net+user+alice"
HEALTH = "geniam.store.health.Availability"


def slice_urn(n: int) -> str:
    return f"urn:publicid:IDN+geni.example.net+slice+exp{n}"


class LogWatch:
    """Collects log events while a test runs, and fires Deferreds on events it waits for."""

    def __init__(self, case: TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        self._waiting: list[tuple[Any, Deferred[dict[str, Any]]]] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            self.events.append(event)
            for entry in list(self._waiting):
                if entry[0](event):
                    self._waiting.remove(entry)
                    entry[1].callback(event)

        globalLogPublisher.addObserver(observe)
        case.addCleanup(globalLogPublisher.removeObserver, observe)

    def wait_for(self, matches: Any) -> Deferred[dict[str, Any]]:
        """A Deferred firing with the next event C{matches(event)} accepts."""
        d: Deferred[dict[str, Any]] = Deferred()
        self._waiting.append((matches, d))
        return d

    def health(self, level: LogLevel) -> list[dict[str, Any]]:
        """The store's outage (error) or recovery (info) lines."""
        return [e for e in self.events if e.get("log_namespace") == HEALTH and e.get("log_level") == level]

    def tracebacks(self) -> list[dict[str, Any]]:
        """Events carrying a traceback."""
        return [e for e in self.events if "log_failure" in e]


def expired(urn: str) -> Any:
    return lambda event: event.get("log_format") == "allocation {sliver} expired" and event.get("sliver") == urn


class RecoveryMixin:
    """The scenario both stores go through: an outage under load, then recovery."""

    async def island(self, store: Any) -> tuple[IslandResourceManager, Clock]:
        clock = Clock()
        clock.advance(NOW)
        island = IslandResourceManager(store, InProcessGateway(), clock, AUTHORITY, allocation_ttl=60, sweep_interval=30)
        await island.start()
        self.addCleanup(island.stop)  # type: ignore[attr-defined]
        return island, clock

    def allocate(self, island: IslandResourceManager, n: int) -> Deferred[Booking]:
        start = NOW + 3600 * (n + 1)
        return island.allocate(slice_urn(n), OWNER, "alice@example.net", Slot(start, start + 1800), None)


class ClusterCase(TestCase):
    """A test with a throwaway PostgreSQL cluster of its own, in C{self.cluster}."""

    skip = SKIP
    timeout = 120

    async def setUp(self) -> None:
        self.cluster = Cluster()
        self.addCleanup(self.cluster.destroy)
        await self.cluster.create()


class PostgresRestartTests(RecoveryMixin, ClusterCase):
    """A PostgreSQL server stopped and started under load."""

    async def test_restart_under_load(self) -> None:
        """
        Allocations in flight when the server stops fail with DBERROR or
        succeed; calls while it is down answer DBERROR saying the database
        is unreachable; once it is back, the island's periodic check
        resumes by itself (an allocation that lapsed meanwhile expires) and
        the first calls succeed, so every successful Allocate gets its
        Delete. The log has one outage line, one recovery line and no
        traceback.
        """
        watch = LogWatch(self)
        store = PostgresStore(self.cluster.dsn, reactor=reactor, pool_size=4)
        await store.start()
        self.addCleanup(store.stop)
        island, clock = await self.island(store)
        lapsing = await self.allocate(island, 0)  # lapses at NOW + 60
        clock.advance(50)  # the others lapse at NOW + 110, after the test

        in_flight = [self.allocate(island, n) for n in range(1, 13)]
        await self.cluster.stop()
        outcomes = await DeferredList(in_flight, consumeErrors=True)
        for ok, value in outcomes:
            if not ok:
                self.assertEqual(value.value.code, GeniCode.DBERROR)
        down = await self.assertFailure(island.lookup([lapsing.sliver_urn]), GeniError)
        self.assertEqual(down.code, GeniCode.DBERROR)
        self.assertIn("the database is unreachable", down.output)
        clock.advance(20)  # the first allocation lapses; the checks run and wait for the database
        await island.sweep()
        self.assertEqual(len(watch.health(LogLevel.error)), 1)

        await self.cluster.start()
        lapsed = watch.wait_for(expired(lapsing.sliver_urn))
        clock.advance(30)  # the periodic check, not a call, is the first to use the database again
        await lapsed
        allocated = [value for ok, value in outcomes if ok]
        for booking in allocated:
            [deleted] = await island.delete([booking.sliver_urn])
            self.assertEqual(deleted.allocation_state, AllocationState.DELETED)
        [after] = await island.lookup([lapsing.sliver_urn], include_dead=True)
        self.assertEqual(after.allocation_state, AllocationState.EXPIRED)

        self.assertEqual(len(watch.health(LogLevel.error)), 1)
        self.assertEqual(len(watch.health(LogLevel.info)), 1)
        self.assertEqual(watch.tracebacks(), [])


class TwoAggregatesRestartTests(ClusterCase):
    """Two AM services on one PostgreSQL server, called over TLS, while it restarts."""

    async def test_no_delete_lost(self) -> None:
        """
        Slices allocated through two AMs are deleted after a restart: while
        the server is down, Delete answers DBERROR saying the database is
        unreachable; once it is back, the first Delete through each AM
        succeeds and no booking is left behind.
        """
        folder = copied_domain(self, "am", make_domain)
        clock = Clock()
        clock.advance(time.time())
        fed = LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice",))
        domain = fed.domain
        trust = ServerTrust(domain.aggregate("am1"), domain.roots(), domain.roots_dir, domain)
        services = []
        for name in ("am1", "am1b"):
            store = open_store(self.cluster.dsn, folder, "default", reactor)
            service = AggregateService(reactor, trust, store, InProcessGateway(clock=clock), 0, "127.0.0.1", clock=clock)
            service.startService()
            await service.when_started()
            self.addCleanup(service.stopService)
            services.append(service)
            fed.aggregates[name] = service
        self.addCleanup(lambda: DeferredList([c.close() for c in fed._clients]))

        def client(i: int) -> Any:
            name = f"loop{i}"
            return fed.client("alice", ("am1", "am1b")[i % 2], (fed.slice_credential(name, "alice"),)), fed.slice_urn(name)

        now = clock.seconds()
        for i in range(6):
            caller, urn = client(i)
            value_of(await caller.allocate(urn, build_request(now + (i + 1) * 3600, now + (i + 1) * 3600 + 1800)))

        await self.cluster.stop()
        caller, urn = client(0)
        down = await caller.delete([urn])
        self.assertEqual(down["code"]["geni_code"], GeniCode.DBERROR)
        self.assertIn("the database is unreachable", down["output"])

        await self.cluster.start()
        for i in range(6):
            caller, urn = client(i)
            [sliver] = value_of(await caller.delete([urn]))
            self.assertEqual(sliver["geni_allocation_status"], "geni_unallocated")
        for service in services:
            self.assertEqual(await service.store.count([AllocationState.ALLOCATED]), 0)


async def _chattr(flag: str, *paths: str) -> tuple[int, bytes]:
    out, err, status = await getProcessOutputAndValue("chattr", [flag, *paths], env=dict(os.environ), reactor=reactor)
    return status, out + err


class SQLiteUnwritableTests(RecoveryMixin, TestCase):
    """An SQLite file that cannot be written for a while."""

    async def setUp(self) -> None:
        if shutil.which("chattr") is None:
            raise self.skipTest("no chattr to make the database file unwritable")
        self.path = os.path.abspath(self.mktemp())
        self.store = SQLiteStore(self.path, reactor=reactor)
        await self.store.start()
        self.addCleanup(self.store.stop)
        self.files = [p for p in (self.path, self.path + "-wal") if os.path.exists(p)]
        status, output = await _chattr("+i", *self.files)
        if status != 0:
            raise self.skipTest(f"cannot make files immutable here: {output.decode(errors='replace').strip()}")
        await _chattr("-i", *self.files)

    async def writable(self, writable: bool) -> None:
        status, output = await _chattr("-i" if writable else "+i", *self.files)
        self.assertEqual(status, 0, output)
        if not writable:
            self.addCleanup(_chattr, "-i", *self.files)

    async def test_unwritable_then_writable(self) -> None:
        """
        While the file cannot be written, Allocate answers DBERROR and the
        checks wait quietly; once it can, the first Allocate succeeds, the
        periodic check expires what lapsed meanwhile, and the log has one
        outage line and one recovery line.
        """
        watch = LogWatch(self)
        island, clock = await self.island(self.store)
        lapsing = await self.allocate(island, 0)
        await self.writable(False)
        down = await self.assertFailure(self.allocate(island, 1), GeniError)
        self.assertEqual(down.code, GeniCode.DBERROR)
        await self.assertFailure(self.allocate(island, 2), GeniError)
        clock.advance(90)
        await island.sweep()
        self.assertEqual(len(watch.health(LogLevel.error)), 1)

        await self.writable(True)
        booking = await self.allocate(island, 1)
        self.assertEqual(booking.allocation_state, AllocationState.ALLOCATED)
        lapsed = watch.wait_for(expired(lapsing.sliver_urn))
        clock.advance(30)
        await lapsed
        self.assertEqual(len(watch.health(LogLevel.error)), 1)
        self.assertEqual(len(watch.health(LogLevel.info)), 1)
        self.assertEqual(watch.tracebacks(), [])


class AvailabilityTests(SynchronousTestCase):
    """One line when the database stops answering, one when it answers again."""

    def test_one_line_each_way(self) -> None:
        """Many failures log one error naming the reason; the next success logs one recovery line."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        availability = Availability("am.sqlite")
        availability.succeeded()
        for _ in range(5):
            availability.failed("database error: disk I/O error")
        self.assertFalse(availability.available)
        availability.succeeded()
        availability.succeeded()
        mine = [e for e in events if e.get("log_namespace") == HEALTH]
        self.assertEqual([e["log_level"] for e in mine], [LogLevel.error, LogLevel.info])
        self.assertEqual(mine[0]["reason"], "database error: disk I/O error")
        self.assertEqual(mine[1]["failures"], 5)
        self.assertTrue(availability.available)


class ConnectTimeoutTests(TestCase):
    """A server that accepts the connection but never answers."""

    async def test_silent_server(self) -> None:
        """Opening the pool gives up after the connect timeout with DBERROR saying so, leaving nothing open."""
        accepted: Deferred[None] = Deferred()

        class Silent(Protocol):
            def connectionMade(self) -> None:
                if not accepted.called:
                    accepted.callback(None)

        port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        clock = Clock()
        pool = LivePool(reactor, 1, f"host=127.0.0.1 port={port.getHost().port} dbname=none", connect_timeout=10, clock=clock)
        starting = Deferred.fromCoroutine(pool.start())
        await accepted
        self.assertNoResult(starting)
        clock.advance(10)
        error = await self.assertFailure(starting, StoreError)
        self.assertEqual(as_geni_error(error).code, GeniCode.DBERROR)
        self.assertEqual(error.message, "cannot connect to the database: no answer within 10 s")

    def test_timeout_from_dsn(self) -> None:
        """The DSN's connect_timeout is the pool's; without one (or with 0, libpq's "forever") it is 10 s."""
        self.assertEqual(dsn_connect_timeout("host=db dbname=geniam connect_timeout=3"), 3.0)
        self.assertEqual(dsn_connect_timeout("postgresql://geniam@db/geniam?connect_timeout=7"), 7.0)
        self.assertEqual(dsn_connect_timeout("host=db dbname=geniam"), DEFAULT_CONNECT_TIMEOUT)
        self.assertEqual(dsn_connect_timeout("host=db dbname=geniam connect_timeout=0"), DEFAULT_CONNECT_TIMEOUT)

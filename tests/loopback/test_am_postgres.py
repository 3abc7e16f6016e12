"""
Two aggregate manager processes' worth of services sharing one PostgreSQL
database, as an operator runs them behind one name: over real TLS, racing
Allocates through both never double-book the island, and each sees the
other's bookings. Skipped without C{GENIAM_TEST_POSTGRES_DSN}.
"""

from __future__ import annotations

import time

from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.agent.inprocess import InProcessGateway
from geniam.client import value_of
from geniam.errors import GeniCode
from geniam.loopback import LoopbackFederation
from geniam.rspec.request import build_request
from geniam.store.open import open_store
from geniam.tap.am import AggregateService
from geniam.tap.common import ServerTrust
from tests.domains import copied_domain
from tests.loopback.test_am import make_domain
from tests.store.test_postgres import SKIP, in_schema, scratch_schema

HOUR = 3600.0


class SharedDatabaseTests(TestCase):
    """Two AM services on one PostgreSQL database."""

    skip = SKIP

    async def test_no_double_booking_across_processes(self) -> None:
        """Allocates of one slot sent to both AMs at once: exactly one wins, and both AMs report it."""
        folder = copied_domain(self, "am", make_domain)
        clock = Clock()
        clock.advance(time.time())
        fed = LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"))
        dsn = in_schema(await scratch_schema(self))
        domain = fed.domain
        trust = ServerTrust(domain.aggregate("am1"), domain.roots(), domain.roots_dir, domain)
        services = []
        for _ in range(2):
            service = AggregateService(
                reactor, trust, open_store(dsn, folder, "default", reactor), InProcessGateway(clock=clock), 0,
                "127.0.0.1", clock=clock,
            )
            service.startService()
            await service.when_started()
            self.addCleanup(service.stopService)
            services.append(service)
        fed.aggregates = {"am1": services[0], "am1b": services[1]}
        self.addCleanup(lambda: DeferredList([c.close() for c in fed._clients]))
        now = clock.seconds()
        rspec = build_request(now + HOUR, now + 2 * HOUR)
        calls = []
        for i in range(10):
            name = f"race{i}"
            client = fed.client("alice", "am1" if i % 2 else "am1b", (fed.slice_credential(name, "alice"),))
            calls.append(client.allocate(fed.slice_urn(name), rspec))
        results = await DeferredList(calls, consumeErrors=True)
        codes = [r[1]["code"]["geni_code"] for r in results if r[0]]
        self.assertEqual(sorted(codes), [0] + [int(GeniCode.UNAVAILABLE)] * 9)
        for service in services:
            self.assertEqual(await service.store.count(), 1)
        bob = fed.client("bob", "am1b", (fed.user_credential("bob"),))
        ad = value_of(await bob.list_resources())
        self.assertEqual(ad.count("<island:booked "), 1)

"""
The gateway driver election on a real PostgreSQL server (a throwaway
cluster, L{tests.pgcluster}): several aggregate-manager islands, each with
its own connection pool and lease (L{tests.driverharness}), share one
database and one gateway.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from geniam.booking.values import OperationalState
from tests.driverharness import SharedIsland
from tests.loopback.test_store_recovery import ClusterCase

POLL = 0.2


class DriverClusterTests(ClusterCase):
    """Exactly one driver among processes sharing a database; failover on the database's word."""

    async def setUp(self) -> None:
        await super().setUp()
        self.island = SharedIsland(reactor, self.cluster.dsn, POLL)
        self.addCleanup(self.island.stop)

    def assert_one_driver(self) -> None:
        self.assertEqual(len(self.island.drivers()), 1)
        self.assertEqual(len(self.island.lock_holders()), 1)

    async def test_one_driver_and_takeover(self) -> None:
        """
        Of three processes one drives (one lock holder in pg_locks); when
        an administrator ends its lease session another takes over and the
        first knows it lost the role; when that one dies, the third does.
        """
        for _ in range(3):
            await self.island.add()
        self.assert_one_driver()
        [first] = self.island.drivers()
        taken = self.island.next_driver()
        self.island.end_lease_session()
        second = await taken
        self.assertIsNot(second, first)
        self.assertTrue(await Deferred.fromCoroutine(second.driver.confirm()))
        self.assertFalse(await Deferred.fromCoroutine(first.driver.confirm()))
        self.assert_one_driver()
        taken = self.island.next_driver()
        await self.island.crash(second)
        third = await taken
        self.assertIsNot(third, second)
        self.assert_one_driver()

    async def test_crash_before_boundary(self) -> None:
        """
        The driver dies half a second before a slot starts: another process
        applies the slot once (each change from that one process), and the
        booking is ready.
        """
        for _ in range(3):
            await self.island.add()
        [old] = self.island.drivers()
        start = reactor.seconds() + 2.0
        booking = await self.island.provisioned(start, 60)
        done = self.island.next_boundary_done()
        crashed: Deferred[None] = Deferred()
        reactor.callLater(start - 0.5 - reactor.seconds(), lambda: Deferred.fromCoroutine(self.island.crash(old)).chainDeferred(crashed))
        await crashed
        new, edge, _ = await done
        self.assertEqual(edge, "start")
        self.assertIsNot(new, old)
        self.assertEqual(self.island.drivers(), [new])
        self.assertEqual({s.member for s in self.island.sent}, {new.number})
        self.assertEqual(Counter(s.verb for s in self.island.sent), {"set_user_auth": 1, "set_tcp_proxy": 1, "set_ovs": 1})
        [ready] = await new.manager.lookup([booking.sliver_urn])
        self.assertEqual(ready.operational_state, OperationalState.READY)
        self.assertEqual([edge for edge, _ in new.late], ["start"])
        self.assertEqual(old.late, [])

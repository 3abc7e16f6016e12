"""
Tests for L{geniam.managers.driver}: electing the one process that drives
the island's gateway, on a L{Clock} with a lock table standing in for the
database's advisory lock; and the island managers of several processes
sharing one store and one gateway under that election.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from geniam.booking.values import AllocationState, OperationalState
from geniam.errors import GeniCode
from geniam.interfaces import IDriverLease
from geniam.managers.driver import AlwaysLease, GatewayDriver
from geniam.managers.island import IslandResourceManager
from tests.managers.test_island import AUTHORITY, DOCUMENTATION_NETWORK, SWEEP, T0, Island

POLL = 2.0


class LockTable:
    """One advisory lock as the database keeps it: held by at most one session."""

    def __init__(self) -> None:
        self.holder: FakeLease | None = None


@implementer(IDriverLease)
class FakeLease:
    """A session's view of the L{LockTable}; L{kill} ends the session (as pg_terminate_backend does)."""

    def __init__(self, table: LockTable) -> None:
        self.table = table
        self.broken = False

    def acquire(self) -> Deferred[bool]:
        if self.broken:
            return fail(ConnectionError("database unreachable"))
        if self.table.holder is None:
            self.table.holder = self
        return succeed(self.table.holder is self)

    def confirm(self) -> Deferred[bool]:
        return succeed(self.table.holder is self and not self.broken)

    def release(self) -> Deferred[None]:
        self.kill()
        return succeed(None)

    def kill(self, for_good: bool = False) -> None:
        """End the session; C{for_good}: and the database stays unreachable for this process."""
        self.broken = for_good
        if self.table.holder is self:
            self.table.holder = None


class ElectionTests(SynchronousTestCase):
    """One process at a time holds the role; another takes it within a poll interval of its loss."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.table = LockTable()
        self.leases: list[FakeLease] = []
        self.drivers: list[GatewayDriver] = []
        self.changes: list[tuple[int, bool]] = []

    def driver(self) -> GatewayDriver:
        lease = FakeLease(self.table)
        driver = GatewayDriver(lease, self.clock, POLL)
        index = len(self.drivers)
        driver.observers.append(lambda driving: self.changes.append((index, driving)))
        self.leases.append(lease)
        self.drivers.append(driver)
        self.successResultOf(driver.start())
        self.addCleanup(driver.stop)
        return driver

    def driving(self) -> list[bool]:
        return [d.driving for d in self.drivers]

    def test_interfaces(self) -> None:
        """Both leases provide L{IDriverLease}; the always-held one is held."""
        verifyObject(IDriverLease, AlwaysLease())
        verifyObject(IDriverLease, FakeLease(LockTable()))
        driver = GatewayDriver(AlwaysLease(), self.clock)
        self.successResultOf(driver.start())
        self.assertTrue(driver.driving)
        self.successResultOf(driver.stop())
        self.assertFalse(driver.driving)

    def test_bad_poll(self) -> None:
        """A poll interval must be positive."""
        self.assertRaises(ValueError, GatewayDriver, AlwaysLease(), self.clock, 0)

    def test_exactly_one(self) -> None:
        """Of three processes started together, the first drives and the others keep waiting."""
        for _ in range(3):
            self.driver()
        self.assertEqual(self.driving(), [True, False, False])
        self.clock.advance(10 * POLL)
        self.assertEqual(self.driving(), [True, False, False])
        self.assertEqual(self.changes, [(0, True)])

    def test_takeover_when_session_ends(self) -> None:
        """The driver's session ends: within one poll it knows it lost the role and one other process has it."""
        for _ in range(3):
            self.driver()
        self.leases[0].kill()
        self.clock.advance(POLL)
        self.assertEqual(self.driving().count(True), 1)
        self.assertFalse(self.drivers[0].driving)
        self.assertIn((0, False), self.changes)
        self.clock.advance(10 * POLL)
        self.assertEqual(self.driving().count(True), 1)

    def test_takeover_when_stopped(self) -> None:
        """A driver that stops gives the lease up; another takes it at its next poll, not before."""
        self.driver()
        self.driver()
        self.successResultOf(self.drivers[0].stop())
        self.assertEqual(self.driving(), [False, False])
        self.clock.advance(POLL)
        self.assertEqual(self.driving(), [False, True])

    def test_confirm_notices_loss_at_once(self) -> None:
        """Asked before gateway work, a driver whose session ended answers False without waiting for its poll."""
        driver = self.driver()
        self.leases[0].kill()
        self.assertFalse(self.successResultOf(Deferred.fromCoroutine(driver.confirm())))
        self.assertFalse(driver.driving)

    def test_lease_error_is_not_holding(self) -> None:
        """An unreachable database counts as not holding the lease; the poll goes on and takes it later."""
        lease = FakeLease(self.table)
        lease.broken = True
        driver = GatewayDriver(lease, self.clock, POLL)
        self.successResultOf(driver.start())
        self.addCleanup(driver.stop)
        self.assertFalse(driver.driving)
        self.flushLoggedErrors(ConnectionError)
        lease.broken = False
        self.clock.advance(POLL)
        self.assertTrue(driver.driving)

    def test_ticks_while_driving(self) -> None:
        """Ticks run after each poll of the driver only."""
        first, second = self.driver(), self.driver()
        ticked: list[int] = []
        first.ticks.append(lambda: ticked.append(0))
        second.ticks.append(lambda: ticked.append(1))
        self.clock.advance(POLL)
        self.clock.advance(POLL)
        self.assertEqual(ticked, [0, 0])


class Process:
    """One AM process's island manager: a shared store and gateway, its own driver election."""

    def __init__(self, island: Island, table: LockTable) -> None:
        self.lease = FakeLease(table)
        self.driver = GatewayDriver(self.lease, island.clock, POLL)
        self.late: list[tuple[str, float]] = []
        self.retries: list[None] = []
        self.manager = IslandResourceManager(
            island.store,
            island.gateway,
            island.clock,
            AUTHORITY,
            sweep_interval=SWEEP,
            controller_policy=DOCUMENTATION_NETWORK,
            driver=self.driver,
        )
        self.manager.observe_gateway_work(lambda edge, s: self.late.append((edge, s)), lambda: self.retries.append(None))
        island.case.successResultOf(self.driver.start())
        island.case.successResultOf(self.manager.start())

        def stop() -> None:
            island.case.successResultOf(self.manager.stop())
            island.case.successResultOf(self.driver.stop())

        island.case.addCleanup(stop)


class SharedIslandTests(SynchronousTestCase):
    """Island managers of several processes sharing a store: only the driver changes the gateway."""

    def setUp(self) -> None:
        self.island = Island(self)
        self.table = LockTable()
        self.processes = [Process(self.island, self.table) for _ in range(3)]

    def test_only_driver_applies(self) -> None:
        """At a slot's start and end the gateway gets each change once, from the driver, and the lateness is recorded."""
        b = self.island.provisioned(1000, 2000)
        self.island.advance_to(1000.5)
        self.assertEqual(self.island.ops(), ["set_user_auth", "set_tcp_proxy", "set_ovs"])
        self.island.advance_to(2000.5)
        self.assertEqual(self.island.ops()[3:], ["rem_user_auth", "rem_tcp_proxy", "rem_ovs"])
        self.assertEqual(self.island.get(b).allocation_state, AllocationState.ENDED)
        driver, *others = self.processes
        self.assertEqual([edge for edge, _ in driver.late], ["start", "end"])
        self.assertTrue(all(0 <= s < 1 for _, s in driver.late), driver.late)
        self.assertEqual([p.late for p in others], [[], []])

    def test_failover_before_boundary(self) -> None:
        """
        The driver's session ends a second before a slot starts: another
        process applies it within the poll interval, once, and records how
        late it was; the old driver sends nothing.
        """
        b = self.island.provisioned(1000, 2000)
        self.island.advance_to(999)
        self.processes[0].lease.kill()
        self.island.advance_to(1000 + POLL + 0.5)
        self.assertEqual(self.island.ops(), ["set_user_auth", "set_tcp_proxy", "set_ovs"])
        self.assertEqual(self.island.get(b).operational_state, OperationalState.READY)
        [new] = [p for p in self.processes if p.driver.driving]
        self.assertIsNot(new, self.processes[0])
        [(edge, seconds)] = new.late
        self.assertEqual(edge, "start")
        self.assertLessEqual(seconds, POLL + 0.01)
        self.assertEqual(self.processes[0].late, [])

    def test_catch_up_missed_end(self) -> None:
        """A slot whose end fell while no process drove is removed by the next driver on election."""
        b = self.island.provisioned(1000, 2000)
        self.island.advance_to(1500)
        for p in self.processes[1:]:
            self.successResultOf(p.driver.stop())
        self.processes[0].lease.kill(for_good=True)
        self.island.advance_to(2100)
        self.flushLoggedErrors(ConnectionError)
        self.assertEqual([p.driver.driving for p in self.processes], [False, False, False])
        self.assertEqual(self.island.get(b).allocation_state, AllocationState.PROVISIONED)
        self.assertEqual(len(self.island.ops()), 3)
        self.processes[1].driver.start()
        self.island.clock.advance(0)
        self.assertEqual(self.island.ops()[3:], ["rem_user_auth", "rem_tcp_proxy", "rem_ovs"])
        self.assertEqual(self.island.get(b).allocation_state, AllocationState.ENDED)
        [(edge, seconds)] = [late for late in self.processes[1].late if late[0] == "end"]
        self.assertAlmostEqual(seconds, 100, delta=1)

    def test_non_driver_expires_allocations(self) -> None:
        """Expiry is a database change: a process that does not drive still lapses allocations."""
        for p in self.processes:
            p.lease.kill(for_good=True)
        b = self.island.allocate(5 * 24 * 3600, 6 * 24 * 3600)
        self.island.advance_to(b.allocation_expires - T0 + 1)
        self.flushLoggedErrors(ConnectionError)
        self.assertEqual([p.driver.driving for p in self.processes], [False, False, False])
        self.assertEqual(self.island.get(b).allocation_state, AllocationState.EXPIRED)

    def test_non_driver_delete_leaves_gateway_to_driver(self) -> None:
        """A running slot deleted through a process that does not drive: the driver removes it at its next check."""
        b = self.island.provisioned(1000, 2000)
        self.island.advance_to(1000.5)
        self.assertEqual(len(self.island.ops()), 3)
        [deleted] = self.island.ok(self.processes[1].manager.delete([b.sliver_urn]))
        self.assertEqual(len(self.island.ops()), 3)
        self.assertIn("another aggregate-manager process drives", deleted.error)
        self.assertEqual(len(self.processes[1].retries), 1)
        self.island.ok(self.processes[0].manager.sweep())
        self.assertEqual(self.island.ops()[3:], ["rem_user_auth", "rem_tcp_proxy", "rem_ovs"])
        self.assertFalse(self.island.get(b).applied)

    def test_retries_counted(self) -> None:
        """A refused start schedules a retry, which the retry hook counts."""
        self.island.gateway.fail_next(1, "proxy daemon not running", code=GeniCode.REFUSED, methods=["set_tcp_proxy"])
        self.island.provisioned(1000, 2000)
        self.island.advance_to(1000.5)
        self.assertEqual(len(self.processes[0].retries), 1)
        self.assertEqual(sum(len(p.retries) for p in self.processes), 1)


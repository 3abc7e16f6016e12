"""
Gateway driver failover between real aggregate-manager processes
(C{twistd -n geniam-am}) sharing a throwaway PostgreSQL cluster: exactly
one says it drives, in its log and C{/healthz}; killed with SIGKILL, another
takes over.
"""

from __future__ import annotations

import os
import re
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody

from geniam.agent.inprocess import InProcessGateway
from geniam.booking.values import Slot, UserKeys
from geniam.gatewayconfig import ControllerPolicy
from geniam.managers.driver import GatewayDriver
from geniam.managers.island import IslandResourceManager
from geniam.store.postgres import PostgresStore
from tests.driverharness import ALICE, AUTHORITY, CONTROLLER, KEY, SLICE, VLANS
from tests.managers.test_driver import FakeLease, LockTable
from tests.loopback.test_store_recovery import ClusterCase
from tests.fixturepaths import REPO_ROOT

ROOT = REPO_ROOT
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.exit(run())"
GAINED = "this process now drives the island's gateway"
STARTING = "starting slot"
STARTED = "slot reached the gateway"
LATENESS = re.compile(r'^geniam_slot_boundary_lateness_seconds_count\{edge="start"\} (\S+)$', re.M)
STATUS = re.compile(r"status listener \(booking calendar\) at (http://\S+)")


class AMProcess(ProcessProtocol):
    """One twistd geniam-am child: its output, and Deferreds for lines in it."""

    def __init__(self) -> None:
        self.output = ""
        self.status_url = ""
        self.gained = 0
        self._waiters: list[tuple[str, Deferred[None]]] = []
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        lines = self.output[: self.output.rfind("\n") + 1]  # whole lines only
        self.gained = lines.count(GAINED)
        found = STATUS.search(lines)
        if found:
            self.status_url = found.group(1).rstrip("/")
        for text, d in list(self._waiters):
            if text in lines:
                self._waiters.remove((text, d))
                d.callback(None)

    errReceived = outReceived

    def when_said(self, text: str) -> Deferred[None]:
        """Fire once the output holds C{text}."""
        d: Deferred[None] = Deferred()
        self._waiters.append((text, d))
        self.outReceived(b"")
        return d

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class ProcessFailoverTests(ClusterCase):
    """Three real AM processes on one database."""

    timeout = 180

    def spawn(self) -> AMProcess:
        child = AMProcess()
        data = os.path.abspath(self.mktemp())
        args = [
            sys.executable, "-c", TWISTD, "-n", "--pidfile=", "geniam-am", "--port", "0", "--data-dir", data,
            "--database", self.cluster.dsn, "--status-port", "0", "--driver-poll", "0.2s",
        ]
        transport = reactor.spawnProcess(child, sys.executable, args, env={**os.environ, "PYTHONPATH": str(ROOT)}, path=str(ROOT))

        def stop() -> Deferred[None]:
            if not child.ended.called:
                transport.signalProcess("TERM")
            return child.ended

        self.addCleanup(stop)
        child.transport = transport
        return child

    async def healthz(self, child: AMProcess) -> str:
        response = await Agent(reactor).request(b"GET", f"{child.status_url}/healthz".encode())
        return (await readBody(response)).decode()

    async def get(self, child: AMProcess, path: str) -> str:
        response = await Agent(reactor).request(b"GET", f"{child.status_url}{path}".encode())
        return (await readBody(response)).decode()

    async def book(self, start: float) -> None:
        """Book and provision a slot from this test process, which never drives (a lease it never gets)."""
        store = PostgresStore(self.cluster.dsn, island="default", reactor=reactor, pool_size=1)
        await store.start()
        self.addCleanup(store.stop)
        table = LockTable()
        table.holder = FakeLease(table)
        island = IslandResourceManager(
            store, InProcessGateway(), reactor, AUTHORITY,
            controller_policy=ControllerPolicy.allowing(["192.0.2.0/24"]), driver=GatewayDriver(FakeLease(table), reactor),
        )
        b = await island.allocate(SLICE, ALICE, "alice@example.net", Slot(start, start + 60), credential_expires=start + 86400)
        await island.provision([b.sliver_urn], users=[UserKeys(ALICE, (KEY,))], controller=CONTROLLER, vlan_map=VLANS)

    async def test_kill_before_boundary(self) -> None:
        """
        The driver is killed half a second before a slot starts: another
        process starts the slot, and only that one (one "starting slot" line
        among all three), and its metrics count one start.
        """
        children = [self.spawn() for _ in range(3)]
        for child in children:
            await child.when_said("status listener (booking calendar) at")
            await child.when_said("start-up heap settled")  # as every daemon does once started
        [driver] = [c for c in children if c.gained]
        others = [c for c in children if c is not driver]
        start = reactor.seconds() + 2.0
        await self.book(start)
        started = [c.when_said(STARTED) for c in others]
        killed: Deferred[None] = Deferred()
        reactor.callLater(start - 0.5 - reactor.seconds(), lambda: killed.callback(driver.transport.signalProcess("KILL")))
        await killed
        await driver.ended
        await DeferredList(started, fireOnOneCallback=True)
        self.assertEqual(sum(c.output.count(STARTING) for c in children), 1)
        [new] = [c for c in others if STARTING in c.output]
        self.assertEqual(new.gained, 1)
        [count] = LATENESS.findall(await self.get(new, "/metrics"))
        self.assertEqual(float(count), 1.0)

    async def test_kill_the_driver(self) -> None:
        """Exactly one process drives; after SIGKILL to it, exactly one of the others does, and its /healthz says so."""
        children = [self.spawn() for _ in range(3)]
        for child in children:
            await child.when_said("status listener (booking calendar) at")
            await child.when_said("start-up heap settled")  # as every daemon does once started
        [driver] = [c for c in children if c.gained]
        for child in children:
            self.assertIn("driver: yes" if child is driver else "driver: no", await self.healthz(child), child.output)
        others = [c for c in children if c is not driver]
        taken: list[Deferred[None]] = [c.when_said(GAINED) for c in others]
        driver.transport.signalProcess("KILL")
        await driver.ended
        await DeferredList(taken, fireOnOneCallback=True)
        [new] = [c for c in others if c.gained]
        self.assertEqual(new.gained, 1)
        self.assertIn("driver: yes", await self.healthz(new))
        [other] = [c for c in others if c is not new]
        self.assertIn("driver: no", await self.healthz(other))

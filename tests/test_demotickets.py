"""
Tests for the ticket walk of C{geniam demo --tickets}: against a real
aggregate's component manager endpoint over TLS on a L{task.Clock}, and the
command itself in a child process.
"""

from __future__ import annotations

import os
import sys
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.booking.values import AllocationState, Slot
from geniam.cli.call import cm_url
from geniam.client import AMClient
from geniam.demo import DEMO_KEY
from geniam.demotickets import TicketWalk, cm_value
from geniam.errors import GeniCode, GeniError
from geniam.loopback import LoopbackFederation
from geniam.rspec.request import build_request
from tests.domains import copied_domain
from tests.test_demo import make_domain
from tests.fixturepaths import REPO_ROOT

STATES = ["ticket", "ticket", "sliver", "sliver and ticket", "sliver", "ticket", "neither sliver nor ticket"]


class TicketWalkTests(TestCase):
    """The walk through the component manager's diagram on one aggregate."""

    timeout = 60

    async def federation(self) -> tuple[LoopbackFederation, Clock]:
        folder = copied_domain(self, "demo", make_domain)
        clock = Clock()
        clock.advance(time.time())
        federation = LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"),
                                        with_agents=False)
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        await federation.start()
        return federation, clock

    def cm_client(self, federation: LoopbackFederation, user: str) -> AMClient:
        client = AMClient(reactor, cm_url(federation.url("am1")), federation.domain.user(user), federation.domain.roots())
        self.addCleanup(client.close)
        return client

    def ticket_walk(self, federation: LoopbackFederation, clock: Clock) -> TicketWalk:
        return TicketWalk(self.cm_client(federation, "alice"), federation.slice_urn("demo"),
                          [federation.slice_credential("demo", "alice")], DEMO_KEY, clock.seconds, lead=60.0, length=600.0)

    async def test_every_step_behaves(self) -> None:
        """Each step moves the slice to the state of the diagram; the update's redeemed sliver had the longer slot."""
        federation, clock = await self.federation()
        walk = self.ticket_walk(federation, clock)
        ok = await walk.run()
        self.assertTrue(ok, [s.detail for s in walk.steps])
        self.assertEqual([s.name for s in walk.steps], ["GetTicket", "Resolve", "RedeemTicket", "UpdateSliver",
                                                        "RedeemTicket (the update)", "DeleteSliver", "DeleteSlice"])
        self.assertEqual([s.detail.split(";")[0] for s in walk.steps], [f"state: {state}" for state in STATES])
        store = federation.aggregates["am1"].resource_manager._store
        bookings = await store.list_by_slice(federation.slice_urn("demo"))
        slivers = [b for b in bookings if b.allocation_state is AllocationState.DELETED]
        self.assertEqual(sorted(b.slot.duration for b in slivers), [600.0, 1200.0])
        self.assertEqual(await store.list_live(Slot(0, 4e9)), [])

    async def test_a_refused_step_fails_the_walk(self) -> None:
        """When another slice holds the slot, GetTicket fails with its reason and the walk stops there."""
        federation, clock = await self.federation()
        bob = self.cm_client(federation, "bob")
        start = clock.seconds() + 60
        cm_value(await bob.call("GetTicket", {"slice_urn": federation.slice_urn("other"), "rspec": build_request(start, start + 60),
                                              "credentials": [federation.slice_credential("other", "bob")]}))
        walk = self.ticket_walk(federation, clock)
        self.assertFalse(await walk.run())
        [step] = walk.steps
        self.assertEqual((step.name, step.ok), ("GetTicket", False))
        self.assertIn("the island is already booked from", step.detail)

    async def test_command(self) -> None:
        """C{geniam demo --tickets --in-process} prints each state and exits 0."""
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        out, err, code = await getProcessOutputAndValue(sys.executable, ["-m", "geniam", "demo", "--tickets", "--in-process"],
                                                        env=env)
        self.assertEqual(code, 0, out + err)
        text = out.decode()
        for state in STATES:
            self.assertIn(f"state: {state};", text)
        self.assertIn("/protogeni/xmlrpc/cm/2.0", text)
        self.assertIn("every step behaved", text)


class CmValueTests(SynchronousTestCase):
    """Component manager answers become values or GENI errors."""

    def test_cm_value(self) -> None:
        self.assertEqual(cm_value({"code": 0, "value": "v", "output": ""}), "v")
        error = self.assertRaises(GeniError, cm_value, {"code": 7, "value": "", "output": "why"})
        self.assertEqual((error.code, error.output), (GeniCode.REFUSED, "why"))
        self.assertEqual(self.assertRaises(GeniError, cm_value, {"code": 999, "output": ""}).code, GeniCode.ERROR)
        self.assertEqual(self.assertRaises(GeniError, cm_value, "nonsense").code, GeniCode.ERROR)

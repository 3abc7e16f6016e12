"""
The aggregate manager and its island's gateway agent end to end: a real
agent service and the AM's PB client over mutual TLS on 127.0.0.1, real
certificates from a development trust domain, a real SQLite store, and a
L{task.Clock} for the booking time line. The agent is stopped, wiped and
restarted under a running slot to check that the AM keeps the gateway in
line with its bookings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.agent.backend import StateFile
from geniam.gateway.config import GatewayConfig
from geniam.agent.service import STATE_FILE
from geniam.booking.values import AllocationState
from geniam.client import value_of
from geniam.loopback import LoopbackFederation, agent_name
from geniam.protocols.pbclient import PBGatewayAgent
from geniam.rspec.request import build_request
from geniam.tap.am import AggregateService
from tests.domains import copied_domain

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq5P0wVtV0bWbFQqg8Xn1K1JmHhJ7m1fQ1b3c7m5a1b alice@laptop"
STRAY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVuaWFtLXN0cmF5LWtleS1ub3QtZm9yLXVzZS1hbnl3aGVyZQ stray@nowhere"
CONTROLLER = "127.0.0.1:6633"
VLANS = {"10": "0xffff", "30": "20"}
APPLIED = {"users": [KEY], "proxy": CONTROLLER, "vlans": VLANS}
EMPTY = {"users": [], "proxy": "", "vlans": {}}
HOUR = 3600.0


def make_domain(folder: Path) -> None:
    """Make a trust domain with am1, its agent and two users in C{folder}."""
    clock = Clock()
    clock.advance(time.time() - 3600)
    LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"), with_agents=True)


def next_connection(gateway: PBGatewayAgent, up: bool) -> Deferred[None]:
    """
    Fire on the reactor's next turn after the gateway next reports its
    connection C{up} (or lost), so observers registered before have run.
    """
    d: Deferred[None] = Deferred()

    def observe(connected: bool) -> None:
        if connected == up and not d.called:
            gateway.remove_connection_observer(observe)
            reactor.callLater(0, d.callback, None)

    gateway.add_connection_observer(observe)
    return d


class AgentLinkTests(TestCase):
    """The AM controls a real gateway agent over PB."""

    async def start(self) -> LoopbackFederation:
        folder = copied_domain(self, "agent", make_domain)
        self.clock = Clock()
        self.clock.advance(time.time())
        fed = LoopbackFederation(
            folder, reactor, self.clock, aggregate_names=("am1",), user_names=("alice", "bob"), with_agents=True, agent_retry=0.05
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(fed.stop()))
        await fed.start()
        self.fed = fed
        return fed

    @property
    def service(self) -> AggregateService:
        return self.fed.aggregates["am1"]

    @property
    def gateway(self) -> PBGatewayAgent:
        gateway: PBGatewayAgent = self.fed.gateways["am1"]
        return gateway

    def alice(self) -> Any:
        fed = self.fed
        return fed.client("alice", "am1", (fed.user_credential("alice"), fed.slice_credential("exp1", "alice")))

    async def booked(self, start: float, end: float) -> str:
        """Allocate and provision a slot for alice's slice with a key, a controller and VLANs; return the sliver URN."""
        client = self.alice()
        now = self.clock.seconds()
        rspec = build_request(now + start, now + end, controller=CONTROLLER, vlan_map=VLANS)
        allocated = value_of(await client.allocate(self.fed.slice_urn("exp1"), rspec))
        sliver: str = allocated["geni_slivers"][0]["geni_sliver_urn"]
        users = [{"urn": self.fed.domain.user_urn("alice"), "keys": [KEY]}]
        value_of(await client.provision([sliver], geni_users=users))
        return sliver

    async def advance(self, seconds: float) -> None:
        """Move booking time on and let the AM act on it."""
        self.clock.advance(seconds)
        await self.service.resource_manager.sweep()

    async def status(self, sliver: str) -> dict[str, Any]:
        value = value_of(await self.alice().status([sliver]))
        sliver_status: dict[str, Any] = value["geni_slivers"][0]
        return sliver_status

    async def agent_state(self) -> dict[str, Any]:
        """What the agent has applied, asked over PB."""
        state: dict[str, Any] = await self.gateway.state()
        return state

    async def stop_agent(self) -> None:
        """Stop the agent and wait until the AM has noticed."""
        lost = next_connection(self.gateway, False)
        await self.fed.stop_agent("am1")
        await lost

    async def restart_agent(self, wipe: bool = False, state: GatewayConfig | None = None) -> None:
        """
        Start the agent again on its port, after wiping its state file or
        writing C{state} into it, and wait until the AM has logged in and
        acted on the reconnection.
        """
        path = self.fed.folder / f"{agent_name('am1')}-data" / STATE_FILE
        if wipe and path.exists():
            path.unlink()
        if state is not None:
            await StateFile(str(path)).save(state)
        back = next_connection(self.gateway, True)
        await self.fed.start_agent("am1")
        await back
        await self.service.resource_manager.sweep()

    async def test_slot_applied_and_removed_through_agent(self) -> None:
        """The agent applies the slot's configuration at its start and removes it at its end."""
        await self.start()
        self.assertIsInstance(self.gateway, PBGatewayAgent)
        self.assertIn(self.gateway, list(self.service))
        sliver = await self.booked(60, HOUR)
        self.assertEqual(await self.agent_state(), EMPTY)
        await self.advance(61)
        self.assertEqual((await self.status(sliver))["geni_operational_status"], "geni_ready")
        self.assertEqual(await self.agent_state(), APPLIED)
        await self.advance(HOUR)
        self.assertEqual(await self.agent_state(), EMPTY)

    async def test_inventory_from_agent(self) -> None:
        """ListResources advertises the switches the agent reports."""
        await self.start()
        ad = value_of(await self.alice().list_resources())
        self.assertEqual(ad.count("<node "), 4)

    async def test_agent_down_at_slot_start_then_back(self) -> None:
        """
        With the agent down at slot start the sliver shows geni_configuring
        with a geni_error; once the agent is back the configuration is
        applied without waiting for booking time to pass.
        """
        await self.start()
        sliver = await self.booked(60, HOUR)
        await self.stop_agent()
        await self.advance(61)
        status = await self.status(sliver)
        self.assertEqual(status["geni_operational_status"], "geni_configuring")
        self.assertIn("gateway agent unreachable", status["geni_error"])
        self.assertEqual(status["geni_allocation_status"], "geni_provisioned")
        booking = await self.service.store.get(sliver)
        self.assertFalse(booking.applied)
        returned_at = self.clock.seconds()
        await self.restart_agent()
        self.assertEqual(self.clock.seconds(), returned_at)
        status = await self.status(sliver)
        self.assertEqual((status["geni_operational_status"], status.get("geni_error", "")), ("geni_ready", ""))
        self.assertEqual(await self.agent_state(), APPLIED)

    async def test_agent_restart_loses_state(self) -> None:
        """An agent restarting mid-slot with its state gone gets the configuration again."""
        await self.start()
        sliver = await self.booked(10, HOUR)
        await self.advance(11)
        self.assertEqual(await self.agent_state(), APPLIED)
        await self.stop_agent()
        await self.restart_agent(wipe=True)
        self.assertEqual(await self.agent_state(), APPLIED)
        self.assertEqual((await self.status(sliver))["geni_operational_status"], "geni_ready")

    async def test_drift_repair_removes_stray_configuration(self) -> None:
        """Configuration the running booking does not explain is removed after a reconnection; its own stays."""
        await self.start()
        await self.booked(10, HOUR)
        await self.advance(11)
        await self.stop_agent()
        await self.restart_agent(state=GatewayConfig((KEY, STRAY), "192.0.2.99:1", {"5": "6"}))
        self.assertEqual(await self.agent_state(), APPLIED)

    async def test_drift_repair_without_slot(self) -> None:
        """With no slot running, whatever the agent holds is reset after a reconnection."""
        await self.start()
        await self.booked(HOUR, 2 * HOUR)
        await self.stop_agent()
        await self.restart_agent(state=GatewayConfig((STRAY,), "192.0.2.99:1", {}))
        self.assertEqual(await self.agent_state(), EMPTY)

    async def test_am_restart_mid_slot(self) -> None:
        """A new aggregate service on the same database logs in to the agent and repairs what it lost."""
        fed = await self.start()
        sliver = await self.booked(10, HOUR)
        await self.advance(11)
        await self.service.stopService()
        await fed.stop_agent("am1")
        (fed.folder / f"{agent_name('am1')}-data" / STATE_FILE).unlink()
        await fed.start_agent("am1")
        service = fed.build_aggregate("am1")
        fed.aggregates["am1"] = service
        logged_in = next_connection(fed.gateways["am1"], True)
        service.startService()
        await service.when_started()
        await logged_in
        await service.resource_manager.sweep()
        self.assertEqual(await self.agent_state(), APPLIED)
        self.assertEqual((await self.status(sliver))["geni_operational_status"], "geni_ready")

    async def test_delete_started_slot_agent_down_then_back(self) -> None:
        """Delete with the agent down releases the sliver at once; the agent is cleaned when it returns."""
        await self.start()
        sliver = await self.booked(10, HOUR)
        await self.advance(11)
        await self.stop_agent()
        deleted = value_of(await self.alice().delete([sliver]))
        self.assertEqual(deleted[0]["geni_allocation_status"], "geni_unallocated")
        booking = await self.service.store.get(sliver)
        self.assertEqual((booking.allocation_state, booking.applied), (AllocationState.DELETED, True))
        await self.restart_agent()
        self.assertEqual(await self.agent_state(), EMPTY)
        self.assertFalse((await self.service.store.get(sliver)).applied)

    async def test_shutdown_started_slot_agent_down_then_back(self) -> None:
        """Shutdown with the agent down stops the slice at once; the agent is cleaned when it returns."""
        await self.start()
        sliver = await self.booked(10, HOUR)
        await self.advance(11)
        await self.stop_agent()
        self.assertIs(value_of(await self.alice().shutdown(self.fed.slice_urn("exp1"))), True)
        await self.restart_agent()
        self.assertEqual(await self.agent_state(), EMPTY)
        self.assertFalse((await self.service.store.get(sliver)).applied)
        await self.advance(60)
        self.assertEqual(await self.agent_state(), EMPTY)


"""
Tests for L{geniam.managers.island} with a gateway that reports its
connection, as the PB client does: slot start and removal while the agent
is down, immediate retries on its return, and drift repair. Everything runs
on a L{Clock} with an inline SQLite store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.agent.inprocess import InProcessGateway
from geniam.booking.values import AllocationState, Booking, OperationalState, UserKeys
from geniam.managers.sliverstatus import geni_operational_status
from geniam.errors import GeniCode, GeniError
from geniam.interfaces import IGatewayAgent
from geniam.gateway.config import GatewayConfig
from geniam.managers.island import IslandResourceManager
from geniam.store.sqlite import SQLiteStore
from tests.managers.test_island import AUTHORITY, BOB, CONTROLLER, SLICE, VLANS, Island, at
from tests.store.test_contract import KEY_A, KEY_B, InlineReactor, InlineThreadPool

EMPTY = {"users": [], "proxy": "", "vlans": {}}
APPLIED = {"users": [KEY_A], "proxy": CONTROLLER, "vlans": VLANS}


class ConnectedGateway(InProcessGateway):
    """
    A simulated gateway that reports its connection like
    L{geniam.protocols.pbclient.PBGatewayAgent}: C{connected},
    C{add_connection_observer} and C{remove_connection_observer}.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connected = True
        self.observers: list[Callable[[bool], object]] = []

    def add_connection_observer(self, observer: Callable[[bool], object]) -> None:
        self.observers.append(observer)

    def remove_connection_observer(self, observer: Callable[[bool], object]) -> None:
        self.observers.remove(observer)

    def go_down(self, lose_state: bool = False) -> None:
        """The agent becomes unreachable (and forgets what it applied, if C{lose_state})."""
        self.connected = False
        self.set_reachable(False)
        if lose_state:
            self.backend.reset()
        for observer in list(self.observers):
            observer(False)

    def come_back(self) -> None:
        """The agent is reachable again and the client has logged in."""
        self.connected = True
        self.set_reachable(True)
        for observer in list(self.observers):
            observer(True)


def logged(events: list[LogEvent], text: str) -> bool:
    """True if some event's formatted message contains C{text}."""
    return any(text in (formatEvent(e) or "") for e in events)


class AgentDownAtStartTests(SynchronousTestCase):
    """The agent is unreachable when a slot starts."""

    def started_island(self, **options: Any) -> tuple[Island, ConnectedGateway]:
        gateway = ConnectedGateway()
        options.setdefault("retry_delay", 60)
        options.setdefault("max_retry_delay", 300)
        island = Island(self, gateway=gateway, **options)
        island.start()
        return island, gateway

    def test_fake_provides_interface(self) -> None:
        """The connection-reporting fake is still an IGatewayAgent."""
        self.assertTrue(verifyObject(IGatewayAgent, ConnectedGateway()))

    def test_configuring_then_applied_on_return(self) -> None:
        """
        While the agent is down the booking shows configuring with the
        reason, is not marked applied, and is kept; when the agent returns
        the configuration is applied at once, long before the next retry.
        """
        island, gateway = self.started_island()
        b = island.provisioned(100, 1000)
        gateway.go_down()
        island.advance_to(100.5)
        waiting = island.get(b)
        self.assertEqual(geni_operational_status(waiting), "geni_configuring")
        self.assertEqual((waiting.allocation_state, waiting.applied), (AllocationState.PROVISIONED, False))
        self.assertIn("gateway unreachable", waiting.error)
        island.advance_to(130)
        self.assertEqual(island.get(b).operational_state, OperationalState.CONFIGURING)
        self.assertEqual(gateway.log, [])
        gateway.come_back()
        ready = island.get(b)
        self.assertEqual((ready.operational_state, ready.applied, ready.error), (OperationalState.READY, True, ""))
        self.assertEqual(island.ok(gateway.state()), APPLIED)
        self.assertEqual(island.clock.seconds(), at(130))

    def test_without_observer_retry_backs_off(self) -> None:
        """A gateway that does not report its connection is retried by back-off alone."""
        island = Island(self, retry_delay=60)
        island.start()
        b = island.provisioned(100, 1000)
        island.gateway.set_reachable(False)
        island.advance_to(130)
        island.gateway.set_reachable(True)
        self.assertEqual(island.get(b).operational_state, OperationalState.CONFIGURING)
        island.advance_to(161)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)

    def test_refused_shows_failed_and_return_retries(self) -> None:
        """A refusing agent leaves the booking failed with geni_error; a reconnection retries it at once."""
        island, gateway = self.started_island()
        b = island.provisioned(100, 1000)
        gateway.fail_next(1, "proxy daemon missing", code=GeniCode.REFUSED, methods=["set_tcp_proxy"])
        island.advance_to(100.5)
        failed = island.get(b)
        self.assertEqual(geni_operational_status(failed), "geni_failed")
        self.assertIn("proxy daemon missing", failed.error)
        self.assertTrue(failed.applied)
        gateway.go_down()
        gateway.come_back()
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertEqual(island.ok(gateway.state()), APPLIED)

    def test_slot_ends_while_down(self) -> None:
        """A slot that never got applied ends cleanly while the agent is down; nothing is sent later."""
        island, gateway = self.started_island()
        b = island.provisioned(100, 200)
        gateway.go_down()
        island.advance_to(201)
        ended = island.get(b)
        self.assertEqual((ended.allocation_state, ended.applied), (AllocationState.ENDED, False))
        gateway.come_back()
        self.assertEqual(gateway.log, [])


class RemovalWhileDownTests(SynchronousTestCase):
    """Removing a started slot while the agent is down, then its return."""

    def started(self) -> tuple[Island, ConnectedGateway, Booking]:
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway, retry_delay=60)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        self.assertEqual(island.ok(gateway.state()), APPLIED)
        return island, gateway, b

    def test_delete(self) -> None:
        """Delete with the agent down releases the booking at once and removes the configuration when it returns."""
        island, gateway, b = self.started()
        gateway.go_down()
        [deleted] = island.ok(island.manager.delete([b.sliver_urn]))
        self.assertEqual((deleted.allocation_state, deleted.applied), (AllocationState.DELETED, True))
        self.assertIn("could not remove", deleted.error)
        self.assertTrue(island.ok(island.manager.check_availability(b.slot)))
        gateway.come_back()
        self.assertEqual(island.ok(gateway.state()), EMPTY)
        cleaned = island.get(b)
        self.assertEqual((cleaned.applied, cleaned.error), (False, ""))

    def test_shutdown(self) -> None:
        """Shutdown with the agent down stops the slice at once and removes the configuration when it returns."""
        island, gateway, b = self.started()
        gateway.go_down()
        [stopped] = island.ok(island.manager.shutdown(SLICE))
        self.assertEqual((stopped.operational_state, stopped.applied), (OperationalState.STOPPED, True))
        gateway.come_back()
        self.assertEqual(island.ok(gateway.state()), EMPTY)
        self.assertFalse(island.get(b).applied)
        island.advance_to(500)
        self.assertEqual(island.ok(gateway.state()), EMPTY)

    def test_slot_end(self) -> None:
        """A slot ending while the agent is down is ended, and its configuration removed on the agent's return."""
        island, gateway, b = self.started()
        gateway.go_down()
        island.advance_to(1001)
        ended = island.get(b)
        self.assertEqual((ended.allocation_state, ended.applied), (AllocationState.ENDED, True))
        gateway.come_back()
        self.assertEqual(island.ok(gateway.state()), EMPTY)
        self.assertFalse(island.get(b).applied)


class DriftRepairTests(SynchronousTestCase):
    """The gateway is compared with the bookings and repaired."""

    def test_agent_lost_state(self) -> None:
        """An agent that restarts with nothing applied mid-slot gets the configuration again on reconnection."""
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        gateway.go_down(lose_state=True)
        del gateway.log[:]
        with capturedLogs() as events:
            gateway.come_back()
        self.assertEqual(island.ok(gateway.state()), APPLIED)
        self.assertEqual([name for name, _ in gateway.log], ["set_user_auth", "set_tcp_proxy", "set_ovs"])
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertTrue(logged(list(events), f"drift repair of {b.sliver_urn}: added 1 SSH key(s)"))

    def test_stray_configuration_during_slot(self) -> None:
        """Keys, a proxy and VLANs no booking explains are replaced by the running booking's."""
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        island.ok(gateway.set_user_auth([KEY_B]))
        island.ok(gateway.set_tcp_proxy("198.51.100.7:6653"))
        island.ok(gateway.set_ovs({"99": "98"}))
        del gateway.log[:]
        island.ok(island.manager.repair())
        self.assertEqual(island.ok(gateway.state()), APPLIED)
        self.assertEqual(gateway.log, [("rem_user_auth", (KEY_B,)), ("set_tcp_proxy", CONTROLLER), ("set_ovs", VLANS)])
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)

    def test_matching_gateway_untouched(self) -> None:
        """A repair that finds the gateway as it should be changes nothing."""
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway)
        island.start()
        island.provisioned(100, 1000)
        island.advance_to(150)
        del gateway.log[:]
        gateway.go_down()
        gateway.come_back()
        self.assertEqual(gateway.log, [])

    def test_stray_configuration_without_slot(self) -> None:
        """With no slot running, configuration left on the gateway is reset, and the reset is logged."""
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway)
        island.start()
        future = island.provisioned(5000, 6000)
        island.ok(gateway.set_user_auth([KEY_B]))
        del gateway.log[:]
        with capturedLogs() as events:
            gateway.go_down()
            gateway.come_back()
        self.assertEqual(gateway.log, [("reset", None)])
        self.assertTrue(logged(list(events), "no slot runs, so the gateway was reset"))
        self.assertEqual(island.get(future).operational_state, OperationalState.NOTREADY)

    def test_once_after_start(self) -> None:
        """Without connection reports, drift is repaired once when the manager starts."""
        island = Island(self)
        island.ok(island.gateway.set_tcp_proxy("198.51.100.7:6653"))
        del island.gateway.log[:]
        island.start()
        self.assertEqual(island.gateway.log, [("reset", None)])

    def test_manager_restart_mid_slot(self) -> None:
        """A new manager on the same database repairs a gateway that lost the running slot's configuration."""
        path = self.mktemp()
        first = Island(self, path)
        first.start()
        b = first.provisioned(100, 1000)
        first.advance_to(150)
        first.ok(first.manager.stop())
        gateway = ConnectedGateway()
        store = SQLiteStore(path, reactor=InlineReactor(), threadpool=InlineThreadPool())
        clock = Clock()
        clock.advance(at(200))
        second = IslandResourceManager(store, gateway, clock, AUTHORITY)
        self.successResultOf(store.start())
        self.successResultOf(second.start())
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.addCleanup(lambda: self.successResultOf(second.stop()))
        self.assertEqual(self.successResultOf(gateway.state()), APPLIED)
        [again] = self.successResultOf(second.lookup([b.sliver_urn]))
        self.assertEqual(again.operational_state, OperationalState.READY)

    def test_repair_refused(self) -> None:
        """A repair the agent refuses leaves the booking failed, retried later, and it becomes ready."""
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway, retry_delay=10)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        gateway.go_down(lose_state=True)
        gateway.fail_next(1, "ovs-vsctl failed", code=GeniCode.REFUSED, methods=["set_ovs"])
        gateway.come_back()
        failed = island.get(b)
        self.assertEqual(failed.operational_state, OperationalState.FAILED)
        self.assertIn("ovs-vsctl failed", failed.error)
        island.advance_to(161)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertEqual(island.ok(gateway.state()), APPLIED)

    def test_update_while_down_then_back(self) -> None:
        """A user update pushed while the agent is down is applied, as a whole, when it returns."""
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway, retry_delay=60)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        gateway.go_down()
        [updated] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_update_users", users=[UserKeys(BOB, (KEY_B,))]))
        self.assertEqual(updated.operational_state, OperationalState.CONFIGURING)
        gateway.come_back()
        self.assertEqual(island.ok(gateway.state())["users"], [KEY_A, KEY_B])
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)

    def test_stopped_manager_ignores_connections(self) -> None:
        """Once stopped, the manager no longer observes the gateway's connection."""
        gateway = ConnectedGateway()
        island = Island(self, gateway=gateway)
        island.ok(island.manager.start())
        island.ok(island.manager.stop())
        self.assertEqual(gateway.observers, [])

    def test_inventory_refreshed_on_return(self) -> None:
        """An inventory that could not be read while the agent was down is read as soon as it returns."""
        gateway = ConnectedGateway()
        gateway.go_down()
        island = Island(self, gateway=gateway)
        island.start()
        self.assertIsNone(island.ok(island.manager.inventory()).confirmed)
        gateway.come_back()
        self.assertEqual(island.ok(island.manager.inventory()).confirmed, at(0))


class GatewayConfigTests(SynchronousTestCase):
    """Reading what the gateway reports."""

    def test_normalised(self) -> None:
        """Reports are normalised like the bookings' values."""
        view = GatewayConfig.from_report({"users": [f"  {KEY_A}  "], "proxy": CONTROLLER, "vlans": {"10": "untagged", 30: 20}})
        self.assertEqual(view, GatewayConfig((KEY_A,), CONTROLLER, {"10": "0xffff", "30": "20"}))
        self.assertTrue(GatewayConfig.from_report(EMPTY).empty)

    def test_malformed(self) -> None:
        """A malformed report is an ERROR, not a crash."""
        reports: list[object] = [None, [], {"users": "x"}, {"proxy": "nohost"}, {"vlans": {"1": "1", "2": "1"}}, {"users": [1]}]
        for report in reports:
            with self.assertRaises(GeniError) as cm:
                GatewayConfig.from_report(report)
            self.assertEqual(cm.exception.code, GeniCode.ERROR)

"""
Tests for L{geniam.agent.inprocess}: the in-process gateway on the simulated back end.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.agent.backend import StateFile
from geniam.agent.backends.simulated import SimulatedBackend
from geniam.agent.inprocess import InProcessGateway
from geniam.gateway.inventory import DEFAULT_LINKS, DEFAULT_SWITCHES, Inventory, link_ends
from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.gatewayconfig import ControllerPolicy
from geniam.interfaces import IGatewayAgent
from tests.store.test_contract import KEY_A, KEY_B


class InventoryTests(SynchronousTestCase):
    """The default island and its inventory."""

    def test_interface(self) -> None:
        """The simulated gateway provides IGatewayAgent."""
        self.assertTrue(verifyObject(IGatewayAgent, InProcessGateway()))

    def test_default_island(self) -> None:
        """Four switches and five links, every link between two known switches on distinct ports."""
        gateway = InProcessGateway()
        switches = self.successResultOf(gateway.get_switches())
        links = self.successResultOf(gateway.get_links())
        self.assertEqual((len(switches), len(links)), (4, 5))
        self.assertEqual(switches, list(DEFAULT_SWITCHES))
        ports = []
        for link in links:
            ends = link_ends(link)
            self.assertTrue(set(ends) <= set(switches), link)
            ports += link.split("-")
        self.assertEqual(len(ports), len(set(ports)))

    def test_custom_island(self) -> None:
        """An island may be given its own switches and links."""
        gateway = InProcessGateway(SimulatedBackend(inventory=Inventory(("00:00:00:00:00:00:00:0a",), ())))
        self.assertEqual(self.successResultOf(gateway.get_switches()), ["00:00:00:00:00:00:00:0a"])
        self.assertEqual(self.successResultOf(gateway.get_links()), [])


class ConfigurationTests(SynchronousTestCase):
    """Applying and removing configuration."""

    def test_apply_and_state(self) -> None:
        """Keys, proxy and VLAN map are applied, reported by state() and logged in order."""
        gateway = InProcessGateway()
        self.successResultOf(gateway.set_user_auth([KEY_A]))
        self.successResultOf(gateway.set_tcp_proxy("192.0.2.10:6633"))
        self.successResultOf(gateway.set_ovs({"10": "0xffff", 30: "20"}))  # type: ignore[dict-item]
        state = self.successResultOf(gateway.state())
        self.assertEqual(state, {"users": [KEY_A], "proxy": "192.0.2.10:6633", "vlans": {"10": "0xffff", "30": "20"}})
        self.assertEqual([entry[0] for entry in gateway.log], ["set_user_auth", "set_tcp_proxy", "set_ovs"])

    def test_remove(self) -> None:
        """Each rem_* undoes its set_*; reset clears everything."""
        gateway = InProcessGateway()
        self.successResultOf(gateway.set_user_auth([KEY_A, KEY_B]))
        self.successResultOf(gateway.set_tcp_proxy("ctl.example.net:6653"))
        self.successResultOf(gateway.set_ovs({"1": "2"}))
        self.successResultOf(gateway.rem_user_auth([KEY_A]))
        self.assertEqual(gateway.users, [KEY_B])
        self.successResultOf(gateway.rem_tcp_proxy())
        self.successResultOf(gateway.rem_ovs())
        self.assertEqual((gateway.proxy, gateway.vlans), ("", {}))
        self.successResultOf(gateway.set_user_auth([KEY_A]))
        self.successResultOf(gateway.reset())
        self.assertEqual(self.successResultOf(gateway.state()), {"users": [], "proxy": "", "vlans": {}})

    def test_idempotent(self) -> None:
        """Applying twice or removing what is absent succeeds and leaves one copy."""
        gateway = InProcessGateway()
        self.successResultOf(gateway.set_user_auth([KEY_A]))
        self.successResultOf(gateway.set_user_auth([KEY_A]))
        self.assertEqual(gateway.users, [KEY_A])
        self.successResultOf(gateway.rem_user_auth([KEY_B]))
        self.successResultOf(gateway.rem_tcp_proxy())
        self.successResultOf(gateway.rem_ovs())
        self.assertEqual(gateway.users, [KEY_A])

    def test_validation(self) -> None:
        """Malformed arguments are BADARGS and change nothing."""
        gateway = InProcessGateway()
        for d in (gateway.set_user_auth(["not a key"]), gateway.set_tcp_proxy("nohost"), gateway.set_ovs({"0": "1"}), gateway.set_ovs("x")):  # type: ignore[arg-type]
            self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)
        self.assertEqual(gateway.log, [])
        self.assertEqual(self.successResultOf(gateway.state()), {"users": [], "proxy": "", "vlans": {}})


class FailureTests(SynchronousTestCase):
    """Injected failures."""

    def test_fail_next(self) -> None:
        """The next n calls fail with RPCERROR and change nothing; later calls succeed."""
        gateway = InProcessGateway()
        gateway.fail_next(2, "link down")
        for _ in range(2):
            error = self.failureResultOf(gateway.set_tcp_proxy("10.0.0.1:6633"), GeniError).value
            self.assertEqual((error.code, error.output), (GeniCode.RPCERROR, "link down"))
        self.assertEqual(gateway.proxy, "")
        self.successResultOf(gateway.set_tcp_proxy("10.0.0.1:6633"))
        self.assertEqual(gateway.calls, ["set_tcp_proxy"] * 3)

    def test_fail_next_filtered(self) -> None:
        """A failure may target some methods only, with another code."""
        gateway = InProcessGateway()
        gateway.fail_next(1, "no", code=GeniCode.REFUSED, methods=["set_ovs"])
        self.successResultOf(gateway.set_user_auth([KEY_A]))
        self.assertEqual(self.failureResultOf(gateway.set_ovs({"1": "2"}), GeniError).value.code, GeniCode.REFUSED)
        self.successResultOf(gateway.set_ovs({"1": "2"}))

    def test_unreachable(self) -> None:
        """An unreachable gateway fails every call with RPCERROR until reachable again."""
        gateway = InProcessGateway()
        gateway.set_reachable(False)
        self.assertEqual(self.failureResultOf(gateway.get_switches(), GeniError).value.code, GeniCode.RPCERROR)
        self.failureResultOf(gateway.reset(), GeniError)
        gateway.set_reachable(True)
        self.successResultOf(gateway.reset())

    def test_broken_switch(self) -> None:
        """A switch down leaves the inventory with its links, and VLAN mapping is REFUSED until repaired."""
        gateway = InProcessGateway()
        gateway.backend.break_switch(DEFAULT_SWITCHES[3])
        self.assertNotIn(DEFAULT_SWITCHES[3], self.successResultOf(gateway.get_switches()))
        links = self.successResultOf(gateway.get_links())
        self.assertEqual(len(links), 3)
        error = self.failureResultOf(gateway.set_ovs({"1": "2"}), GeniError).value
        self.assertEqual(error.code, GeniCode.REFUSED)
        self.assertIn(DEFAULT_SWITCHES[3], error.output)
        self.successResultOf(gateway.set_user_auth([KEY_A]))
        gateway.backend.repair_switch(DEFAULT_SWITCHES[3])
        self.successResultOf(gateway.set_ovs({"1": "2"}))
        self.assertEqual(len(self.successResultOf(gateway.get_links())), len(DEFAULT_LINKS))
        self.assertRaises(GeniError, gateway.backend.break_switch, "nope")


class LatencyTests(SynchronousTestCase):
    """With a clock, calls take effect and answer after the latency."""

    def test_latency(self) -> None:
        """Nothing changes until the latency has passed."""
        clock = Clock()
        gateway = InProcessGateway(clock=clock, latency=2.0)
        d = gateway.set_tcp_proxy("10.0.0.1:6633")
        clock.advance(1.9)
        self.assertNoResult(d)
        self.assertEqual(gateway.proxy, "")
        clock.advance(0.1)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(gateway.proxy, "10.0.0.1:6633")

    def test_cancel(self) -> None:
        """A call cancelled before it takes effect changes nothing."""
        clock = Clock()
        gateway = InProcessGateway(clock=clock, latency=2.0)
        d = gateway.set_tcp_proxy("10.0.0.1:6633")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        clock.advance(5)
        self.assertEqual((gateway.proxy, gateway.log), ("", []))


class BackEndTests(SynchronousTestCase):
    """The in-process gateway drives any back end, with the agent's checks."""

    def test_state_file(self) -> None:
        """Over a back end with a state file, what is applied is on disk, in the agent's format."""
        path = self.mktemp()
        gateway = InProcessGateway(SimulatedBackend(StateFile(path)))
        self.successResultOf(gateway.set_user_auth([KEY_A]))
        self.successResultOf(gateway.set_tcp_proxy("192.0.2.10:6633"))
        self.assertEqual(StateFile(path).load(), GatewayConfig((KEY_A,), "192.0.2.10:6633", {}))

    def test_controller_policy(self) -> None:
        """With a policy, a controller outside it is REFUSED as the agent refuses it; without, any host:port goes."""
        strict = InProcessGateway(policy=ControllerPolicy())
        self.assertEqual(self.failureResultOf(strict.set_tcp_proxy("10.0.0.1:6633"), GeniError).value.code, GeniCode.REFUSED)
        self.assertEqual(strict.log, [])
        self.successResultOf(InProcessGateway().set_tcp_proxy("10.0.0.1:6633"))

    def test_arguments_normalised(self) -> None:
        """What reaches the back end is the checked form: trimmed keys, canonical controller, decimal VLANs."""
        gateway = InProcessGateway()
        self.successResultOf(gateway.set_user_auth([f"  {KEY_A}\n"]))
        self.successResultOf(gateway.set_tcp_proxy("[0:0::1]:6633"))
        self.successResultOf(gateway.set_ovs({"010": "untagged"}))
        self.assertEqual(gateway.applied, GatewayConfig((KEY_A,), "[::1]:6633", {"10": "0xffff"}))

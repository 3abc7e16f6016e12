"""
Tests for L{geniam.protocols.pbclient.PBGatewayAgent}: the AM's reconnecting
client, driven by a L{Clock} over in-memory connections.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from twisted.internet.interfaces import IStreamClientEndpoint

from geniam.agent.backend import StateFile
from geniam.agent.backends.simulated import SimulatedBackend
from geniam.errors import GeniCode, GeniError
from geniam.protocols.pbclient import PBGatewayAgent
from tests.agent.test_backend import KEY_A
from tests.protocols.test_pb import ALICE, SECRET, AgentHarness


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """Connects to C{harness}'s agent in memory; refuses while C{harness} is None."""

    def __init__(self, harness: AgentHarness | None) -> None:
        self.harness = harness
        self.attempts = 0
        self.servers: list[Any] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        harness = self.harness
        if harness is None:
            return fail(ConnectionRefusedError("agent down"))
        client = factory.buildProtocol(None)
        server = harness.factory.buildProtocol(None)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client), clock=harness.clock)
        harness.pumps.append(pump)
        self.servers.append(server)
        return succeed(client)

    def stop_agent(self) -> None:
        """The agent goes away: its connections drop and new ones are refused."""
        harness = self.harness
        assert harness is not None
        for server in self.servers:
            server.transport.loseConnection()
        harness.flush()
        self.servers = []
        self.harness = None


class ReconnectTests(SynchronousTestCase):
    """Connecting, failing fast, reconnecting."""

    def setUp(self) -> None:
        self.harness = AgentHarness(self)
        self.clock = self.harness.clock
        self.endpoint = MemoryEndpoint(None)
        self.agent = PBGatewayAgent(self.endpoint, self.clock, retry_policy=lambda attempt: 2.0, call_timeout=10)
        self.events: list[bool] = []
        self.agent.add_connection_observer(self.events.append)
        self.agent.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        d = self.agent.stopService()
        if self.endpoint.harness is not None:
            self.endpoint.harness.flush()
        self.successResultOf(d)

    def agent_up(self, harness: AgentHarness | None = None) -> None:
        """The agent is (back) up; the next retry reaches it."""
        self.endpoint.harness = harness or self.harness
        self.clock.advance(2)
        self.endpoint.harness.flush()

    def unreachable(self, d: Deferred[Any]) -> GeniError:
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertTrue(error.output.startswith("gateway agent unreachable"), error.output)
        return error  # type: ignore[no-any-return]

    def test_fail_fast_while_down(self) -> None:
        """While the agent is down every call fails at once with RPCERROR, without waiting."""
        for d in (self.agent.state(), self.agent.set_tcp_proxy("10.0.0.1:6633"), self.agent.get_switches()):
            self.unreachable(d)
        self.assertFalse(self.agent.connected)

    def test_connects_when_agent_appears(self) -> None:
        """Once the agent is up, the client logs in, when_connected fires and calls go through."""
        waiting = self.agent.when_connected()
        self.assertNoResult(waiting)
        self.clock.advance(2)
        self.assertNoResult(waiting)
        self.agent_up()
        self.successResultOf(waiting)
        self.assertTrue(self.agent.connected)
        self.assertEqual(self.events, [True])
        d = self.agent.set_user_auth([KEY_A])
        self.harness.flush()
        self.successResultOf(d)
        self.successResultOf(self.agent.when_connected())

    def test_reconnects_after_agent_restart(self) -> None:
        """
        After the agent restarts (new back end on the same state file) the
        client logs in again by itself and sees the state from before.
        """
        self.agent_up()
        d = self.agent.set_tcp_proxy("10.0.0.1:6633")
        self.harness.flush()
        self.successResultOf(d)
        self.endpoint.stop_agent()
        self.assertEqual(self.events, [True, False])
        self.unreachable(self.agent.state())
        restarted = AgentHarness(self, backend=SimulatedBackend(StateFile(self.harness.state_path)))
        restarted.clock = self.clock
        self.agent_up(restarted)
        self.assertEqual(self.events, [True, False, True])
        state = self.agent.state()
        restarted.flush()
        self.assertEqual(self.successResultOf(state)["proxy"], "10.0.0.1:6633")

    def test_observer_repairs_after_reconnect(self) -> None:
        """An observer can re-apply the configuration as soon as the client reconnects."""
        applied: list[Deferred[None]] = []

        def repair(connected: bool) -> None:
            if connected:
                applied.append(self.agent.set_ovs({"10": "20"}))

        self.agent.add_connection_observer(repair)
        self.agent_up()
        self.harness.flush()
        self.successResultOf(applied[0])
        self.assertEqual(dict(self.successResultOf(self.harness.backend.state()).vlans), {"10": "20"})
        self.agent.remove_connection_observer(repair)

    def test_broken_observer_logged(self) -> None:
        """An observer that raises is logged and does not stop the others."""

        def broken(connected: bool) -> None:
            raise ValueError("observer bug")

        self.agent.remove_connection_observer(self.events.append)
        self.agent.add_connection_observer(broken)
        self.agent.add_connection_observer(self.events.append)
        self.agent_up()
        self.assertEqual(self.events, [True])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.agent.remove_connection_observer(broken)

    def test_refused_login_retried(self) -> None:
        """A refused login counts as a failed attempt: calls say why, and the client keeps retrying."""
        self.harness.peer_urn = ALICE
        self.agent_up()
        error = self.unreachable(self.agent.state())
        self.assertIn("refused the login", error.output)
        self.assertIn("not allowed to manage this gateway", error.output)
        attempts = self.endpoint.attempts
        self.clock.advance(2)
        self.harness.flush()
        self.assertEqual(self.endpoint.attempts, attempts + 1)
        self.harness.peer_urn = "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"
        self.clock.advance(2)
        self.harness.flush()
        self.assertTrue(self.agent.connected)

    def test_timeout_reconnects(self) -> None:
        """A call that times out drops the connection, and the client logs in again."""
        self.agent_up()
        self.harness.backend.state = lambda: Deferred()  # type: ignore[method-assign]
        d = self.agent.state()
        self.harness.flush()
        self.clock.advance(10)
        self.assertIn("did not answer state within 10 s", self.failureResultOf(d, GeniError).value.output)
        self.harness.flush()
        self.assertEqual(self.events, [True, False])
        self.clock.advance(2)
        self.harness.flush()
        self.assertEqual(self.events, [True, False, True])

    def test_when_connected_cancel_and_stop(self) -> None:
        """A when_connected wait can be cancelled, and fails with CancelledError when the client stops."""
        first = self.agent.when_connected()
        second = self.agent.when_connected()
        self.assertIsNot(first, second)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.successResultOf(self.agent.stopService())
        self.failureResultOf(second, CancelledError)
        self.agent.startService()

    def test_stop_closes_connection(self) -> None:
        """Stopping the client closes the connection and tells the observers."""
        self.agent_up()
        d = self.agent.stopService()
        self.harness.flush()
        self.successResultOf(d)
        self.assertEqual(self.events, [True, False])
        self.assertEqual(self.endpoint.servers[0].disconnected, 1)
        self.agent.startService()

    def test_secret_sent(self) -> None:
        """The client answers the challenge with its shared secret."""
        harness = AgentHarness(self, secret=SECRET)
        harness.clock = self.clock
        endpoint = MemoryEndpoint(harness)
        agent = PBGatewayAgent(endpoint, self.clock, secret=SECRET)
        agent.startService()
        harness.flush()
        self.assertTrue(agent.connected)
        d = agent.stopService()
        harness.flush()
        self.successResultOf(d)


class DefaultPolicyTests(SynchronousTestCase):
    """The default reconnection back-off."""

    def test_back_within_five_seconds(self) -> None:
        """However long the agent was down, the client reaches it within 5 s of its return."""
        harness = AgentHarness(self)
        endpoint = MemoryEndpoint(None)
        agent = PBGatewayAgent(endpoint, harness.clock)
        agent.startService()
        for _ in range(600):
            harness.clock.advance(1)
        attempts = endpoint.attempts
        self.assertGreater(attempts, 100)
        endpoint.harness = harness
        for _ in range(50):
            harness.clock.advance(0.1)
            harness.flush()
        self.assertTrue(agent.connected)
        d = agent.stopService()
        harness.flush()
        self.successResultOf(d)
